/**
 * The run's moto server (started by test/global-setup.ts) as the tests use it: its endpoint, the
 * admin key, the inventory's `aws` connection reading that key from two env vars, and a login probe.
 */
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { inject } from 'vitest';

export function motoConnection(keyIdEnv = 'AWS_KS_ADMIN_KEY_ID', secretEnv = 'AWS_KS_ADMIN_SECRET') {
  const endpoint = inject('awsEndpoint');
  const admin = inject('awsAdmin');
  return {
    endpoint,
    admin,
    /** Env for the harness or the providers: the admin key under the two names. */
    env: { [keyIdEnv]: admin.accessKeyId, [secretEnv]: admin.secretAccessKey } as Record<string, string>,
    /** The inventory's `aws:` block. */
    aws: {
      region: 'us-east-1',
      endpointUrl: endpoint,
      accessKeyIdEnv: keyIdEnv,
      secretAccessKeyEnv: secretEnv,
    },
  };
}

/** The ARN a key authenticates as against moto, or `refused:<error name>`. */
export async function whoAmI(accessKeyId: string, secretAccessKey: string): Promise<string> {
  const sts = new STSClient({
    region: 'us-east-1',
    endpoint: inject('awsEndpoint'),
    credentials: { accessKeyId, secretAccessKey },
    maxAttempts: 1,
  });
  try {
    return (await sts.send(new GetCallerIdentityCommand({}))).Arn!;
  } catch (err) {
    return `refused:${(err as Error).name}`;
  } finally {
    sts.destroy();
  }
}

/**
 * `kind: aws_iam`: long-term access keys of IAM users in one AWS account. The schema lives in
 * ./aws.ts (its provider reads it too); the provider and the AWS SDK (~25 MiB) load with the first
 * call of the first AWS system, in ./aws-iam-provider.ts.
 */
import { ACCESS_KEY_ID, awsClientConfig, awsIamSystemSchema } from './aws';
import { commonEnv, type EnvRequirement } from './common';
import { defineKind, lazyProvider } from './kind';

export { ACCESS_KEY_ID, awsIamSystemSchema, userAllowed, type AwsIamSystem } from './aws';

export const awsIamKind = defineKind({
  schema: awsIamSystemSchema,
  supports: { graceful: true, quarantine: true, replacement: true },
  credentialTypes: ['aws_access_key'],
  owns(s, ref) {
    const id = ref.accessKeyId;
    if (!id || !ACCESS_KEY_ID.test(id)) return false;
    return !ref.accountId || !s.accountId || ref.accountId === s.accountId;
  },
  env(s, at) {
    const out: EnvRequirement[] = [];
    if (s.aws.accessKeyIdEnv) {
      out.push({
        path: `${at}.aws.accessKeyIdEnv`,
        name: s.aws.accessKeyIdEnv,
        check: (v) => (/^[A-Z0-9]{16,128}$/.test(v) ? undefined : 'must be an AWS access key id'),
      });
      out.push({ path: `${at}.aws.secretAccessKeyEnv`, name: s.aws.secretAccessKeyEnv! });
    }
    return [...out, ...commonEnv(s, at)];
  },
  describe(ref) {
    return ref.accessKeyId
      ? `access key ${ref.accessKeyId}${ref.accountId ? ` in account ${ref.accountId}` : ''}`
      : 'no AWS access key id';
  },
  createProvider(s, env) {
    // The client configuration is still built now, at startup; the SDK waits for the first call.
    awsClientConfig(s.aws, env);
    return lazyProvider('aws_iam', async () => {
      const { AwsIamProvider } = await import('./aws-iam-provider');
      return new AwsIamProvider(s, env);
    });
  },
});

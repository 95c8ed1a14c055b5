/**
 * AWS Secrets Manager as a secret sink: a replacement becomes a new version of an existing secret
 * (PutSecretValue). Secrets Manager moves AWSCURRENT to the new version and AWSPREVIOUS to the one
 * before, so applications that read AWSCURRENT pick the replacement up and, in graceful mode, the
 * previous value stays readable until the overlap ends.
 *
 * Idempotency: the ClientRequestToken (which becomes the version id) is derived from the caller's
 * idempotency token and a hash of the value. A retry with the same value creates no second version;
 * a retry that carries a new value (the provider had to issue again) gets its own version instead of
 * colliding with the first one.
 */
import { createHash } from 'node:crypto';
import { PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ApplicationFailure } from '@temporalio/common';
import type { AwsConnection } from '../../lib/systems/common';
import { ErrorType } from '../../contracts/errors';
import type { SecretSink, SecretValue } from '../../lib/systems/provider';
import { awsClientConfig, classifyAwsError } from '../../lib/systems/aws';

/** A UUID-shaped token (32–64 characters, as Secrets Manager requires) from the token and the value. */
export function clientRequestToken(idempotencyToken: string, serialized: string): string {
  const valueHash = createHash('sha256').update(serialized).digest();
  const h = createHash('sha256')
    .update('killswitch-sink\0')
    .update(idempotencyToken)
    .update('\0')
    .update(valueHash)
    .digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export class SecretsManagerSink implements SecretSink {
  readonly kind = 'aws_secrets_manager';
  private readonly client: SecretsManagerClient;

  constructor(
    private readonly secretId: string,
    aws: AwsConnection,
    env: Readonly<Record<string, string | undefined>>,
  ) {
    this.client = new SecretsManagerClient(awsClientConfig(aws, env));
  }

  async put(value: SecretValue, opts: { idempotencyToken: string }): Promise<{ ref: string }> {
    // Sorted keys: the same value always serializes (and so hashes) the same way.
    const serialized = JSON.stringify(
      Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b))),
    );
    try {
      const r = await this.client.send(
        new PutSecretValueCommand({
          SecretId: this.secretId,
          SecretString: serialized,
          ClientRequestToken: clientRequestToken(opts.idempotencyToken, serialized),
        }),
      );
      return { ref: `${r.ARN}#${r.VersionId}` };
    } catch (err) {
      const name = (err as { name?: string }).name;
      if (name === 'ResourceNotFoundException') {
        throw ApplicationFailure.create({
          type: ErrorType.MISCONFIGURED,
          message: `secret ${this.secretId} does not exist in Secrets Manager (create it once; the kill switch only adds versions)`,
          nonRetryable: true,
        });
      }
      if (name === 'InvalidRequestException') {
        // e.g. the secret is scheduled for deletion.
        throw ApplicationFailure.create({
          type: ErrorType.MISCONFIGURED,
          message: `secret ${this.secretId}: ${(err as Error).message}`,
          nonRetryable: true,
        });
      }
      throw classifyAwsError(err, `put a new version of ${this.secretId}`);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

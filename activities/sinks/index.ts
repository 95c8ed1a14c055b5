/** Secret sinks: where a replacement value goes, chosen per system in the inventory. */
import type { SinkConfig } from '../../lib/systems';
import type { SecretSink } from '../providers/types';
import { SecretsManagerSink } from './aws-secrets-manager';

/** `none`: a pure kill. Nothing is stored; a provider asked to deliver here reports it did not. */
export const noSink: SecretSink = {
  kind: 'none',
  async put() {
    throw new Error('the none sink receives nothing');
  },
  async close() {},
};

export function createSink(config: SinkConfig, env: Readonly<Record<string, string | undefined>>): SecretSink {
  switch (config.kind) {
    case 'none':
      return noSink;
    case 'aws_secrets_manager':
      return new SecretsManagerSink(config.secretId, config.aws, env);
  }
}

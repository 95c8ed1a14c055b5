/** Secret sinks: where a replacement value goes, chosen per system in the inventory. */
import type { SinkConfig } from '../../lib/systems';
import type { SecretSink } from '../../lib/systems/provider';
import { awsClientConfig } from '../../lib/systems/aws';

/** `none`: a pure kill. Nothing is stored; a provider asked to deliver here reports it did not. */
export const noSink: SecretSink = {
  kind: 'none',
  async put() {
    throw new Error('the none sink receives nothing');
  },
  async close() {},
};

export function createSink(
  config: SinkConfig,
  env: Readonly<Record<string, string | undefined>>,
): SecretSink {
  switch (config.kind) {
    case 'none':
      return noSink;
    case 'aws_secrets_manager': {
      // The AWS SDK loads with the first replacement stored; the configuration is checked now.
      awsClientConfig(config.aws, env);
      let sink: Promise<SecretSink> | undefined;
      const load = () =>
        (sink ??= import('./aws-secrets-manager').then(
          ({ SecretsManagerSink }) => new SecretsManagerSink(config.secretId, config.aws, env),
        ));
      return {
        kind: 'aws_secrets_manager',
        put: async (value, opts) => (await load()).put(value, opts),
        close: async () => {
          if (sink) await (await sink).close();
        },
      };
    }
  }
}

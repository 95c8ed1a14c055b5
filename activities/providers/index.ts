/**
 * Provider registry: for each inventory system, its credential provider (paced per the system's
 * limits), its secret sink and its session targets. A new kind is one file plus one line here.
 */
import type { Inventory } from '../../lib/inventory';
import type { OwningSystem } from '../../lib/systems';
import { createSessionTarget } from '../sessions';
import { createSink } from '../sinks';
import type { AwsIamProvider } from './aws-iam';
import { AWS_IAM_CAPABILITIES, awsClientConfig } from './aws-errors';
import { createPacer, paced } from './pacing';
import { GitHubProvider } from './github';
import { SlackProvider } from './slack';
import { HttpProvider } from './http';
import { PostgresProvider } from './postgres';
import { RedisProvider } from './redis';
import type { CredentialProvider, SecretSink, SessionTarget } from './types';

export type { CredentialProvider, SecretSink, SessionTarget } from './types';

export interface SystemRuntime {
  system: OwningSystem;
  provider: CredentialProvider;
  sink: SecretSink;
  sessions: SessionTarget[];
}

export interface ProviderRegistry {
  get(systemName: string): SystemRuntime | undefined;
  closeAll(): Promise<void>;
}

type Env = Readonly<Record<string, string | undefined>>;

function createProvider(system: OwningSystem, env: Env): CredentialProvider {
  switch (system.kind) {
    case 'postgres':
      return new PostgresProvider(system, env[system.adminUrlEnv]!);
    case 'github':
      return new GitHubProvider(system, system.tokenEnv ? env[system.tokenEnv] : undefined);
    case 'slack':
      return new SlackProvider(system);
    case 'aws_iam':
      // The AWS SDK (~25 MiB in every worker) loads with the first AWS system's first call;
      // its configuration is still checked now, at startup.
      awsClientConfig(system.aws, env);
      return lazyProvider(AWS_IAM_CAPABILITIES, async () => {
        const { AwsIamProvider: Provider } = await import('./aws-iam');
        return new Provider(system, env);
      });
    case 'http':
      return new HttpProvider(system, env);
    case 'redis':
      return new RedisProvider(system, env[system.adminUrlEnv]!);
  }
}

const PACED_METHODS = ['revoke', 'issueReplacement', 'expireSessions', 'verifyDead'] as const;

/** `env` must have been checked by resolveInventoryEnv. */
export function createProviderRegistry(inventory: Inventory, env: Env): ProviderRegistry {
  const runtimes = new Map<string, SystemRuntime>();
  for (const system of inventory.systems) {
    const provider = createProvider(system, env);
    runtimes.set(system.name, {
      system,
      provider: paced(provider, createPacer(system.limits), PACED_METHODS),
      sink: createSink(system.sink, env),
      sessions: system.sessions.map((t) => createSessionTarget(t, env)),
    });
  }
  return {
    get: (name) => runtimes.get(name),
    closeAll: async () => {
      await Promise.allSettled(
        [...runtimes.values()].flatMap((r) => [r.provider.close(), r.sink.close(), ...r.sessions.map((s) => s.close())]),
      );
    },
  };
}

/** A provider whose module (and its SDK) is imported on first use; the capability flags are known up front. */
function lazyProvider(
  flags: Pick<CredentialProvider, 'kind' | 'canIssueReplacement' | 'supportsGraceful' | 'supportsQuarantine'>,
  load: () => Promise<AwsIamProvider>,
): CredentialProvider {
  let loaded: Promise<CredentialProvider> | undefined;
  const provider = () => (loaded ??= load());
  return {
    ...flags,
    revoke: async (req) => (await provider()).revoke(req),
    issueReplacement: async (req, sink) => (await provider()).issueReplacement(req, sink),
    expireSessions: async (req) => (await provider()).expireSessions(req),
    verifyDead: async (req, leaked) => (await provider()).verifyDead(req, leaked),
    close: async () => {
      if (loaded) await (await loaded).close();
    },
  };
}

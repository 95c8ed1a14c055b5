/**
 * Provider registry: for each inventory system, its credential provider (paced per the system's
 * limits), its secret sink and its session targets. A new kind is one file plus one line here.
 */
import type { Inventory } from '../../lib/inventory';
import type { OwningSystem } from '../../lib/systems';
import { createSessionTarget } from '../sessions';
import { createSink } from '../sinks';
import { AwsIamProvider } from './aws-iam';
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
      return new AwsIamProvider(system, env);
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

/**
 * Provider registry: for each inventory system, its credential provider (made by its kind,
 * lib/systems/kinds.ts, and paced per the system's limits), its secret sink and its session targets.
 */
import type { Inventory } from '../../lib/inventory';
import { kindOf, type Env, type OwningSystem } from '../../lib/systems';
import { createSessionTarget } from '../sessions';
import { createSink } from '../sinks';
import { createPacer, paced } from './pacing';
import type { CredentialProvider, SecretSink, SessionTarget } from '../../lib/systems/provider';

export type { CredentialProvider, SecretSink, SessionTarget } from '../../lib/systems/provider';

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

const PACED_METHODS = ['revoke', 'issueReplacement', 'expireSessions', 'verifyDead'] as const;

/** `env` must have been checked by resolveInventoryEnv. */
export function createProviderRegistry(inventory: Inventory, env: Env): ProviderRegistry {
  const runtimes = new Map<string, SystemRuntime>();
  for (const system of inventory.systems) {
    const provider = kindOf(system).createProvider(system, env);
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
        [...runtimes.values()].flatMap((r) => [
          r.provider.close(),
          r.sink.close(),
          ...r.sessions.map((s) => s.close()),
        ]),
      );
    },
  };
}

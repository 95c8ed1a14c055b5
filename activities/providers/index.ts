/**
 * Provider registry: for each inventory system, its credential provider (made by its kind,
 * lib/systems/kinds.ts, and paced per the system's limits), its secret sink and its session targets.
 */
import type { Inventory } from '../../lib/inventory';
import { measureProviderCall } from '../../lib/metrics';
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

/**
 * Wraps `methods` of `target` so each call is measured (killswitch_provider_call_duration_seconds,
 * _errors_total) under `system` and `<prefix><method>`. Inside the pacer: the time a call waited
 * for its turn is not the owning system's latency.
 */
function measured<T extends object>(
  target: T,
  system: string,
  prefix: string,
  methods: ReadonlyArray<keyof T & string>,
): T {
  const wrapped = Object.create(target) as T;
  for (const m of methods) {
    const fn = target[m];
    if (typeof fn === 'function') {
      (wrapped as Record<keyof T, unknown>)[m] = (...args: unknown[]) =>
        measureProviderCall(system, `${prefix}${m}`, () =>
          (fn as (...a: unknown[]) => Promise<unknown>).apply(target, args),
        );
    }
  }
  return wrapped;
}

/** `env` must have been checked by resolveInventoryEnv. */
export function createProviderRegistry(inventory: Inventory, env: Env): ProviderRegistry {
  const runtimes = new Map<string, SystemRuntime>();
  for (const system of inventory.systems) {
    const provider = kindOf(system).createProvider(system, env);
    runtimes.set(system.name, {
      system,
      provider: paced(
        measured(provider, system.name, '', PACED_METHODS),
        createPacer(system.limits),
        PACED_METHODS,
      ),
      sink: measured(createSink(system.sink, env), system.name, 'sink.', ['put']),
      sessions: system.sessions.map((t) =>
        measured(createSessionTarget(t, env), system.name, 'sessions.', ['expire']),
      ),
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

/** Provider registry: one adapter per inventory system. A new kind is one file plus one line here. */
import type { Inventory } from '../../lib/inventory';
import { PostgresProvider } from './postgres';
import type { CredentialProvider } from './types';

export type { CredentialProvider } from './types';

export interface ProviderRegistry {
  get(systemName: string): CredentialProvider | undefined;
  closeAll(): Promise<void>;
}

export function createProviderRegistry(inventory: Inventory, connections: ReadonlyMap<string, string>): ProviderRegistry {
  const providers = new Map<string, CredentialProvider>();
  for (const system of inventory.systems) {
    switch (system.kind) {
      case 'postgres': {
        const url = connections.get(system.name);
        if (url) providers.set(system.name, new PostgresProvider(system, url));
        break;
      }
    }
  }
  return {
    get: (name) => providers.get(name),
    closeAll: async () => {
      await Promise.all([...providers.values()].map((p) => p.close()));
    },
  };
}

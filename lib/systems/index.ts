/**
 * Every kind of owning system the inventory knows. A new kind is one file in this folder (its
 * schema and matching rules), one line in `systemSchema` and one in `KINDS`, and its provider in
 * activities/providers/.
 */
import { z } from 'zod';
import type { CredentialRef, CredentialType } from '../detection';
import type { EnvRequirement } from './common';
import { postgresKind, postgresSystemSchema } from './postgres';

export * from './common';
export { postgresSystemSchema, type PostgresSystem } from './postgres';

export const systemSchema = z.discriminatedUnion('kind', [postgresSystemSchema]);
export type OwningSystem = z.infer<typeof systemSchema>;
export type SystemKind = OwningSystem['kind'];

interface KindDef<S> {
  /** What the kind's provider can do; the inventory refuses a mode it cannot honour. */
  supports: { graceful: boolean; quarantine: boolean };
  credentialTypes: readonly CredentialType[] | ((s: S) => readonly CredentialType[]);
  owns(s: S, ref: CredentialRef, type: CredentialType): boolean;
  env(s: S, at: string): EnvRequirement[];
  describe(ref: CredentialRef): string;
}

const KINDS: { [K in SystemKind]: KindDef<Extract<OwningSystem, { kind: K }>> } = {
  postgres: postgresKind,
};

export function kindOf<S extends OwningSystem>(s: S): KindDef<S> {
  return KINDS[s.kind] as unknown as KindDef<S>;
}

export function handles(s: OwningSystem, type: CredentialType): boolean {
  const def = kindOf(s);
  const types = typeof def.credentialTypes === 'function' ? def.credentialTypes(s) : def.credentialTypes;
  return types.includes(type);
}

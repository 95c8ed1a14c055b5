/**
 * The owning systems of the inventory: the union of every registered kind's schema (./kinds.ts),
 * and each system's kind definition (./kind.ts).
 */
import { z } from 'zod';
import type { CredentialType } from '../../contracts/detection';
import type { ResolvedKind, SystemKindDef } from './kind';
import * as registered from './kinds';

export * from './common';
export type { Env, KindSupports, ResolvedKind } from './kind';
export type * from './provider';
export { awsIamSystemSchema, type AwsIamSystem } from './aws-iam';
export { httpSystemSchema, type HttpSystem } from './http';
export { postgresSystemSchema, type PostgresSystem } from './postgres';
export { redisSystemSchema, type RedisSystem } from './redis';
export { githubSystemSchema, type GitHubSystem } from './github';
export { slackSystemSchema, type SlackSystem } from './slack';

type Registered = (typeof registered)[keyof typeof registered];
const KINDS: readonly Registered[] = Object.values(registered);

export const systemSchema = z.discriminatedUnion(
  'kind',
  KINDS.map((k) => k.schema) as unknown as [Registered['schema'], ...Registered['schema'][]],
);
export type OwningSystem = z.infer<typeof systemSchema>;
export type SystemKind = OwningSystem['kind'];

const BY_KIND = new Map<string, Registered>(KINDS.map((k) => [k.schema.shape.kind.value, k]));

/** The system's kind definition, with `supports` and `credentialTypes` resolved for it. */
export function kindOf<S extends OwningSystem>(s: S): ResolvedKind<S> {
  const def = BY_KIND.get(s.kind) as unknown as SystemKindDef<never, S> | undefined;
  if (!def) throw new Error(`no kind "${s.kind}" is registered`);
  return {
    kind: s.kind,
    supports: typeof def.supports === 'function' ? def.supports(s) : def.supports,
    credentialTypes: typeof def.credentialTypes === 'function' ? def.credentialTypes(s) : def.credentialTypes,
    owns: (sys, ref, type) => def.owns(sys, ref, type),
    env: (sys, at) => def.env(sys, at),
    describe: (ref) => def.describe(ref),
    createProvider: (sys, env) => def.createProvider(sys, env),
  };
}

export function handles(s: OwningSystem, type: CredentialType): boolean {
  return kindOf(s).credentialTypes.includes(type);
}

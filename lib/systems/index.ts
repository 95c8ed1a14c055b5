/**
 * Every kind of owning system the inventory knows. A new kind is one file in this folder (its
 * schema and matching rules), one line in `systemSchema` and one in `KINDS`, and its provider in
 * activities/providers/.
 */
import { z } from 'zod';
import type { CredentialRef, CredentialType } from '../../contracts/detection';
import { awsIamKind, awsIamSystemSchema } from './aws-iam';
import type { EnvRequirement } from './common';
import { githubKind, githubSystemSchema } from './github';
import { httpKind, httpSystemSchema } from './http';
import { postgresKind, postgresSystemSchema } from './postgres';
import { redisKind, redisSystemSchema } from './redis';
import { slackKind, slackSystemSchema } from './slack';

export * from './common';
export { awsIamSystemSchema, type AwsIamSystem } from './aws-iam';
export { httpSystemSchema, type HttpSystem } from './http';
export { postgresSystemSchema, type PostgresSystem } from './postgres';
export { redisSystemSchema, type RedisSystem } from './redis';
export { githubSystemSchema, type GitHubSystem } from './github';
export { slackSystemSchema, type SlackSystem } from './slack';

export const systemSchema = z.discriminatedUnion('kind', [postgresSystemSchema, redisSystemSchema, httpSystemSchema, awsIamSystemSchema, githubSystemSchema, slackSystemSchema]);
export type OwningSystem = z.infer<typeof systemSchema>;
export type SystemKind = OwningSystem['kind'];

export interface KindSupports {
  graceful: boolean;
  quarantine: boolean;
}

interface KindDef<S> {
  /** What the kind's provider can do; the inventory refuses a mode it cannot honour. Per system when a function. */
  supports: KindSupports | ((s: S) => KindSupports);
  credentialTypes: readonly CredentialType[] | ((s: S) => readonly CredentialType[]);
  owns(s: S, ref: CredentialRef, type: CredentialType): boolean;
  env(s: S, at: string): EnvRequirement[];
  describe(ref: CredentialRef): string;
}

const KINDS: { [K in SystemKind]: KindDef<Extract<OwningSystem, { kind: K }>> } = {
  postgres: postgresKind,
  github: githubKind,
  slack: slackKind,
  aws_iam: awsIamKind,
  http: httpKind,
  redis: redisKind,
};

/** The kind's definition, with `supports` resolved for this system. */
export function kindOf<S extends OwningSystem>(s: S): Omit<KindDef<S>, 'supports'> & { supports: KindSupports } {
  const def = KINDS[s.kind] as unknown as KindDef<S>;
  return { ...def, supports: typeof def.supports === 'function' ? def.supports(s) : def.supports };
}

export function handles(s: OwningSystem, type: CredentialType): boolean {
  const def = kindOf(s);
  const types = typeof def.credentialTypes === 'function' ? def.credentialTypes(s) : def.credentialTypes;
  return types.includes(type);
}

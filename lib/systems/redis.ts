/** `kind: redis`: ACL users of a Redis server (Redis 6+). */
import { z } from 'zod';
import type { CredentialRef } from '../../contracts/detection';
import { commonEnv, commonSystemFields, envVarName, glob, type EnvRequirement } from './common';

/** ACL user names or glob patterns (`*` any run of characters, `?` one character). */
const userPattern = z.string().min(1).max(128).regex(/^[^\s]+$/, 'must not contain whitespace');

export const redisSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('redis'),
    /**
     * Env var holding a redis:// (or rediss://) URL of an admin user allowed to run ACL GETUSER,
     * ACL SETUSER, ACL DRYRUN, CLIENT LIST, CLIENT KILL (and ACL SAVE / CONFIG REWRITE when persisting),
     * plus GET/SET on keys under `stateKeyPrefix`.
     */
    adminUrlEnv: envVarName,
    /** ACL users this system owns. */
    users: z.array(userPattern).min(1),
    /** Host names detections may name for this system; when set, a detection naming another host does not match. */
    hosts: z.array(z.string().min(1).max(255)).optional(),
    /**
     * How ACL changes survive a restart. auto: ACL SAVE when the server uses an aclfile, CONFIG
     * REWRITE when it runs from a config file, nothing otherwise (noted in the result).
     * acl_save / config_rewrite: always that, a failure is an error. none: in memory only.
     */
    persist: z.enum(['auto', 'acl_save', 'config_rewrite', 'none']).default('auto'),
    /**
     * graceful mode: where the kill switch records (per workflow, with a TTL) the SHA-256 of the
     * replacement it added, so a retried issue swaps it instead of adding a second one.
     */
    stateKeyPrefix: z.string().min(1).max(100).regex(/^[^\s]+$/, 'must not contain whitespace').default('killswitch:'),
  })
  .strict();
export type RedisSystem = z.infer<typeof redisSystemSchema>;

export const redisKind = {
  supports: { graceful: true, quarantine: false },
  credentialTypes: ['redis_password'] as const,
  owns(s: RedisSystem, ref: CredentialRef): boolean {
    const user = ref.user;
    if (!user) return false;
    const host = ref.host?.toLowerCase();
    return s.users.some((p) => glob(p).test(user)) && (!host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host));
  },
  env(s: RedisSystem, at: string): EnvRequirement[] {
    return [
      { path: `${at}.adminUrlEnv`, name: s.adminUrlEnv, check: (v) => (/^rediss?:\/\//.test(v) ? undefined : 'must be a redis:// or rediss:// URL') },
      ...commonEnv(s, at),
    ];
  },
  /** What a detection must name for this kind, for the "no owner" reason. */
  describe(ref: CredentialRef): string {
    return ref.user ? `Redis user "${ref.user}"${ref.host ? ` on ${ref.host}` : ''}` : 'no Redis ACL user';
  },
};

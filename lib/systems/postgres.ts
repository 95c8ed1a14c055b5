/** `kind: postgres`: login roles of a PostgreSQL cluster. */
import { z } from 'zod';
import type { CredentialRef } from '../../contracts/detection';
import { commonEnv, commonSystemFields, envVarName, glob, type EnvRequirement } from './common';

/** Role names or glob patterns (`*` any run of characters, `?` one character). */
const rolePattern = z.string().min(1).max(63).regex(/^[^\s]+$/, 'must not contain whitespace');

export const postgresSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('postgres'),
    /** Env var holding the admin connection string (a role with CREATEROLE and pg_signal_backend). */
    adminUrlEnv: envVarName,
    /** Roles this system owns. */
    roles: z.array(rolePattern).min(1),
    /** Host names detections may name for this system; when set, a detection naming another host does not match. */
    hosts: z.array(z.string().min(1).max(255)).optional(),
    /**
     * graceful mode: PostgreSQL keeps one password per role, so the replacement is a second login
     * role, `<role><cloneSuffix>`, member of the leaked role (same privileges). The sink receives
     * its user name and password; the leaked role's password dies after the overlap.
     */
    cloneSuffix: z.string().regex(/^[a-z0-9_]{1,20}$/, 'lower-case letters, digits and _').default('_ks'),
  })
  .strict();
export type PostgresSystem = z.infer<typeof postgresSystemSchema>;

export const postgresKind = {
  supports: { graceful: true, quarantine: false },
  credentialTypes: ['postgres_password'] as const,
  owns(s: PostgresSystem, ref: CredentialRef): boolean {
    const role = ref.role;
    if (!role) return false;
    const host = ref.host?.toLowerCase();
    return s.roles.some((p) => glob(p).test(role)) && (!host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host));
  },
  env(s: PostgresSystem, at: string): EnvRequirement[] {
    return [
      { path: `${at}.adminUrlEnv`, name: s.adminUrlEnv, check: (v) => (/^postgres(ql)?:\/\//.test(v) ? undefined : 'must be a postgres:// connection string') },
      ...commonEnv(s, at),
    ];
  },
  /** What a detection must name for this kind, for the "no owner" reason. */
  describe(ref: CredentialRef): string {
    return ref.role ? `role "${ref.role}"${ref.host ? ` on ${ref.host}` : ''}` : 'no PostgreSQL role';
  },
};

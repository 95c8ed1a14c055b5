/**
 * `kind: postgres`: login roles of a PostgreSQL cluster.
 * revoke  = ALTER ROLE … PASSWORD with a random value nobody keeps: the leaked password dies, the
 *           role is locked until a replacement is issued.
 * issue   = emergency: ALTER ROLE … PASSWORD <new>, delivered to the sink. graceful: PostgreSQL holds
 *           one password per role, so the replacement is a second login role `<role><cloneSuffix>`
 *           that is a member of the leaked one (same privileges); both work until the overlap ends
 *           and the leaked role's password is revoked (the "alternating users" strategy).
 * expire  = pg_terminate_backend for every backend of the role.
 * verify  = a login with the leaked password is refused.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { ErrorType } from '../../contracts/errors';
import { commonEnv, commonSystemFields, envVarName, glob } from './common';
import { defineKind } from './kind';
import type {
  CredentialProvider,
  ExpireResult,
  IssueRequest,
  IssueResult,
  ProviderRequest,
  RevokeRequest,
  RevokeResult,
  SecretSink,
  VerifyResult,
} from './provider';

/** Role names or glob patterns (`*` any run of characters, `?` one character). */
const rolePattern = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[^\s]+$/, 'must not contain whitespace');

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
    cloneSuffix: z
      .string()
      .regex(/^[a-z0-9_]{1,20}$/, 'lower-case letters, digits and _')
      .default('_ks'),
  })
  .strict();
export type PostgresSystem = z.infer<typeof postgresSystemSchema>;

const CONNECT_TIMEOUT_MS = 5_000;

/** SQLSTATE classes and codes that will not get better by retrying. */
function classify(err: unknown, context: string): Error {
  const e = err as { code?: string; message?: string };
  const msg = `${context}: ${e.message ?? String(err)}`;
  switch (e.code) {
    case '42501': // insufficient_privilege
      return ApplicationFailure.create({
        type: ErrorType.PERMISSION_DENIED,
        message: msg,
        nonRetryable: true,
      });
    case '42704': // undefined_object (role does not exist)
      return ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: msg,
        nonRetryable: true,
      });
    case '28P01': // invalid_password (the admin credential itself)
    case '28000': // invalid_authorization_specification
    case '3D000': // invalid_catalog_name
      return ApplicationFailure.create({
        type: ErrorType.MISCONFIGURED,
        message: `admin connection refused: ${msg}`,
        nonRetryable: true,
      });
    default:
      // Connection errors, 08xxx, 53xxx (resources), 57Pxx (shutdown), 40001 (serialization): transient.
      return new Error(msg);
  }
}

export function strongPassword(): string {
  return randomBytes(36).toString('base64url');
}

export class PostgresProvider implements CredentialProvider {
  readonly kind = 'postgres';
  private pool: pg.Pool | undefined;

  constructor(
    readonly system: PostgresSystem,
    private readonly adminUrl: string,
  ) {}

  private admin(): pg.Pool {
    if (!this.pool) {
      this.pool = new pg.Pool({
        connectionString: this.adminUrl,
        max: 2,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        idleTimeoutMillis: 30_000,
        application_name: 'secret-kill-switch',
      });
      this.pool.on('error', () => undefined);
    }
    return this.pool;
  }

  private role(req: ProviderRequest): string {
    const role = req.credentialRef.role;
    if (!role)
      throw ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: 'no role in credentialRef',
        nonRetryable: true,
      });
    return role;
  }

  private async withAdmin<T>(context: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.admin().connect();
    } catch (err) {
      throw classify(err, `connect to ${this.system.name}`);
    }
    try {
      return await fn(client);
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      throw classify(err, context);
    } finally {
      client.release();
    }
  }

  private async requireRole(c: pg.PoolClient, role: string): Promise<void> {
    const exists = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
    if (exists.rowCount === 0) {
      throw ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: `role ${role} does not exist in ${this.system.name}`,
        nonRetryable: true,
      });
    }
  }

  /** ALTER/CREATE ROLE is transactional: a dry run runs it for real (so permission problems show) and rolls it back. */
  private async attempt(c: pg.PoolClient, sql: string): Promise<void> {
    await c.query('BEGIN');
    try {
      await c.query(sql);
    } finally {
      await c.query('ROLLBACK');
    }
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    const role = this.role(req);
    return this.withAdmin(`revoke the password of role ${role}`, async (c) => {
      await this.requireRole(c, role);
      // ALTER ROLE takes no bind parameters: quote the identifier and the literal with the driver's escapes.
      // The value is generated here and discarded: nobody holds it, so the leaked password is dead.
      const alter = `ALTER ROLE ${c.escapeIdentifier(role)} WITH PASSWORD ${c.escapeLiteral(strongPassword())}`;
      if (req.dryRun) {
        await this.attempt(c, alter);
        return {
          revokedAt: null,
          note: `dry run: ALTER ROLE ${role} PASSWORD succeeded inside a rolled-back transaction; nothing changed`,
        };
      }
      await c.query(alter);
      return {
        revokedAt: new Date().toISOString(),
        note: `password of ${role} replaced by a random value nobody holds`,
      };
    });
  }

  async issueReplacement(req: IssueRequest, sink: SecretSink): Promise<IssueResult> {
    const role = this.role(req);
    const graceful = req.mode === 'graceful';
    const user = graceful ? `${role}${this.system.cloneSuffix}` : role;
    return this.withAdmin(`issue a replacement for role ${role}`, async (c) => {
      await this.requireRole(c, role);
      const password = strongPassword();
      const exists = graceful
        ? (await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [user])).rowCount === 1
        : true;
      // Re-running leaves one state: the clone exists once, with the newest password, and the sink holds it.
      const sql = exists
        ? `ALTER ROLE ${c.escapeIdentifier(user)} WITH LOGIN PASSWORD ${c.escapeLiteral(password)}`
        : `CREATE ROLE ${c.escapeIdentifier(user)} WITH LOGIN INHERIT PASSWORD ${c.escapeLiteral(password)} IN ROLE ${c.escapeIdentifier(role)}`;
      if (req.dryRun) {
        await this.attempt(c, sql);
        return {
          issuedAt: null,
          delivered: false,
          note: `dry run: ${exists ? 'ALTER' : 'CREATE'} ROLE ${user} succeeded inside a rolled-back transaction; nothing changed`,
        };
      }
      await c.query(sql);
      const issuedAt = new Date().toISOString();
      if (sink.kind === 'none') {
        return {
          issuedAt,
          delivered: false,
          note: `new password set on ${user} and not kept (sink: none): the role is locked until an operator sets one`,
        };
      }
      const target = parseConnectionString(this.adminUrl);
      const put = await sink.put(
        {
          engine: 'postgres',
          username: user,
          password,
          ...(target.host ? { host: target.host } : {}),
          ...(target.port ? { port: String(target.port) } : {}),
        },
        { idempotencyToken: `${req.workflowId}-issue` },
      );
      return {
        issuedAt,
        delivered: true,
        sinkRef: put.ref,
        note: graceful
          ? `replacement login role ${user} (member of ${role}) delivered to ${sink.kind}`
          : `new password of ${role} delivered to ${sink.kind}`,
      };
    });
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    const role = this.role(req);
    return this.withAdmin(`terminate sessions of ${role}`, async (c) => {
      if (req.dryRun) {
        const r = await c.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1',
          [role],
        );
        return { sessionsExpiredAt: null, terminated: 0, wouldTerminate: r.rows[0]!.n };
      }
      let terminated = 0;
      // A backend that was mid-authentication can appear after the first sweep; sweep until none is left.
      for (let sweep = 0; sweep < 5; sweep++) {
        const r = await c.query<{ ok: boolean }>(
          `SELECT pg_terminate_backend(pid, 5000) AS ok
             FROM pg_stat_activity
            WHERE usename = $1 AND pid <> pg_backend_pid()`,
          [role],
        );
        terminated += r.rows.filter((x) => x.ok).length;
        if (r.rowCount === 0) break;
      }
      const left = await c.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [
        role,
      ]);
      const n = (left.rows[0] as { n: number }).n;
      if (n > 0) throw new Error(`${n} backend(s) of ${role} still connected after termination`);
      return { sessionsExpiredAt: new Date().toISOString(), terminated };
    });
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    const role = this.role(req);
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    if (leakedValue === undefined) return { verifiedDeadAt: null, method: 'not_verifiable_no_leaked_value' };
    // Log in where the inventory says the system is, never at a host named by the detection.
    const target = parseConnectionString(this.adminUrl);
    const client = new pg.Client({
      host: target.host ?? undefined,
      port: target.port ? Number(target.port) : undefined,
      database: target.database ?? undefined,
      ssl: target.ssl as pg.ClientConfig['ssl'],
      user: role,
      password: leakedValue,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      application_name: 'secret-kill-switch-verify',
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '28P01' || code === '28000') {
        return { verifiedDeadAt: new Date().toISOString(), method: 'login_rejected' };
      }
      throw new Error(`verify ${role}: could not reach ${this.system.name}: ${(err as Error).message}`);
    }
    await client.end().catch(() => undefined);
    throw ApplicationFailure.create({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      message: `the leaked password of ${role} still logs in to ${this.system.name}`,
      nonRetryable: false,
    });
  }

  async close(): Promise<void> {
    await this.pool?.end();
    this.pool = undefined;
  }
}

export const postgresKind = defineKind({
  schema: postgresSystemSchema,
  supports: { graceful: true, quarantine: false, replacement: true },
  credentialTypes: ['postgres_password'],
  owns(s, ref) {
    const role = ref.role;
    if (!role) return false;
    const host = ref.host?.toLowerCase();
    return (
      s.roles.some((p) => glob(p).test(role)) &&
      (!host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host))
    );
  },
  env(s, at) {
    return [
      {
        path: `${at}.adminUrlEnv`,
        name: s.adminUrlEnv,
        check: (v) => (/^postgres(ql)?:\/\//.test(v) ? undefined : 'must be a postgres:// connection string'),
      },
      ...commonEnv(s, at),
    ];
  },
  describe(ref) {
    return ref.role ? `role "${ref.role}"${ref.host ? ` on ${ref.host}` : ''}` : 'no PostgreSQL role';
  },
  createProvider: (s, env) => new PostgresProvider(s, env[s.adminUrlEnv]!),
});

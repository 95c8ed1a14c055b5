/**
 * `kind: mariadb`: database users of a MariaDB or MySQL server. A user name is one or more accounts
 * ('app'@'%', 'app'@'10.0.%', …); every account of the user the system owns is acted on.
 * revoke  = ALTER USER … IDENTIFIED BY a random value nobody keeps, on each account: the leaked
 *           password dies, the user is locked out until a replacement is issued. Twice: same state.
 * issue   = emergency only: ALTER USER … IDENTIFIED BY <new> on each account, delivered to the sink.
 *           No graceful mode: MariaDB keeps one password per account (MySQL 8's RETAIN CURRENT
 *           PASSWORD has no MariaDB equivalent), so the inventory refuses `mode: graceful`.
 * expire  = KILL CONNECTION for every connection of the user (information_schema.PROCESSLIST).
 * verify  = a login with the leaked password is refused (ER_ACCESS_DENIED_ERROR, 1045).
 *
 * The admin account needs CREATE USER, SELECT on mysql.user, PROCESS (to see other users'
 * connections) and CONNECTION ADMIN or SUPER (to kill them), granted to it directly. mysql2 loads
 * with the first call. Passwords travel only inside ALTER USER; error messages are scrubbed of them.
 */
import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import type * as Mysql2 from 'mysql2/promise';
import type { Connection, ConnectionOptions } from 'mysql2/promise';
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

/**
 * A user name glob (`*` any run of characters, `?` one character), optionally `@<account host glob>`:
 * `app_*` owns every account of the matching users, `app_ro@%` only the account 'app_ro'@'%'.
 */
const userPattern = z
  .string()
  .min(1)
  .max(400)
  .regex(/^[^\s@]+(@[^\s@]+)?$/, 'a user name glob, optionally @<account host glob>, without whitespace');

const ADMIN_URL = /^(mysql|mariadb):\/\//;

export const mariadbSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('mariadb'),
    /** Env var holding the admin connection URL, mysql://user:password@host:3306/db (mariadb:// too). */
    adminUrlEnv: envVarName,
    /** Users (and accounts) this system owns. */
    users: z.array(userPattern).min(1),
    /** Host names detections may name for this system; when set, a detection naming another host does not match. */
    hosts: z.array(z.string().min(1).max(255)).optional(),
  })
  .strict();
export type MariadbSystem = z.infer<typeof mariadbSystemSchema>;

/** The patterns' parts: which user names, and per pattern which account hosts (undefined: all). */
function patterns(s: MariadbSystem): Array<{ user: RegExp; host?: RegExp }> {
  return s.users.map((p) => {
    const at = p.indexOf('@');
    return at < 0 ? { user: glob(p) } : { user: glob(p.slice(0, at)), host: glob(p.slice(at + 1)) };
  });
}

const CONNECT_TIMEOUT_MS = 5_000;
/** The server's answers to a refused login: wrong password, and (MariaDB) an unknown user. */
const LOGIN_REFUSED = new Set([1045, 1698]);
/** The admin lacks a privilege: 1044 database, 1142 table, 1227 global (CREATE USER…), 1095 KILL of another user's thread. */
const PERMISSION = new Set([1044, 1095, 1142, 1227]);
/** ER_CANNOT_USER: ALTER USER of an account that does not exist (dropped since we looked). */
const NO_SUCH_ACCOUNT = 1396;
/** ER_NO_SUCH_THREAD: the connection ended before the KILL reached it. */
const NO_SUCH_THREAD = 1094;
/** ER_BAD_DB_ERROR: the admin URL names a database that does not exist. */
const BAD_DB = 1049;

type Mysql = typeof Mysql2;
/** mysql2 loads with the first call: the ingress parses this file's schema and never needs it. */
const driver = async (): Promise<Mysql> => {
  const m = (await import('mysql2/promise')) as Mysql & { default?: Mysql };
  return m.default ?? m;
};

function scrub(message: string, needles: ReadonlyArray<string | undefined>): string {
  let out = message;
  for (const n of needles) if (n) out = out.split(n).join('[redacted]');
  return out;
}

/** Server error numbers that will not get better by retrying; connection errors and the rest are transient. */
export function classifyMariadbError(
  err: unknown,
  context: string,
  needles: ReadonlyArray<string | undefined> = [],
): Error {
  if (err instanceof ApplicationFailure) return err;
  const e = err as { errno?: number; message?: string };
  // Only the message: mysql2 also keeps the statement (`sql`), which may hold a password.
  const msg = scrub(`${context}: ${e.message ?? String(err)}`, needles);
  if (e.errno !== undefined && PERMISSION.has(e.errno))
    return ApplicationFailure.create({ type: ErrorType.PERMISSION_DENIED, message: msg, nonRetryable: true });
  if (e.errno === NO_SUCH_ACCOUNT)
    return ApplicationFailure.create({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      message: msg,
      nonRetryable: true,
    });
  if (e.errno !== undefined && (LOGIN_REFUSED.has(e.errno) || e.errno === BAD_DB)) {
    return ApplicationFailure.create({
      type: ErrorType.MISCONFIGURED,
      message: `admin connection refused: ${msg}`,
      nonRetryable: true,
    });
  }
  return new Error(msg);
}

export function strongPassword(): string {
  return randomBytes(36).toString('base64url');
}

interface Account {
  user: string;
  host: string;
}

const quoteAccount = (a: Account) => `'${a.user}'@'${a.host}'`;

export class MariadbProvider implements CredentialProvider {
  readonly kind = 'mariadb';
  private readonly target: URL;

  constructor(
    readonly system: MariadbSystem,
    adminUrl: string,
  ) {
    // mysql2 reads mysql:// URLs (TLS and other options as query parameters); mariadb:// is the same.
    this.target = new URL(adminUrl.replace(/^mariadb:/, 'mysql:'));
    if (!this.target.port) this.target.port = '3306';
  }

  private options(url: URL): ConnectionOptions {
    return { uri: url.href, connectTimeout: CONNECT_TIMEOUT_MS, multipleStatements: false };
  }

  /** One connection per operation: activities are rare, and a dead connection never outlives its call. */
  private async withAdmin<T>(
    context: string,
    needles: ReadonlyArray<string | undefined>,
    fn: (c: Connection) => Promise<T>,
  ): Promise<T> {
    const mysql = await driver();
    let c: Connection;
    try {
      c = await mysql.createConnection(this.options(this.target));
    } catch (err) {
      throw classifyMariadbError(err, `connect to ${this.system.name}`);
    }
    c.on('error', () => undefined);
    try {
      return await fn(c);
    } catch (err) {
      throw classifyMariadbError(err, context, needles);
    } finally {
      await c.end().catch(() => c.destroy());
    }
  }

  private user(req: ProviderRequest): string {
    const user = req.credentialRef.user;
    if (!user)
      throw ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: 'no user in credentialRef',
        nonRetryable: true,
      });
    return user;
  }

  /** The accounts of `user` this system owns; none is UnknownCredential (ALTER USER would fail, CREATE is not ours to do). */
  private async accounts(c: Connection, user: string): Promise<Account[]> {
    const [rows] = await c.query(
      'SELECT User AS user, Host AS host FROM mysql.user WHERE User = ? ORDER BY Host',
      [user],
    );
    const owned = patterns(this.system).filter((p) => p.user.test(user));
    const accounts = (rows as Account[]).filter((a) => owned.some((p) => !p.host || p.host.test(a.host)));
    if (accounts.length === 0) {
      throw ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: `no account of user ${user} that ${this.system.name} owns exists`,
        nonRetryable: true,
      });
    }
    return accounts;
  }

  /** ALTER USER on every account, one statement each (an account dropped meanwhile is UnknownCredential). */
  private async setPassword(c: Connection, accounts: Account[], password: string): Promise<void> {
    for (const a of accounts) await c.query('ALTER USER ?@? IDENTIFIED BY ?', [a.user, a.host, password]);
  }

  /** ALTER USER cannot run in a rolled-back transaction: a dry run checks the privilege it needs instead. */
  private async requireGlobal(c: Connection, privileges: readonly string[], why: string): Promise<void> {
    const [who] = await c.query('SELECT CURRENT_USER() AS u');
    const current = (who as Array<{ u: string }>)[0]!.u;
    const at = current.lastIndexOf('@');
    const grantee = `'${current.slice(0, at)}'@'${current.slice(at + 1)}'`;
    const [rows] = await c.query(
      'SELECT PRIVILEGE_TYPE AS p FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?',
      [grantee],
    );
    const held = new Set((rows as Array<{ p: string }>).map((r) => r.p));
    if (!privileges.some((p) => held.has(p))) {
      throw ApplicationFailure.create({
        type: ErrorType.PERMISSION_DENIED,
        message: `the admin account ${current} of ${this.system.name} lacks ${privileges.join(' or ')} (${why})`,
        nonRetryable: true,
      });
    }
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    const user = this.user(req);
    const password = strongPassword();
    return this.withAdmin(`revoke the password of user ${user}`, [password, req.leakedValue], async (c) => {
      const accounts = await this.accounts(c, user);
      const names = accounts.map(quoteAccount).join(', ');
      if (req.dryRun) {
        await this.requireGlobal(c, ['CREATE USER'], 'ALTER USER needs it');
        return { revokedAt: null, note: `dry run: would set a random password on ${names}; nothing changed` };
      }
      // The value is generated here and discarded: nobody holds it, so the leaked password is dead.
      await this.setPassword(c, accounts, password);
      return {
        revokedAt: new Date().toISOString(),
        note: `password of ${names} replaced by a random value nobody holds`,
      };
    });
  }

  async issueReplacement(req: IssueRequest, sink: SecretSink): Promise<IssueResult> {
    const user = this.user(req);
    if (req.mode === 'graceful') {
      throw ApplicationFailure.create({
        type: ErrorType.MISCONFIGURED,
        message: `${this.system.name}: MariaDB keeps one password per account; graceful mode is not supported`,
        nonRetryable: true,
      });
    }
    const password = strongPassword();
    return this.withAdmin(`issue a replacement for user ${user}`, [password], async (c) => {
      const accounts = await this.accounts(c, user);
      const names = accounts.map(quoteAccount).join(', ');
      if (req.dryRun) {
        await this.requireGlobal(c, ['CREATE USER'], 'ALTER USER needs it');
        return {
          issuedAt: null,
          delivered: false,
          note: `dry run: would set a new password on ${names}; nothing changed`,
        };
      }
      // Re-running leaves one state: every account with the newest password, and the sink holding it.
      await this.setPassword(c, accounts, password);
      const issuedAt = new Date().toISOString();
      if (sink.kind === 'none') {
        return {
          issuedAt,
          delivered: false,
          note: `new password set on ${names} and not kept (sink: none): the user is locked out until an operator sets one`,
        };
      }
      const put = await sink.put(
        { engine: 'mariadb', username: user, password, host: this.target.hostname, port: this.target.port },
        { idempotencyToken: `${req.workflowId}-issue` },
      );
      return {
        issuedAt,
        delivered: true,
        sinkRef: put.ref,
        note: `new password of ${names} delivered to ${sink.kind}`,
      };
    });
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    const user = this.user(req);
    return this.withAdmin(`kill the connections of ${user}`, [], async (c) => {
      // Without PROCESS the process list shows the admin's own connections only: "none left" would be a lie.
      await this.requireGlobal(c, ['PROCESS', 'SUPER'], "seeing other users' connections needs it");
      const list = async () => {
        const [rows] = await c.query(
          'SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()',
          [user],
        );
        return (rows as Array<{ id: number }>).map((r) => Number(r.id));
      };
      if (req.dryRun)
        return { sessionsExpiredAt: null, terminated: 0, wouldTerminate: (await list()).length };
      let terminated = 0;
      // A connection that was mid-authentication can appear after the first sweep; sweep until none is left.
      for (let sweep = 0; sweep < 5; sweep++) {
        const ids = await list();
        if (ids.length === 0) break;
        for (const id of ids) {
          try {
            await c.query('KILL CONNECTION ?', [id]);
            terminated++;
          } catch (err) {
            if ((err as { errno?: number }).errno !== NO_SUCH_THREAD) throw err;
          }
        }
      }
      const left = (await list()).length;
      if (left > 0) throw new Error(`${left} connection(s) of ${user} still open after KILL`);
      return { sessionsExpiredAt: new Date().toISOString(), terminated };
    });
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    const user = this.user(req);
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    if (leakedValue === undefined) return { verifiedDeadAt: null, method: 'not_verifiable_no_leaked_value' };
    // Log in where the inventory says the system is, never at a host named by the detection.
    const url = new URL(this.target.href);
    url.username = encodeURIComponent(user);
    url.password = encodeURIComponent(leakedValue);
    // No database: the user may have none of the admin's, and a refused database means the password worked.
    url.pathname = '';
    const mysql = await driver();
    let c: Connection;
    try {
      c = await mysql.createConnection(this.options(url));
    } catch (err) {
      const errno = (err as { errno?: number }).errno;
      if (errno !== undefined && LOGIN_REFUSED.has(errno))
        return { verifiedDeadAt: new Date().toISOString(), method: 'login_rejected' };
      throw new Error(
        scrub(`verify ${user}: could not reach ${this.system.name}: ${(err as Error).message}`, [
          leakedValue,
        ]),
      );
    }
    c.on('error', () => undefined);
    await c.end().catch(() => c.destroy());
    throw ApplicationFailure.create({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      message: `the leaked password of ${user} still logs in to ${this.system.name}`,
      nonRetryable: false,
    });
  }

  async close(): Promise<void> {}
}

export const mariadbKind = defineKind({
  schema: mariadbSystemSchema,
  supports: { graceful: false, quarantine: false, replacement: true },
  credentialTypes: ['mysql_password'],
  owns(s, ref) {
    const user = ref.user;
    if (!user) return false;
    const host = ref.host?.toLowerCase();
    return (
      patterns(s).some((p) => p.user.test(user)) &&
      (!host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host))
    );
  },
  env(s, at) {
    return [
      {
        path: `${at}.adminUrlEnv`,
        name: s.adminUrlEnv,
        check: (v) => (ADMIN_URL.test(v) ? undefined : 'must be a mysql:// or mariadb:// URL'),
      },
      ...commonEnv(s, at),
    ];
  },
  describe(ref) {
    return ref.user
      ? `MariaDB/MySQL user "${ref.user}"${ref.host ? ` on ${ref.host}` : ''}`
      : 'no MariaDB/MySQL user';
  },
  createProvider: (s, env) => new MariadbProvider(s, env[s.adminUrlEnv]!),
});

/**
 * `kind: redis`: ACL users of a Redis server (Redis 6+).
 * revoke  = emergency: ACL SETUSER <u> resetpass (every password dies, nopass cleared: the user is
 *           locked until a replacement is issued). graceful: remove exactly the leaked password
 *           (`!<sha256>`); when the leaked value is unknown, reset every password but the
 *           replacement this run issued (see docs/systems/redis.md).
 * issue   = emergency: ACL SETUSER <u> resetpass #<sha256(new)>. graceful: #<sha256(new)> added beside
 *           the leaked one, its hash recorded under `stateKeyPrefix` in the same MULTI so a retry
 *           swaps it rather than adding a second one. The value goes straight to the sink.
 * expire  = CLIENT KILL USER <u>.
 * verify  = AUTH <u> <leaked> on a fresh connection is refused with WRONGPASS.
 *
 * Passwords are only ever sent to Redis as SHA-256 hashes (`#`/`!`), so a Redis error that echoes its
 * arguments (`<pw` does) can never carry a value; messages are scrubbed of the values regardless.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { ErrorType } from '../../contracts/errors';
import { commonEnv, commonSystemFields, durationMs, envVarName, glob } from './common';
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

/** ACL user names or glob patterns (`*` any run of characters, `?` one character). */
const userPattern = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^\s]+$/, 'must not contain whitespace');

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
    stateKeyPrefix: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[^\s]+$/, 'must not contain whitespace')
      .default('killswitch:'),
  })
  .strict();
export type RedisSystem = z.infer<typeof redisSystemSchema>;

/** ioredis loads with the first call: the ingress parses this file's schema and never needs it. */
const driver = () => import('ioredis');

const CONNECT_TIMEOUT_MS = 5_000;
const COMMAND_TIMEOUT_MS = 10_000;
/** How long the replacement's hash is remembered beyond the overlap (a retried revoke needs it). */
const STATE_GRACE_MS = 86_400_000;

export const sha256 = (value: string) => createHash('sha256').update(value, 'utf8').digest('hex');

function scrub(message: string, needles: ReadonlyArray<string | undefined>): string {
  let out = message;
  for (const n of needles) if (n) out = out.split(n).join('[redacted]');
  return out;
}

/** Redis reply errors that will not get better by retrying; everything else (network, LOADING, BUSY, …) is transient. */
export function classifyRedisError(
  err: unknown,
  context: string,
  needles: ReadonlyArray<string | undefined> = [],
): Error {
  if (err instanceof ApplicationFailure) return err;
  // EXECABORT: a queued command was refused (NOPERM, …); classify the refusal.
  const queued = (err as { previousErrors?: unknown[] } | undefined)?.previousErrors?.[0];
  if (queued) return classifyRedisError(queued, context, needles);
  const raw = err instanceof Error ? err.message : String(err);
  const message = scrub(`${context}: ${raw}`, needles);
  const permanent = (type: string, prefix = '') =>
    ApplicationFailure.create({ type, message: `${prefix}${message}`, nonRetryable: true });
  if (/^NOPERM\b/.test(raw)) return permanent(ErrorType.PERMISSION_DENIED);
  if (/^ERR No such user\b/.test(raw)) return permanent(ErrorType.UNKNOWN_CREDENTIAL);
  if (/^(WRONGPASS|NOAUTH)\b/.test(raw))
    return permanent(ErrorType.MISCONFIGURED, 'admin connection refused: ');
  if (
    /^ERR (unknown command|unknown subcommand|This Redis instance is not configured to use an ACL file|The server is running without a config file)/i.test(
      raw,
    )
  ) {
    return permanent(ErrorType.MISCONFIGURED);
  }
  // A fresh Error: the original carries the command's arguments.
  return new Error(message);
}

interface AclUser {
  flags: string[];
  /** SHA-256 hex of each password. */
  passwords: string[];
}

function parseGetUser(reply: unknown): AclUser | null {
  if (!Array.isArray(reply)) return null;
  const out: AclUser = { flags: [], passwords: [] };
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const k = String(reply[i]);
    const v = reply[i + 1];
    if (k === 'flags' && Array.isArray(v)) out.flags = v.map(String);
    if (k === 'passwords' && Array.isArray(v)) out.passwords = v.map(String);
  }
  return out;
}

/** `CLIENT LIST` lines whose `user=` is `user`. */
export function clientsOf(list: string, user: string): number {
  return list.split('\n').filter((line) => line.split(' ').some((f) => f === `user=${user}`)).length;
}

export class RedisProvider implements CredentialProvider {
  readonly kind = 'redis';
  private readonly target: { host: string; port: number; tls: boolean };

  constructor(
    readonly system: RedisSystem,
    private readonly adminUrl: string,
  ) {
    const u = new URL(adminUrl);
    this.target = {
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port ? Number(u.port) : 6379,
      tls: u.protocol === 'rediss:',
    };
  }

  private options(extra: RedisOptions = {}): RedisOptions {
    return {
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      enableReadyCheck: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Temporal retries the activity; the client must not reconnect behind its back.
      retryStrategy: () => null,
      ...extra,
    };
  }

  /** One connection per operation: activities are rare, and a dead connection never outlives its call. */
  private async withAdmin<T>(
    context: string,
    needles: ReadonlyArray<string | undefined>,
    fn: (r: Redis) => Promise<T>,
  ): Promise<T> {
    const { Redis: Client } = await driver();
    const r = new Client(this.adminUrl, this.options({ connectionName: 'secret-kill-switch' }));
    // A refused AUTH or a refused connection arrives as an 'error' event; connect() only says "closed".
    let lastError: unknown;
    r.on('error', (err) => (lastError = err));
    try {
      try {
        await r.connect();
      } catch (err) {
        throw classifyRedisError(lastError ?? err, `connect to ${this.system.name}`);
      }
      return await fn(r);
    } catch (err) {
      throw classifyRedisError(err, context, needles);
    } finally {
      r.disconnect();
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

  /** ACL SETUSER would create a missing user: look it up first. */
  private async requireUser(r: Redis, user: string): Promise<AclUser> {
    const u = parseGetUser(await r.call('ACL', ['GETUSER', user]));
    if (!u) {
      throw ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: `ACL user ${user} does not exist in ${this.system.name}`,
        nonRetryable: true,
      });
    }
    return u;
  }

  /** Dry run: asks Redis whether the admin may run the command, without running it. */
  private async dryRunCheck(r: Redis, args: string[]): Promise<void> {
    const me = String(await r.call('ACL', ['WHOAMI']));
    const verdict = String(await r.call('ACL', ['DRYRUN', me, 'ACL', ...args]));
    if (verdict !== 'OK') {
      throw ApplicationFailure.create({
        type: ErrorType.PERMISSION_DENIED,
        message: `dry run: ${me} may not run ACL ${args[0]}: ${verdict}`,
        nonRetryable: true,
      });
    }
  }

  private async setUser(r: Redis, user: string, rules: string[]): Promise<void> {
    await r.call('ACL', ['SETUSER', user, ...rules]);
  }

  /** ACL changes live in memory; make them survive a restart as the inventory says. */
  private async persist(r: Redis): Promise<string> {
    switch (this.system.persist) {
      case 'none':
        return 'not persisted (persist: none)';
      case 'acl_save':
        await r.call('ACL', ['SAVE']);
        return 'persisted with ACL SAVE';
      case 'config_rewrite':
        await r.call('CONFIG', ['REWRITE']);
        return 'persisted with CONFIG REWRITE';
      case 'auto': {
        let aclfile: string;
        let configFile: string;
        try {
          aclfile = String(((await r.call('CONFIG', ['GET', 'aclfile'])) as string[])[1] ?? '');
          configFile =
            /^config_file:(.*)$/m.exec(String(await r.call('INFO', ['server'])))?.[1]?.trim() ?? '';
        } catch (err) {
          // Managed services refuse CONFIG: the operator's own mechanism persists ACLs there.
          return `not persisted: could not inspect the server's persistence (${(err as Error).message.split('\n')[0]})`;
        }
        if (aclfile) {
          await r.call('ACL', ['SAVE']);
          return 'persisted with ACL SAVE';
        }
        if (configFile) {
          await r.call('CONFIG', ['REWRITE']);
          return 'persisted with CONFIG REWRITE';
        }
        return 'in memory only: the server has neither an aclfile nor a config file';
      }
    }
  }

  private stateKey(workflowId: string): string {
    return `${this.system.stateKeyPrefix}redis-replacement:${this.system.name}:${workflowId}`;
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    const user = this.user(req);
    const leaked = req.leakedValue;
    return this.withAdmin(`revoke the password of ACL user ${user}`, [leaked], async (r) => {
      const acl = await this.requireUser(r, user);
      if (req.dryRun) {
        await this.dryRunCheck(r, ['SETUSER', user, 'resetpass']);
        return {
          revokedAt: null,
          note: `dry run: ${user} exists and the admin may run ACL SETUSER; nothing changed`,
        };
      }
      let what: string;
      if (req.mode !== 'graceful') {
        await this.setUser(r, user, ['resetpass']);
        what = `every password of ${user} reset (locked until a replacement is issued)`;
      } else if (acl.flags.includes('nopass')) {
        // nopass accepts any password, the leaked one included: only a reset ends that.
        await this.setUser(r, user, ['resetpass']);
        what = `${user} had nopass: every password reset`;
      } else if (leaked !== undefined) {
        const h = sha256(leaked);
        if (acl.passwords.includes(h)) {
          await this.setUser(r, user, [`!${h}`]);
          what = `the leaked password of ${user} removed, ${acl.passwords.length - 1} other password(s) kept`;
        } else {
          what = `the leaked password of ${user} was already gone`;
        }
      } else {
        // Which password leaked is unknown: keep only the replacement this run delivered, if any.
        const replacement = (await r.get(this.stateKey(req.workflowId))) ?? undefined;
        if (replacement && acl.passwords.includes(replacement)) {
          await this.setUser(r, user, ['resetpass', `#${replacement}`]);
          what = `leaked value unknown: every password of ${user} but this run's replacement reset`;
        } else {
          await this.setUser(r, user, ['resetpass']);
          what = `leaked value unknown and no replacement of this run present: every password of ${user} reset`;
        }
      }
      const persisted = await this.persist(r);
      return { revokedAt: new Date().toISOString(), note: `${what}; ${persisted}` };
    });
  }

  async issueReplacement(req: IssueRequest, sink: SecretSink): Promise<IssueResult> {
    const user = this.user(req);
    const graceful = req.mode === 'graceful';
    const password = randomBytes(32).toString('base64url');
    const h = sha256(password);
    return this.withAdmin(`issue a replacement for ACL user ${user}`, [password], async (r) => {
      const acl = await this.requireUser(r, user);
      if (req.dryRun) {
        await this.dryRunCheck(r, ['SETUSER', user, graceful ? `#${h}` : 'resetpass']);
        return {
          issuedAt: null,
          delivered: false,
          note: `dry run: ${user} exists and the admin may run ACL SETUSER; nothing changed`,
        };
      }
      if (sink.kind === 'none') {
        return { issuedAt: null, delivered: false, note: `no replacement issued for ${user} (sink: none)` };
      }
      let persisted: string;
      if (!graceful) {
        // One password, the newest: a retry replaces the previous attempt's.
        await this.setUser(r, user, ['resetpass', `#${h}`]);
        persisted = await this.persist(r);
      } else {
        // Beside the leaked one. A retry swaps this run's earlier replacement for the new one.
        const key = this.stateKey(req.workflowId);
        const previous = await r.get(key);
        const rules =
          previous && previous !== h && acl.passwords.includes(previous)
            ? [`!${previous}`, `#${h}`]
            : [`#${h}`];
        const results = await r
          .multi()
          .call('ACL', ['SETUSER', user, ...rules])
          .set(key, h, 'PX', durationMs(this.system.overlap) + STATE_GRACE_MS)
          .exec();
        const failed = results?.find(([err]) => err)?.[0];
        if (!results) throw new Error('the ACL transaction was aborted');
        if (failed) throw failed;
        persisted = await this.persist(r);
      }
      const issuedAt = new Date().toISOString();
      const put = await sink.put(
        {
          engine: 'redis',
          username: user,
          password,
          host: this.target.host,
          port: String(this.target.port),
          tls: String(this.target.tls),
        },
        { idempotencyToken: `${req.workflowId}-issue` },
      );
      return {
        issuedAt,
        delivered: true,
        sinkRef: put.ref,
        note: `${graceful ? `replacement password added beside the leaked one of ${user}` : `new password of ${user}`} delivered to ${sink.kind}; ${persisted}`,
      };
    });
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    const user = this.user(req);
    return this.withAdmin(`kill the clients of ACL user ${user}`, [], async (r) => {
      await this.requireUser(r, user);
      if (req.dryRun) {
        const n = clientsOf(String(await r.call('CLIENT', ['LIST'])), user);
        return { sessionsExpiredAt: null, terminated: 0, wouldTerminate: n };
      }
      const killed = Number(await r.call('CLIENT', ['KILL', 'USER', user]));
      return { sessionsExpiredAt: new Date().toISOString(), terminated: killed };
    });
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    const user = this.user(req);
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    if (leakedValue === undefined) return { verifiedDeadAt: null, method: 'not_verifiable_no_leaked_value' };
    // Log in where the inventory says the system is, never at a host named by the detection.
    const { Redis: Client } = await driver();
    const r = new Client(
      this.options({
        host: this.target.host,
        port: this.target.port,
        ...(this.target.tls ? { tls: { servername: this.target.host } } : {}),
      }),
    );
    let lastError: unknown;
    r.on('error', (err) => (lastError = err));
    try {
      try {
        await r.connect();
      } catch (err) {
        throw classifyRedisError(lastError ?? err, `verify ${user}: could not reach ${this.system.name}`, [
          leakedValue,
        ]);
      }
      try {
        await r.call('AUTH', [user, leakedValue]);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        if (/^WRONGPASS\b/.test(msg))
          return { verifiedDeadAt: new Date().toISOString(), method: 'login_rejected' };
        throw new Error(scrub(`verify ${user}: AUTH failed unexpectedly: ${msg}`, [leakedValue]));
      }
      throw ApplicationFailure.create({
        type: ErrorType.CREDENTIAL_STILL_VALID,
        message: `the leaked password of ${user} still authenticates to ${this.system.name}`,
        nonRetryable: false,
      });
    } finally {
      r.disconnect();
    }
  }

  async close(): Promise<void> {}
}

export const redisKind = defineKind({
  schema: redisSystemSchema,
  supports: { graceful: true, quarantine: false, replacement: true },
  credentialTypes: ['redis_password'],
  owns(s, ref) {
    const user = ref.user;
    if (!user) return false;
    const host = ref.host?.toLowerCase();
    return (
      s.users.some((p) => glob(p).test(user)) &&
      (!host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host))
    );
  },
  env(s, at) {
    return [
      {
        path: `${at}.adminUrlEnv`,
        name: s.adminUrlEnv,
        check: (v) => (/^rediss?:\/\//.test(v) ? undefined : 'must be a redis:// or rediss:// URL'),
      },
      ...commonEnv(s, at),
    ];
  },
  describe(ref) {
    return ref.user ? `Redis user "${ref.user}"${ref.host ? ` on ${ref.host}` : ''}` : 'no Redis ACL user';
  },
  createProvider: (s, env) => new RedisProvider(s, env[s.adminUrlEnv]!),
});

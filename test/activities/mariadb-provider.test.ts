/**
 * The MariaDB provider against the real MariaDB of this machine (MARIADB_URL, default
 * mysql://root@127.0.0.1:3306/test): every operation is idempotent, every account of the user is
 * acted on, the leaked password is proven dead (1045), and errors are classified by type. Every user
 * the tests create has a random suffix and is dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import mysql, { type Connection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MariadbProvider, type MariadbSystem } from '../../lib/systems/mariadb';
import type { SecretSink, SecretValue } from '../../lib/systems/provider';
import { parseInventory } from '../../lib/inventory';
import { createProviderRegistry } from '../../activities/providers';
import { ErrorType } from '../../contracts/errors';
import { failureProbe } from '../helpers/failure';
import { ISO_TIME } from '../helpers/matchers';

const ADMIN_URL = process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/test';
const rand = () => randomBytes(4).toString('hex');
const pw = () => randomBytes(12).toString('base64url');

const system = (over: Record<string, unknown> = {}) =>
  parseInventory({
    systems: [{ name: 'owned-mariadb', kind: 'mariadb', adminUrlEnv: 'X', users: ['ksm_*'], ...over }],
  }).systems[0] as MariadbSystem;
const req = (user: string, dryRun = false) => ({
  workflowId: `wf-${rand()}`,
  credentialRef: { user },
  ...(dryRun ? { dryRun } : {}),
});
const rev = (user: string, dryRun = false) => ({ ...req(user, dryRun), mode: 'emergency' as const });

function keepingSink(): SecretSink & { versions: SecretValue[] } {
  const versions: SecretValue[] = [];
  return {
    kind: 'test_keeping',
    versions,
    put: async (v) => (versions.push(v), { ref: `test#${versions.length}` }),
    close: async () => undefined,
  };
}
const noSink: SecretSink = {
  kind: 'none',
  put: () => Promise.reject(new Error('not called')),
  close: async () => undefined,
};

const failureType = failureProbe();
let su: Connection;
let provider: MariadbProvider;
/** Every account created here, dropped in afterAll. */
const created: Array<{ user: string; host: string }> = [];
const open: Connection[] = [];

async function createUser(
  opts: { prefix?: string; hosts?: string[]; grants?: string[] } = {},
): Promise<{ user: string; password: string }> {
  const user = `${opts.prefix ?? 'ksm_'}${rand()}`;
  const password = pw();
  for (const host of opts.hosts ?? ['%']) {
    await su.query('CREATE USER ?@? IDENTIFIED BY ?', [user, host, password]);
    created.push({ user, host });
    for (const g of opts.grants ?? []) await su.query(`GRANT ${g} TO ?@?`, [user, host]);
  }
  return { user, password };
}

/** The error number a login gets, or null when it succeeds. */
async function loginErrno(user: string, password: string): Promise<number | null> {
  const url = new URL(ADMIN_URL);
  try {
    const c = await mysql.createConnection({
      host: url.hostname,
      port: Number(url.port || 3306),
      user,
      password,
      connectTimeout: 5000,
    });
    await c.end();
    return null;
  } catch (err) {
    return (err as { errno?: number }).errno ?? -1;
  }
}

async function connectAs(user: string, password: string): Promise<Connection> {
  const url = new URL(ADMIN_URL);
  const c = await mysql.createConnection({
    host: url.hostname,
    port: Number(url.port || 3306),
    user,
    password,
  });
  c.on('error', () => undefined);
  open.push(c);
  return c;
}

async function connectionsOf(user: string): Promise<number> {
  const [rows] = await su.query('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = ?', [
    user,
  ]);
  return Number((rows as Array<{ n: number }>)[0]!.n);
}

async function authString(user: string, host: string): Promise<string> {
  const [rows] = await su.query(
    'SELECT authentication_string AS a FROM mysql.user WHERE User = ? AND Host = ?',
    [user, host],
  );
  return (rows as Array<{ a: string }>)[0]!.a;
}

/** An admin account holding only these grants, and a provider that uses it. */
async function weakAdmin(grants: string[]): Promise<MariadbProvider> {
  const { user, password } = await createUser({ prefix: 'ksadm_', grants });
  const url = new URL(ADMIN_URL);
  url.username = user;
  url.password = password;
  // No database: it holds no privilege on one, and a refused database would hide what is tested.
  url.pathname = '';
  return new MariadbProvider(system(), url.href);
}

beforeAll(async () => {
  su = await mysql.createConnection({ uri: ADMIN_URL });
  provider = new MariadbProvider(system(), ADMIN_URL);
});
afterAll(async () => {
  await Promise.allSettled(open.map((c) => c.end().catch(() => c.destroy())));
  for (const a of created) await su.query('DROP USER IF EXISTS ?@?', [a.user, a.host]);
  await su?.end();
});

describe('MariadbProvider', () => {
  it('revoke locks the leaked password out of every account of the user, and twice leaves the same state', async () => {
    const { user, password } = await createUser({ hosts: ['%', 'localhost'] });
    const bystander = await createUser();
    expect(await loginErrno(user, password)).toBeNull();
    const before = { any: await authString(user, '%'), local: await authString(user, 'localhost') };

    const first = await provider.revoke(rev(user));
    expect(first).toEqual({
      revokedAt: expect.stringMatching(ISO_TIME),
      note: `password of '${user}'@'%', '${user}'@'localhost' replaced by a random value nobody holds`,
    });
    expect(await loginErrno(user, password)).toBe(1045);
    expect(await authString(user, '%')).not.toBe(before.any);
    expect(await authString(user, 'localhost')).not.toBe(before.local);

    await provider.revoke(rev(user));
    expect(await loginErrno(user, password)).toBe(1045);
    expect(await loginErrno(bystander.user, bystander.password)).toBeNull();
  });

  it('an @host pattern owns only that account of the user', async () => {
    const { user } = await createUser({ hosts: ['%', 'localhost'] });
    const only = new MariadbProvider(system({ users: [`${user}@%`] }), ADMIN_URL);
    const local = await authString(user, 'localhost');
    const any = await authString(user, '%');
    await only.revoke(rev(user));
    expect(await authString(user, '%')).not.toBe(any);
    expect(await authString(user, 'localhost')).toBe(local);
    // A user the patterns do not name is not this system's to touch.
    const other = new MariadbProvider(system({ users: [`${user}@10.9.%`] }), ADMIN_URL);
    expect(await failureType(other.revoke(rev(user)))).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
  });

  it('quotes user names: a name with a quote and spaces is revoked, nothing else is touched', async () => {
    const user = `ksm_o'x y; DROP USER root ${rand()}`;
    const password = pw();
    await su.query('CREATE USER ?@? IDENTIFIED BY ?', [user, '%', password]);
    created.push({ user, host: '%' });
    const bystander = await createUser();
    await provider.revoke(rev(user));
    expect(await loginErrno(user, password)).toBe(1045);
    expect(await loginErrno(bystander.user, bystander.password)).toBeNull();
  });

  it('expireSessions kills every connection of the user, and a second run finds none', async () => {
    const { user, password } = await createUser();
    const sessions = await Promise.all([
      connectAs(user, password),
      connectAs(user, password),
      connectAs(user, password),
    ]);
    expect(await connectionsOf(user)).toBe(3);
    expect(await provider.expireSessions(req(user, true))).toEqual({
      sessionsExpiredAt: null,
      terminated: 0,
      wouldTerminate: 3,
    });
    expect(await connectionsOf(user)).toBe(3);

    const first = await provider.expireSessions(req(user));
    expect(first).toEqual({ sessionsExpiredAt: expect.stringMatching(ISO_TIME), terminated: 3 });
    expect(await connectionsOf(user)).toBe(0);
    for (const s of sessions) await expect(s.query('SELECT 1')).rejects.toThrow();
    expect((await provider.expireSessions(req(user))).terminated).toBe(0);
  });

  it('verifyDead proves a rotated password is refused (1045), and refuses to call a live one dead', async () => {
    const { user, password } = await createUser();
    expect(await failureType(provider.verifyDead(req(user), password), password)).toEqual({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });
    await provider.revoke(rev(user));
    expect(await provider.verifyDead(req(user), password)).toEqual({
      verifiedDeadAt: expect.stringMatching(ISO_TIME),
      method: 'login_rejected',
    });
    expect(await provider.verifyDead(req(user), undefined)).toEqual({
      verifiedDeadAt: null,
      method: 'not_verifiable_no_leaked_value',
    });
    expect(await provider.verifyDead(req(user, true), password)).toEqual({
      verifiedDeadAt: null,
      method: 'dry_run',
    });
  });

  it('emergency: revoke then issue delivers a new password that logs in, and the leaked one stays dead', async () => {
    const { user, password } = await createUser({ hosts: ['%', 'localhost'] });
    const sink = keepingSink();
    const r = rev(user);
    await provider.revoke({ ...r, leakedValue: password });
    const issued = await provider.issueReplacement(r, sink);
    expect(issued).toMatchObject({
      issuedAt: expect.stringMatching(ISO_TIME),
      delivered: true,
      sinkRef: 'test#1',
    });
    const url = new URL(ADMIN_URL);
    expect(sink.versions[0]).toEqual({
      engine: 'mariadb',
      username: user,
      password: expect.any(String),
      host: url.hostname,
      port: url.port || '3306',
    });
    expect(JSON.stringify(issued)).not.toContain(sink.versions[0]!.password);
    expect(await loginErrno(user, sink.versions[0]!.password!)).toBeNull();
    expect(await loginErrno(user, password)).toBe(1045);
    // Both accounts hold the replacement.
    expect(await authString(user, 'localhost')).toBe(await authString(user, '%'));

    // Issued again (a retried activity): the newest value works, the first one no longer.
    await provider.issueReplacement(r, sink);
    expect(await loginErrno(user, sink.versions[1]!.password!)).toBeNull();
    expect(await loginErrno(user, sink.versions[0]!.password!)).toBe(1045);

    const none = await provider.issueReplacement(rev(user), noSink);
    expect(none).toMatchObject({ delivered: false, issuedAt: expect.stringMatching(ISO_TIME) });
    expect(await loginErrno(user, sink.versions[1]!.password!)).toBe(1045);
  });

  it('refuses graceful issue (one password per account): Misconfigured, nothing changed', async () => {
    const { user, password } = await createUser();
    expect(
      await failureType(provider.issueReplacement({ ...req(user), mode: 'graceful' }, keepingSink())),
    ).toEqual({ type: ErrorType.MISCONFIGURED, nonRetryable: true });
    expect(await loginErrno(user, password)).toBeNull();
  });

  it('dry run: revoke and issue change nothing', async () => {
    const { user, password } = await createUser();
    const sink = keepingSink();
    expect((await provider.revoke(rev(user, true))).revokedAt).toBeNull();
    expect((await provider.issueReplacement(rev(user, true), sink)).issuedAt).toBeNull();
    expect(sink.versions).toHaveLength(0);
    expect(await loginErrno(user, password)).toBeNull();
  });

  it('classifies an unknown user as UnknownCredential (non-retryable)', async () => {
    const user = `ksm_nobody_${rand()}`;
    for (const call of [
      () => provider.revoke(rev(user)),
      () => provider.issueReplacement(rev(user), keepingSink()),
      () => provider.revoke(rev(user, true)),
    ]) {
      expect(await failureType(call())).toEqual({ type: ErrorType.UNKNOWN_CREDENTIAL, nonRetryable: true });
    }
    expect(
      await failureType(provider.revoke({ workflowId: 'wf', credentialRef: {}, mode: 'emergency' })),
    ).toEqual({ type: ErrorType.UNKNOWN_CREDENTIAL, nonRetryable: true });
  });

  it('classifies an admin without the privileges it needs as PermissionDenied (non-retryable), and changes nothing', async () => {
    const { user, password } = await createUser();
    // Cannot read mysql.user (1142).
    const blind = await weakAdmin([]);
    expect(await failureType(blind.revoke(rev(user)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    // Reads the accounts but may not ALTER USER (1227); its dry run says so too.
    const readOnly = await weakAdmin(['SELECT ON mysql.user']);
    expect(await failureType(readOnly.revoke(rev(user)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(await failureType(readOnly.revoke(rev(user, true)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(await failureType(readOnly.issueReplacement(rev(user), keepingSink()))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(await loginErrno(user, password)).toBeNull();

    await connectAs(user, password);
    // Without PROCESS it would see no connection of the user: refused rather than "none left".
    const noProcess = await weakAdmin(['SELECT ON mysql.user', 'CREATE USER ON *.*']);
    expect(await failureType(noProcess.expireSessions(req(user)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    // Sees them but may not kill another user's connection (1095).
    const noKill = await weakAdmin(['PROCESS ON *.*']);
    expect(await failureType(noKill.expireSessions(req(user)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(await connectionsOf(user)).toBe(1);
  });

  it('classifies a refused admin login as Misconfigured, and an unreachable server as transient', async () => {
    const { user } = await createUser();
    const url = new URL(ADMIN_URL);
    url.username = 'root';
    url.password = 'not-the-root-password';
    const wrong = new MariadbProvider(system(), url.href);
    expect(await failureType(wrong.revoke(rev(user)), 'not-the-root-password')).toEqual({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
    const down = new MariadbProvider(system(), 'mariadb://root@127.0.0.1:9/test');
    expect(await failureType(down.revoke(rev(user)))).toEqual({ type: 'plain' });
    expect(await failureType(down.verifyDead(req(user), 'x'))).toEqual({ type: 'plain' });
  });

  it('is what the registry builds for a mariadb system, from the checked env', async () => {
    const inv = parseInventory({
      systems: [{ name: 'm', kind: 'mariadb', adminUrlEnv: 'MARIADB_ADMIN_URL', users: ['ksm_*'] }],
    });
    const reg = createProviderRegistry(inv, { MARIADB_ADMIN_URL: ADMIN_URL });
    const { user, password } = await createUser();
    expect(reg.get('m')?.provider.kind).toBe('mariadb');
    await reg.get('m')!.provider.revoke(rev(user));
    expect(await loginErrno(user, password)).toBe(1045);
    await reg.closeAll();
  });
});

/**
 * The Redis provider against the real Redis on 127.0.0.1:6379, with real ACL users (random names,
 * deleted afterwards) and an admin user holding only the permissions the docs list: every
 * operation is idempotent, the leaked password is proven dead, and errors are classified by type.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisProvider, sha256 } from '../../lib/systems/redis';
import type { SecretSink, SecretValue } from '../../lib/systems/provider';
import { noSink } from '../../activities/sinks';
import { redisSystemSchema, type RedisSystem } from '../../lib/systems';
import { ErrorType } from '../../contracts/errors';
import { ADMIN_RULES, redisFixtures, redisUrl, type RedisFixtures } from '../helpers/redis';
import { failureProbe } from '../helpers/failure';
import { ISO_TIME } from '../helpers/matchers';

const rand = () => randomBytes(4).toString('hex');
const SYSTEM_NAME = `cache-${rand()}`;
let fx: RedisFixtures;
let admin: { user: string; password: string; url: string };
let provider: RedisProvider;

const system = (over: Record<string, unknown> = {}): RedisSystem =>
  redisSystemSchema.parse({
    name: SYSTEM_NAME,
    kind: 'redis',
    adminUrlEnv: 'REDIS_ADMIN_URL',
    users: ['app_*'],
    overlap: '1m',
    ...over,
  });
const req = (user: string, workflowId = `wf-${rand()}`) => ({ workflowId, credentialRef: { user } });

/**
 * The secret store at the other end of the sink contract: it keeps what it is given, one version
 * per idempotency token, so the tests can log in with the replacement the applications would read.
 */
function recordingSink(): SecretSink & {
  current(): SecretValue | undefined;
  versions: Map<string, SecretValue>;
} {
  const versions = new Map<string, SecretValue>();
  let last: string | undefined;
  return {
    kind: 'test_store',
    versions,
    current: () => (last ? versions.get(last) : undefined),
    async put(value, { idempotencyToken }) {
      versions.set(idempotencyToken, value);
      last = idempotencyToken;
      return { ref: `test_store:${idempotencyToken}` };
    },
    async close() {},
  };
}

const failureOf = failureProbe({ with: ['message'] });

beforeAll(async () => {
  fx = await redisFixtures();
  fx.trackPattern(`killswitch:redis-replacement:${SYSTEM_NAME}:*`);
  admin = await fx.createAdmin();
  provider = new RedisProvider(system(), admin.url);
});
afterAll(async () => {
  await provider?.close();
  await fx?.cleanup();
});

describe('RedisProvider: emergency', () => {
  it('revoke resets every password so the leaked one is refused, and revoking twice leaves the same state', async () => {
    const { user, password } = await fx.createUser({ passwords: 2 });
    const bystander = await fx.createUser();
    expect(await fx.authFails(user, password)).toBeNull();

    const first = await provider.revoke({ ...req(user), mode: 'emergency', leakedValue: password });
    expect(first.revokedAt).toMatch(ISO_TIME);
    expect(first.note).toContain('in memory only');
    expect(JSON.stringify(first)).not.toContain(password);
    expect(await fx.authFails(user, password)).toBe('WRONGPASS');
    const after = { passwords: await fx.passwordsOf(user), flags: await fx.flagsOf(user) };
    expect(after.passwords).toEqual([]);
    expect(after.flags).not.toContain('nopass');

    await provider.revoke({ ...req(user), mode: 'emergency', leakedValue: password });
    expect({ passwords: await fx.passwordsOf(user), flags: await fx.flagsOf(user) }).toEqual(after);
    expect(await fx.authFails(bystander.user, bystander.password)).toBeNull();
  });

  it('revoke clears nopass: a user that accepted any password accepts none', async () => {
    const { user } = await fx.createUser();
    await fx.su.call('ACL', ['SETUSER', user, 'nopass']);
    expect(await fx.authFails(user, 'anything')).toBeNull();
    await provider.revoke({ ...req(user), mode: 'emergency' });
    expect(await fx.authFails(user, 'anything')).toBe('WRONGPASS');
  });

  it('issueReplacement sets exactly one new password, delivered to the sink; a retry leaves one replacement, the newest', async () => {
    const { user, password } = await fx.createUser();
    const sink = recordingSink();
    const r = req(user);
    await provider.revoke({ ...r, mode: 'emergency', leakedValue: password });
    const issued = await provider.issueReplacement({ ...r, mode: 'emergency' }, sink);
    expect(issued).toMatchObject({ delivered: true, sinkRef: `test_store:${r.workflowId}-issue` });
    expect(issued.issuedAt).toMatch(ISO_TIME);
    const first = sink.current()!;
    expect(first).toMatchObject({ engine: 'redis', username: user, host: '127.0.0.1', port: '6379' });
    expect(JSON.stringify(issued)).not.toContain(first.password);
    expect(await fx.authFails(user, first.password!)).toBeNull();
    expect(await fx.passwordsOf(user)).toEqual([sha256(first.password!)]);

    // The activity is retried (say the sink timed out after storing): one password, the newest, in one sink version.
    await provider.issueReplacement({ ...r, mode: 'emergency' }, sink);
    const second = sink.current()!;
    expect(second.password).not.toBe(first.password);
    expect(sink.versions.size).toBe(1);
    expect(await fx.passwordsOf(user)).toEqual([sha256(second.password!)]);
    expect(await fx.authFails(user, second.password!)).toBeNull();
    expect(await fx.authFails(user, first.password!)).toBe('WRONGPASS');
    expect(await fx.authFails(user, password)).toBe('WRONGPASS');
  });

  it('issueReplacement with sink none issues nothing and changes nothing', async () => {
    const { user } = await fx.createUser();
    const before = await fx.passwordsOf(user);
    const r = await provider.issueReplacement({ ...req(user), mode: 'emergency' }, noSink);
    expect(r).toMatchObject({ delivered: false, issuedAt: null });
    expect(await fx.passwordsOf(user)).toEqual(before);
  });
});

describe('RedisProvider: graceful', () => {
  it('keeps both passwords valid during the overlap, then only the replacement (and the untouched others); each step is idempotent', async () => {
    const { user, passwords } = await fx.createUser({ passwords: 2 });
    const [leaked, other] = passwords as [string, string];
    const sink = recordingSink();
    const r = req(user);

    await provider.issueReplacement({ ...r, mode: 'graceful' }, sink);
    const firstTry = sink.current()!.password!;
    // A retry swaps this run's earlier replacement instead of adding a second one.
    const issued = await provider.issueReplacement({ ...r, mode: 'graceful' }, sink);
    expect(issued.delivered).toBe(true);
    const replacement = sink.current()!.password!;
    expect(replacement).not.toBe(firstTry);
    expect(await fx.passwordsOf(user)).toEqual([leaked, other, replacement].map(sha256).sort());
    // The overlap: the leaked value and the replacement both work.
    expect(await fx.authFails(user, leaked)).toBeNull();
    expect(await fx.authFails(user, replacement)).toBeNull();
    expect(await fx.authFails(user, firstTry)).toBe('WRONGPASS');

    const revoked = await provider.revoke({ ...r, mode: 'graceful', leakedValue: leaked });
    expect(revoked.revokedAt).toMatch(ISO_TIME);
    expect(JSON.stringify(revoked)).not.toContain(leaked);
    expect(await fx.authFails(user, leaked)).toBe('WRONGPASS');
    expect(await fx.authFails(user, replacement)).toBeNull();
    expect(await fx.authFails(user, other)).toBeNull();
    const after = await fx.passwordsOf(user);
    expect(after).toEqual([other, replacement].map(sha256).sort());

    const again = await provider.revoke({ ...r, mode: 'graceful', leakedValue: leaked });
    expect(again.note).toContain('already gone');
    expect(await fx.passwordsOf(user)).toEqual(after);
  });

  it('without the leaked value, revoke keeps only the replacement this run delivered', async () => {
    const { user, passwords } = await fx.createUser({ passwords: 2 });
    const sink = recordingSink();
    const r = req(user);
    await provider.issueReplacement({ ...r, mode: 'graceful' }, sink);
    const replacement = sink.current()!.password!;
    await provider.revoke({ ...r, mode: 'graceful' });
    for (const p of passwords) expect(await fx.authFails(user, p)).toBe('WRONGPASS');
    expect(await fx.authFails(user, replacement)).toBeNull();
    expect(await fx.passwordsOf(user)).toEqual([sha256(replacement)]);
    await provider.revoke({ ...r, mode: 'graceful' });
    expect(await fx.passwordsOf(user)).toEqual([sha256(replacement)]);
  });

  it('without the leaked value and without a replacement of this run, revoke resets every password', async () => {
    const { user, password } = await fx.createUser();
    await provider.revoke({ ...req(user), mode: 'graceful' });
    expect(await fx.authFails(user, password)).toBe('WRONGPASS');
    expect(await fx.passwordsOf(user)).toEqual([]);
  });
});

describe('RedisProvider: sessions and verification', () => {
  it('expireSessions kills every live client of the user (dry run only counts), and a second run finds none', async () => {
    const { user, password } = await fx.createUser();
    const bystander = await fx.createUser();
    const victims = await Promise.all([
      fx.connectAs(user, password),
      fx.connectAs(user, password),
      fx.connectAs(user, password),
    ]);
    const other = await fx.connectAs(bystander.user, bystander.password);
    const closed = victims.map((c) => new Promise<void>((resolve) => c.once('end', () => resolve())));

    const dry = await provider.expireSessions({ ...req(user), dryRun: true });
    expect(dry).toEqual({ sessionsExpiredAt: null, terminated: 0, wouldTerminate: 3 });
    expect(await victims[0]!.ping()).toBe('PONG');

    const first = await provider.expireSessions(req(user));
    expect(first.terminated).toBe(3);
    expect(first.sessionsExpiredAt).toMatch(ISO_TIME);
    await Promise.all(closed);
    for (const c of victims) expect(c.status).toBe('end');
    expect(await other.ping()).toBe('PONG');
    expect((await provider.expireSessions(req(user))).terminated).toBe(0);
  });

  it('verifyDead proves a revoked password is refused, and refuses to call a live one dead', async () => {
    const { user, password } = await fx.createUser();
    expect(await failureOf(provider.verifyDead(req(user), password))).toMatchObject({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });
    await provider.revoke({ ...req(user), mode: 'emergency', leakedValue: password });
    const dead = await provider.verifyDead(req(user), password);
    expect(dead.method).toBe('login_rejected');
    expect(dead.verifiedDeadAt).toMatch(ISO_TIME);
    expect((await provider.verifyDead(req(user), password)).method).toBe('login_rejected');
    expect(await provider.verifyDead(req(user), undefined)).toEqual({
      verifiedDeadAt: null,
      method: 'not_verifiable_no_leaked_value',
    });
    expect(await provider.verifyDead({ ...req(user), dryRun: true }, password)).toEqual({
      verifiedDeadAt: null,
      method: 'dry_run',
    });
  });

  it('a dry run changes nothing', async () => {
    const { user, password } = await fx.createUser();
    const before = await fx.passwordsOf(user);
    const c = await fx.connectAs(user, password);
    expect((await provider.revoke({ ...req(user), mode: 'emergency', dryRun: true })).revokedAt).toBeNull();
    expect(
      (await provider.issueReplacement({ ...req(user), mode: 'emergency', dryRun: true }, recordingSink()))
        .issuedAt,
    ).toBeNull();
    expect(await fx.passwordsOf(user)).toEqual(before);
    expect(await fx.authFails(user, password)).toBeNull();
    expect(await c.ping()).toBe('PONG');
  });
});

describe('RedisProvider: error classification', () => {
  it('an unknown user is UnknownCredential (non-retryable), and is not created by the attempt', async () => {
    const ghost = `app_ghost_${rand()}`;
    const sink = recordingSink();
    // One at a time: a call started before the previous one is awaited could reject unobserved.
    for (const call of [
      () => provider.revoke({ ...req(ghost), mode: 'emergency' }),
      () => provider.revoke({ ...req(ghost), mode: 'graceful', leakedValue: 'x' }),
      () => provider.issueReplacement({ ...req(ghost), mode: 'graceful' }, sink),
      () => provider.expireSessions(req(ghost)),
    ]) {
      expect(await failureOf(call())).toMatchObject({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        nonRetryable: true,
      });
    }
    expect(await fx.su.call('ACL', ['GETUSER', ghost])).toBeNull();
    expect(sink.versions.size).toBe(0);
  });

  it('an admin without ACL SETUSER is PermissionDenied (non-retryable), for the real call and the dry run', async () => {
    const weak = await fx.createAdmin(
      ADMIN_RULES.filter((r) => r !== '+acl|setuser' && r !== '+client|kill'),
    );
    const weakProvider = new RedisProvider(system(), weak.url);
    const { user, password } = await fx.createUser();
    expect(await failureOf(weakProvider.revoke({ ...req(user), mode: 'emergency' }))).toMatchObject({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(
      await failureOf(weakProvider.revoke({ ...req(user), mode: 'emergency', dryRun: true })),
    ).toMatchObject({ type: ErrorType.PERMISSION_DENIED, nonRetryable: true });
    expect(await failureOf(weakProvider.expireSessions(req(user)))).toMatchObject({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(await fx.authFails(user, password)).toBeNull();
  });

  it('a wrong admin password is Misconfigured; an unreachable server is transient; ACL SAVE without an aclfile is Misconfigured', async () => {
    const { user, password } = await fx.createUser();
    const bad = new RedisProvider(system(), redisUrl(admin.user, 'wrong-password'));
    expect(await failureOf(bad.revoke({ ...req(user), mode: 'emergency' }))).toMatchObject({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
    const unreachable = new RedisProvider(system(), 'redis://x:y@127.0.0.1:1');
    expect((await failureOf(unreachable.revoke({ ...req(user), mode: 'emergency' }))).type).toBe('plain');
    const leakedFailure = await failureOf(unreachable.verifyDead(req(user), password));
    expect(leakedFailure.type).toBe('plain');
    expect(leakedFailure.message).not.toContain(password);

    // This server runs without an aclfile: insisting on ACL SAVE is a configuration error (after the in-memory reset).
    const saving = new RedisProvider(system({ persist: 'acl_save' }), admin.url);
    expect(await failureOf(saving.revoke({ ...req(user), mode: 'emergency' }))).toMatchObject({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
    expect(await fx.authFails(user, password)).toBe('WRONGPASS');
  });

  it('no error message carries the leaked value, even when Redis echoes arguments', async () => {
    const { user, password } = await fx.createUser();
    // The admin loses SET mid-way, so the graceful MULTI fails after the leaked value was read.
    const weak = await fx.createAdmin(ADMIN_RULES.filter((r) => r !== '+set'));
    const p = new RedisProvider(system(), weak.url);
    const f = await failureOf(p.issueReplacement({ ...req(user), mode: 'graceful' }, recordingSink()));
    expect(f.type).toBe(ErrorType.PERMISSION_DENIED);
    const g = await failureOf(new RedisProvider(system(), admin.url).verifyDead(req(user), password));
    expect(g.type).toBe(ErrorType.CREDENTIAL_STILL_VALID);
    for (const m of [f.message, g.message]) expect(m).not.toContain(password);
    // The failed transaction left the user as it was.
    expect(await fx.passwordsOf(user)).toEqual([sha256(password)]);
  });
});

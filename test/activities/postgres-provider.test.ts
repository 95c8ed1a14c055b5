/**
 * The PostgreSQL provider against a real, password-enforcing PostgreSQL: every operation is
 * idempotent, the leaked password is proven dead, and errors are classified by type.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresProvider } from '../../lib/systems/postgres';
import type { SecretSink, SecretValue } from '../../lib/systems/provider';
import { parseInventory, type PostgresSystem } from '../../lib/inventory';
import { ErrorType } from '../../contracts/errors';
import { ownedSystem, rand, type OwnedSystem } from '../helpers/harness';
import { failureProbe } from '../helpers/failure';
import { ISO_TIME } from '../helpers/matchers';

let owned: OwnedSystem;
let provider: PostgresProvider;
const system = () =>
  parseInventory({ systems: [{ name: 'owned-db', kind: 'postgres', adminUrlEnv: 'X', roles: ['*'] }] })
    .systems[0] as PostgresSystem;
const req = (role: string) => ({ workflowId: `wf-${rand()}`, credentialRef: { role } });
const rev = (role: string, mode: 'emergency' | 'graceful' = 'emergency') => ({ ...req(role), mode });

/** A sink that keeps what it receives, so the test can log in with the replacement. */
function keepingSink(): SecretSink & { versions: SecretValue[] } {
  const versions: SecretValue[] = [];
  return {
    kind: 'test_keeping',
    versions,
    put: async (v) => (versions.push(v), { ref: `test#${versions.length}` }),
    close: async () => undefined,
  };
}

const failureType = failureProbe();

beforeAll(async () => {
  owned = await ownedSystem();
  provider = new PostgresProvider(system(), owned.adminUrl);
});
afterAll(async () => {
  await provider?.close();
  await owned?.su.end();
});

describe('PostgresProvider', () => {
  it('revoke locks the leaked password out, and revoking twice leaves the same state', async () => {
    const { role, password } = await owned.createRole();
    expect(await owned.loginFails(role, password)).toBeNull();
    const verifierBefore = (
      await owned.su.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role])
    ).rows[0].rolpassword;

    const before = new Date().toISOString();
    const first = await provider.revoke(rev(role));
    expect(first).toEqual({
      revokedAt: expect.stringMatching(ISO_TIME),
      note: `password of ${role} replaced by a random value nobody holds`,
    });
    expect(first.revokedAt! >= before && first.revokedAt! <= new Date().toISOString()).toBe(true);
    expect(await owned.loginFails(role, password)).toBe('28P01');
    const afterFirst = (
      await owned.su.query('SELECT rolpassword, rolcanlogin FROM pg_authid WHERE rolname = $1', [role])
    ).rows[0];
    expect(afterFirst.rolpassword).not.toBe(verifierBefore);
    expect(afterFirst.rolpassword).toMatch(/^SCRAM-SHA-256\$/);

    await provider.revoke(rev(role));
    expect(await owned.loginFails(role, password)).toBe('28P01');
    const afterSecond = (await owned.su.query('SELECT rolcanlogin FROM pg_authid WHERE rolname = $1', [role]))
      .rows[0];
    expect(afterSecond.rolcanlogin).toBe(afterFirst.rolcanlogin);
  });

  it('quotes identifiers and literals: a role name with quotes and spaces is revoked, nothing else is touched', async () => {
    const role = `app "weird"; DROP ROLE x ${rand()}`;
    await owned.su.query(`CREATE ROLE ${owned.su.escapeIdentifier(role)} LOGIN PASSWORD 'pw-weird-1'`);
    const bystander = await owned.createRole();
    await provider.revoke(rev(role));
    expect(await owned.loginFails(role, 'pw-weird-1')).toBe('28P01');
    expect(await owned.loginFails(bystander.role, bystander.password)).toBeNull();
  });

  it('expireSessions terminates every backend of the role, and a second run finds none', async () => {
    const { role, password } = await owned.createRole();
    const sessions = await Promise.all([
      owned.connectAs(role, password),
      owned.connectAs(role, password),
      owned.connectAs(role, password),
    ]);
    expect(await owned.backendsOf(role)).toBe(3);
    const first = await provider.expireSessions(req(role));
    expect(first.terminated).toBe(3);
    expect(await owned.backendsOf(role)).toBe(0);
    for (const s of sessions) await expect(s.query('SELECT 1')).rejects.toThrow();
    const second = await provider.expireSessions(req(role));
    expect(second.terminated).toBe(0);
  });

  it('verifyDead proves a rotated password is refused, and refuses to call a live one dead', async () => {
    const { role, password } = await owned.createRole();
    const live = await failureType(provider.verifyDead(req(role), password));
    expect(live).toEqual({ type: ErrorType.CREDENTIAL_STILL_VALID, nonRetryable: false });
    await provider.revoke(rev(role));
    const before = new Date().toISOString();
    const dead = await provider.verifyDead(req(role), password);
    expect(dead).toEqual({ verifiedDeadAt: expect.stringMatching(ISO_TIME), method: 'login_rejected' });
    expect(dead.verifiedDeadAt! >= before && dead.verifiedDeadAt! <= new Date().toISOString()).toBe(true);
    expect((await provider.verifyDead(req(role), password)).method).toBe('login_rejected');
    expect((await provider.verifyDead(req(role), undefined)).method).toBe('not_verifiable_no_leaked_value');
  });

  it('classifies a role the admin may not alter as PermissionDenied (non-retryable)', async () => {
    const { role } = await owned.createRole({ superuser: true });
    expect(await failureType(provider.revoke(rev(role)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
  });

  it('classifies an unknown role as UnknownCredential (non-retryable)', async () => {
    expect(await failureType(provider.revoke(rev(`ghost_${rand()}`)))).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
  });

  it('classifies a wrong admin password as Misconfigured, and an unreachable server as transient', async () => {
    const badAdmin = new PostgresProvider(
      system(),
      owned.adminUrl.replace(owned.adminPassword, 'wrong-password'),
    );
    try {
      expect(await failureType(badAdmin.revoke(rev('app_any')))).toEqual({
        type: ErrorType.MISCONFIGURED,
        nonRetryable: true,
      });
    } finally {
      await badAdmin.close();
    }
    const unreachable = new PostgresProvider(system(), 'postgres://a:b@127.0.0.1:1/postgres');
    try {
      expect(await failureType(unreachable.revoke(rev('app_any')))).toEqual({ type: 'plain' });
    } finally {
      await unreachable.close();
    }
  });

  it('emergency: revoke then issue delivers a new password that logs in, and the leaked one stays dead', async () => {
    const { role, password } = await owned.createRole();
    const sink = keepingSink();
    const r = { ...rev(role), workflowId: `wf-${rand()}` };
    await provider.revoke(r);
    const issued = await provider.issueReplacement(r, sink);
    expect(issued).toMatchObject({ delivered: true, sinkRef: 'test#1' });
    expect(JSON.stringify(issued)).not.toContain(sink.versions[0]!.password);
    expect(sink.versions[0]).toMatchObject({ engine: 'postgres', username: role });
    expect(await owned.loginFails(role, sink.versions[0]!.password!)).toBeNull();
    expect(await owned.loginFails(role, password)).toBe('28P01');
    // A retried issue leaves one state: the newest delivered value works, the earlier one does not.
    await provider.issueReplacement(r, sink);
    expect(await owned.loginFails(role, sink.versions[1]!.password!)).toBeNull();
    expect(await owned.loginFails(role, sink.versions[0]!.password!)).toBe('28P01');
  });

  it('graceful: a clone login role works beside the leaked one during the overlap, only the clone after revoke', async () => {
    const { role, password } = await owned.createRole();
    await owned.su.query(`CREATE TABLE IF NOT EXISTS graceful_probe (n int)`);
    await owned.su.query(`GRANT SELECT ON graceful_probe TO ${owned.su.escapeIdentifier(role)}`);
    const sink = keepingSink();
    const r = { ...rev(role, 'graceful'), workflowId: `wf-${rand()}` };
    const issued = await provider.issueReplacement(r, sink);
    const clone = sink.versions[0]!;
    expect(issued.delivered).toBe(true);
    expect(clone.username).toBe(`${role}_ks`);
    expect(await owned.loginFails(role, password)).toBeNull();
    const asClone = await owned.connectAs(clone.username!, clone.password!);
    // Inherits the leaked role's grants (nobody writes to the probe table).
    expect((await asClone.query('SELECT count(*)::int AS n FROM graceful_probe')).rows).toEqual([{ n: 0 }]);

    await provider.issueReplacement(r, sink); // retried: still one clone, with the newest password
    expect(
      (await owned.su.query('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1', [clone.username]))
        .rows[0].n,
    ).toBe(1);
    const newest = sink.versions[1]!;

    await provider.revoke(r);
    expect(await owned.loginFails(role, password)).toBe('28P01');
    expect(await owned.loginFails(newest.username!, newest.password!)).toBeNull();
  });

  it('dry run: issue and revoke change nothing', async () => {
    const { role, password } = await owned.createRole();
    const sink = keepingSink();
    const r = { ...rev(role, 'graceful'), dryRun: true };
    expect((await provider.issueReplacement(r, sink)).issuedAt).toBeNull();
    expect((await provider.revoke(r)).revokedAt).toBeNull();
    expect(sink.versions).toHaveLength(0);
    expect(await owned.loginFails(role, password)).toBeNull();
    expect(
      (await owned.su.query('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1', [`${role}_ks`]))
        .rows[0].n,
    ).toBe(0);
  });
});

/**
 * User-session targets: Okta (against a loopback fake of the Management API) and connect_pg_simple
 * (against REAL sessions written by an Express app through express-session + connect-pg-simple into
 * a fresh schema of the run's PostgreSQL database).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import connectPgSimple from 'connect-pg-simple';
import express from 'express';
import session from 'express-session';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createSessionTarget } from '../../activities/sessions';
import { parseInventory, resolveInventoryEnv } from '../../lib/inventory';
import type { SessionTargetConfig } from '../../lib/systems';
import { ErrorType } from '../../contracts/errors';
import { startOktaFake, type OktaFake } from '../fakes/okta';
import { rand } from '../helpers/harness';
import { failureProbe } from '../helpers/failure';

const failure = failureProbe({ with: ['message', 'nextRetryDelay'] });

/** Parses a target the way the inventory does (defaults and all), attached to a minimal system. */
function targetConfig(t: Record<string, unknown>): SessionTargetConfig {
  const inv = parseInventory({
    systems: [{ name: 'db', kind: 'postgres', adminUrlEnv: 'DB_URL', roles: ['x'], sessions: [t] }],
  });
  return inv.systems[0]!.sessions[0]!;
}

describe('okta session target', () => {
  let okta: OktaFake;
  beforeAll(async () => {
    okta = await startOktaFake();
  });
  afterAll(async () => {
    await okta?.close();
  });
  const target = (users: string[], over: Record<string, unknown> = {}, token?: string) =>
    createSessionTarget(
      targetConfig({ kind: 'okta', baseUrl: `${okta.url}/`, tokenEnv: 'OKTA_TOKEN', users, ...over }),
      { OKTA_TOKEN: token ?? okta.token },
    );

  it('clears every session (and OAuth token) of each user with SSWS auth; a second run leaves the same state', async () => {
    const alice = okta.addUser(`alice-${rand()}@acme.test`, 3, 2);
    const bob = okta.addUser(`bob-${rand()}@acme.test`, 1, 1);
    const carol = okta.addUser(`carol-${rand()}@acme.test`, 2, 1);
    const t = target([alice.id, bob.login]);
    const before = okta.requests.length;
    expect(await t.expire({})).toEqual({ expired: 2 });
    const calls = okta.requests.slice(before);
    expect(calls.map((r) => `${r.method} ${r.path}`)).toEqual([
      `DELETE /api/v1/users/${alice.id}/sessions?oauthTokens=true`,
      `DELETE /api/v1/users/${encodeURIComponent(bob.login)}/sessions?oauthTokens=true`,
    ]);
    expect(calls.every((r) => r.headers.authorization === `SSWS ${okta.token}`)).toBe(true);
    expect([alice.sessions, alice.oauthTokens, bob.sessions, bob.oauthTokens]).toEqual([0, 0, 0, 0]);
    expect([carol.sessions, carol.oauthTokens]).toEqual([2, 1]);
    expect(await t.expire({})).toEqual({ expired: 2 });
    expect([alice.sessions, bob.sessions, carol.sessions]).toEqual([0, 0, 2]);
  });

  it('keeps OAuth tokens when revokeOAuthTokens is false', async () => {
    const dave = okta.addUser(`dave-${rand()}@acme.test`, 2, 4);
    await target([dave.id], { revokeOAuthTokens: false }).expire({});
    expect(okta.requests.at(-1)!.path).toBe(`/api/v1/users/${dave.id}/sessions`);
    expect([dave.sessions, dave.oauthTokens]).toEqual([0, 4]);
  });

  it('a dry run checks each user exists and changes nothing', async () => {
    const erin = okta.addUser(`erin-${rand()}@acme.test`, 2, 1);
    const before = okta.requests.length;
    expect(await target([erin.id, erin.login]).expire({ dryRun: true })).toEqual({
      expired: 0,
      wouldExpire: 2,
    });
    expect(okta.requests.slice(before).map((r) => r.method)).toEqual(['GET', 'GET']);
    expect(erin.sessions).toBe(2);
  });

  it('classifies: unknown user Misconfigured (after clearing the others), bad token PermissionDenied, 429 waits for X-Rate-Limit-Reset, 5xx transient', async () => {
    const frank = okta.addUser(`frank-${rand()}@acme.test`, 2, 1);
    expect(await failure(target(['00unobody', frank.id]).expire({}))).toMatchObject({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
    expect(frank.sessions).toBe(0);

    const gina = okta.addUser(`gina-${rand()}@acme.test`, 2, 1);
    const refused = await failure(target([gina.id], {}, 'revoked-token-value').expire({}));
    expect(refused).toMatchObject({ type: ErrorType.PERMISSION_DENIED, nonRetryable: true });
    expect(refused.message).not.toContain('revoked-token-value');
    expect(gina.sessions).toBe(2);

    const reset = Math.floor(Date.now() / 1000) + 42;
    okta.script.push({
      status: 429,
      headers: {
        'x-rate-limit-limit': '600',
        'x-rate-limit-remaining': '0',
        'x-rate-limit-reset': String(reset),
      },
      body: { errorCode: 'E0000047', errorSummary: 'API call exceeded rate limit due to too many requests.' },
    });
    const limited = await failure(target([gina.id]).expire({}));
    expect(limited.type).toBe('UpstreamRateLimited');
    expect(limited.nonRetryable).toBeFalsy();
    expect(Number(String(limited.nextRetryDelay).replace('s', ''))).toBeGreaterThanOrEqual(40);
    expect(gina.sessions).toBe(2);

    okta.script.push({ status: 503 });
    expect(await failure(target([gina.id]).expire({}))).toMatchObject({ type: 'plain' });
    expect(
      await failure(
        createSessionTarget(
          targetConfig({ kind: 'okta', baseUrl: 'http://127.0.0.1:1', tokenEnv: 'T', users: ['u'] }),
          { T: 'x' },
        ).expire({}),
      ),
    ).toMatchObject({ type: 'plain' });
  });

  it('requires the token env var at startup', () => {
    const inv = parseInventory({
      systems: [
        {
          name: 'db',
          kind: 'postgres',
          adminUrlEnv: 'DB_URL',
          roles: ['x'],
          sessions: [{ kind: 'okta', baseUrl: okta.url, tokenEnv: 'OKTA_TOKEN', users: ['u'] }],
        },
      ],
    });
    expect(() => resolveInventoryEnv(inv, { DB_URL: 'postgres://x' })).toThrow(
      'systems[0].sessions[0].tokenEnv: environment variable OKTA_TOKEN is not set',
    );
  });
});

describe('connect_pg_simple session target', () => {
  const dbUrl = inject('auditDatabaseUrl');
  const schema = `Sess_${rand()}`;
  const table = 'User_Sessions';
  let pool: pg.Pool;
  let server: http.Server;
  let appUrl: string;

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: dbUrl, max: 3 });
    await pool.query(`CREATE SCHEMA ${pg.escapeIdentifier(schema)}`);
    const PgStore = connectPgSimple(session);
    const store = new PgStore({
      pool,
      schemaName: schema,
      tableName: table,
      createTableIfMissing: true,
      pruneSessionInterval: false,
    });
    const app = express();
    app.use(
      session({
        store,
        secret: 'cookie-signing-secret',
        resave: false,
        saveUninitialized: false,
        name: 'sid',
      }),
    );
    // A passport-style login: the user id sits at session.passport.user.
    app.post('/login/:user', (req, res) => {
      (req.session as unknown as { passport: { user: string | number } }).passport = {
        user: /^\d+$/.test(req.params.user) ? Number(req.params.user) : req.params.user,
      };
      res.sendStatus(204);
    });
    app.get('/me', (req, res) => {
      const user = (req.session as unknown as { passport?: { user: string } }).passport?.user;
      if (user === undefined) res.sendStatus(401);
      else res.json({ user });
    });
    server = http.createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    appUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server?.close(() => r()));
    await pool?.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
    await pool?.end();
  });

  async function login(user: string): Promise<string> {
    const res = await fetch(`${appUrl}/login/${user}`, { method: 'POST' });
    expect(res.status).toBe(204);
    return res.headers.get('set-cookie')!.split(';')[0]!;
  }
  const me = async (cookie: string) => (await fetch(`${appUrl}/me`, { headers: { cookie } })).status;
  const target = (users: string[], over: Record<string, unknown> = {}, url = dbUrl) =>
    createSessionTarget(
      targetConfig({
        kind: 'connect_pg_simple',
        urlEnv: 'SESS_DB',
        schema,
        table,
        userField: 'passport.user',
        users,
        ...over,
      }),
      { SESS_DB: url },
    );

  it('deletes every session of the users (string and numeric ids), leaves the others; a second run finds none', async () => {
    const alice1 = await login('alice');
    const alice2 = await login('alice');
    const u42 = await login('42');
    const bob = await login('bob');
    for (const c of [alice1, alice2, u42, bob]) expect(await me(c)).toBe(200);
    const rows = await pool.query(
      `SELECT count(*)::int AS n FROM ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`,
    );
    expect(rows.rows[0].n).toBe(4);

    const t = target(['alice', '42', 'nobody']);
    try {
      expect(await t.expire({ dryRun: true })).toEqual({ expired: 0, wouldExpire: 3 });
      expect(await me(alice1)).toBe(200);
      expect(await t.expire({})).toEqual({ expired: 3 });
      for (const c of [alice1, alice2, u42]) expect(await me(c)).toBe(401);
      expect(await me(bob)).toBe(200);
      expect(await t.expire({})).toEqual({ expired: 0 });
    } finally {
      await t.close();
    }
  });

  it('classifies: a missing table is Misconfigured, a role without DELETE PermissionDenied, an unreachable server transient', async () => {
    const missing = target(['alice'], { table: 'no_such_table' });
    expect(await failure(missing.expire({}))).toMatchObject({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
    await missing.close();

    const role = `ro_${rand()}`;
    await pool.query(`CREATE ROLE ${role} LOGIN`);
    await pool.query(`GRANT USAGE ON SCHEMA ${pg.escapeIdentifier(schema)} TO ${role}`);
    await pool.query(
      `GRANT SELECT ON ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)} TO ${role}`,
    );
    const u = new URL(dbUrl);
    u.username = role;
    const readOnly = target(['bob'], {}, u.toString());
    try {
      expect((await readOnly.expire({ dryRun: true })).wouldExpire).toBe(1);
      expect(await failure(readOnly.expire({}))).toMatchObject({
        type: ErrorType.PERMISSION_DENIED,
        nonRetryable: true,
      });
    } finally {
      await readOnly.close();
      await pool.query(
        `REVOKE ALL ON ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)} FROM ${role}`,
      );
      await pool.query(`REVOKE ALL ON SCHEMA ${pg.escapeIdentifier(schema)} FROM ${role}`);
      await pool.query(`DROP ROLE ${role}`);
    }

    const down = target(['bob'], {}, 'postgres://x@127.0.0.1:1/db');
    expect(await failure(down.expire({}))).toMatchObject({ type: 'plain' });
    await down.close();
  });
});

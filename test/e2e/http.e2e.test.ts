/**
 * End to end over loopback for a homegrown system (`kind: http`): a signed generic webhook carries a
 * leaked API key; the real worker runs the killSwitch workflow on the real Temporal server, the
 * recipes revoke the key (lookup-then-delete) and expire its sessions on the homegrown admin API,
 * Okta (fake) clears the owner's IdP sessions, the app's connect-pg-simple sessions (real rows in
 * PostgreSQL) are deleted, verify proves the key is refused, and nothing secret leaks anywhere.
 */
import connectPgSimple from 'connect-pg-simple';
import session from 'express-session';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import { startHomegrownFake, type HomegrownFake } from '../fakes/homegrown-admin';
import { startOktaFake, type OktaFake, type OktaUser } from '../fakes/okta';
import { expectNowhere, secretPlaces, rand, startHarness, type Harness } from '../helpers/harness';

let h: Harness;
let api: HomegrownFake;
let okta: OktaFake;
let pool: pg.Pool;
let owner: OktaUser;
const schema = `e2e_sess_${rand()}`;
const table = 'session';
const planted: string[] = [];
const runs: string[] = [];

const auth = { Authorization: 'Bearer {{env.HG_ADMIN_TOKEN}}' };

async function writeSessions(store: session.Store, user: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const sess = {
      cookie: { originalMaxAge: 3_600_000, expires: new Date(Date.now() + 3_600_000) },
      passport: { user },
    } as unknown as session.SessionData;
    await new Promise<void>((resolve, reject) =>
      store.set(`sid-${user}-${rand()}`, sess, (err?: unknown) => (err ? reject(err as Error) : resolve())),
    );
  }
}
const sessionsOf = async (user: string) =>
  (
    await pool.query(
      `SELECT count(*)::int AS n FROM ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)} WHERE sess #>> '{passport,user}' = $1`,
      [user],
    )
  ).rows[0].n as number;

beforeAll(async () => {
  [api, okta] = await Promise.all([startHomegrownFake(), startOktaFake()]);
  owner = okta.addUser(`svc-owner-${rand()}@acme.test`, 2, 3);
  const dbUrl = inject('auditDatabaseUrl');
  pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
  await pool.query(`CREATE SCHEMA ${pg.escapeIdentifier(schema)}`);
  const store = new (connectPgSimple(session))({
    pool,
    schemaName: schema,
    tableName: table,
    createTableIfMissing: true,
    pruneSessionInterval: false,
  });
  await writeSessions(store, 'svc-owner', 2);
  await writeSessions(store, 'someone-else', 1);

  planted.push(api.adminToken, okta.token);
  h = await startHarness({
    env: { HG_ADMIN_TOKEN: api.adminToken, OKTA_API_TOKEN: okta.token, APP_SESSIONS_DB: dbUrl },
    config: {
      systems: [
        {
          name: 'billing-api',
          kind: 'http',
          description: 'Homegrown billing service API keys',
          credentialTypes: ['generic'],
          match: { keyPrefix: '*', service: 'billing' },
          secretsEnv: ['HG_ADMIN_TOKEN'],
          baseUrl: api.url,
          revoke: [
            {
              name: 'lookup',
              method: 'GET',
              url: '/admin/keys/by-prefix/{{ref.keyPrefix}}',
              headers: auth,
              expectStatus: [200],
              alreadyDoneStatus: [404],
              extract: { keyId: '/key/id' },
            },
            {
              name: 'delete',
              method: 'DELETE',
              url: '/admin/keys/{{steps.keyId}}',
              headers: { ...auth, 'X-Request-Id': '{{workflowId}}' },
              expectStatus: [204],
              alreadyDoneStatus: [404],
            },
          ],
          expire: [
            // Expire runs after revoke (emergency mode): its lookup must still find the revoked key.
            {
              name: 'lookup',
              method: 'GET',
              url: '/admin/keys/by-prefix/{{ref.keyPrefix}}?include=revoked',
              headers: auth,
              expectStatus: [200],
              alreadyDoneStatus: [404],
              extract: { keyId: 'key.id' },
            },
            {
              name: 'kill',
              method: 'POST',
              url: '/admin/keys/{{steps.keyId}}/sessions/revoke',
              headers: auth,
              expectStatus: [200],
              extract: { terminated: 'terminated' },
            },
          ],
          verify: [
            {
              name: 'whoami',
              method: 'GET',
              url: '/api/whoami',
              headers: { Authorization: 'Bearer {{leaked}}' },
              expectStatus: [200],
              deadStatus: [401],
            },
          ],
          sessions: [
            { kind: 'okta', baseUrl: okta.url, tokenEnv: 'OKTA_API_TOKEN', users: [owner.id] },
            {
              kind: 'connect_pg_simple',
              urlEnv: 'APP_SESSIONS_DB',
              schema,
              table,
              userField: 'passport.user',
              users: ['svc-owner'],
            },
          ],
        },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
  await pool?.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`);
  await pool?.end();
  await Promise.all([api?.close(), okta?.close()]);
});

describe('http system end to end', () => {
  it('contains a leaked homegrown API key: revoke by recipe, expire its sessions, clear Okta and app sessions, prove it dead, audit, Slack', async () => {
    const key = api.createKey(4);
    planted.push(key.value, key.secret);
    expect(
      (await fetch(`${api.url}/api/whoami`, { headers: { Authorization: `Bearer ${key.value}` } })).status,
    ).toBe(200);

    const res = await h.post({
      scanner: 'ci-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'generic',
      secret: key.value,
      credentialRef: { keyPrefix: key.prefix, service: 'billing' },
      location: { repository: 'acme/billing', file: 'config/.env', line: 3 },
      severity: 'critical',
    });
    expect(res.status).toBe(202);
    runs.push(res.json.workflowId);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();

    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({
      system: 'billing-api',
      kind: 'http',
      mode: 'emergency',
      replacement: false,
      userSessionTargets: 2,
    });
    expect(result.rotation?.note).toBe('revoked through 2 HTTP step(s)');
    expect(result.sessions).toEqual({ terminated: 4 });
    expect(result.userSessions).toEqual({ expired: 1 + 2 });
    expect(result.verification).toEqual({ method: 'login_rejected' });

    // The world changed as claimed.
    expect(api.keys.get(key.id)!.revoked).toBe(true);
    expect(api.keys.get(key.id)!.sessions).toBe(0);
    expect(
      (await fetch(`${api.url}/api/whoami`, { headers: { Authorization: `Bearer ${key.value}` } })).status,
    ).toBe(401);
    expect([owner.sessions, owner.oauthTokens]).toEqual([0, 0]);
    expect(okta.requests.filter((r) => r.method === 'DELETE').map((r) => r.path)).toEqual([
      `/api/v1/users/${owner.id}/sessions?oauthTokens=true`,
    ]);
    expect(await sessionsOf('svc-owner')).toBe(0);
    expect(await sessionsOf('someone-else')).toBe(1);
    const del = api.requests.find((r) => r.method === 'DELETE')!;
    expect(del.headers['x-request-id']).toBe(res.json.workflowId);

    const rows = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        res.json.workflowId,
      ])
    ).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'contained',
      owning_system: 'billing-api',
      credential_type: 'generic',
      verification_method: 'login_rejected',
    });
    expect(rows[0]!.credential_ref).toEqual({ keyPrefix: key.prefix, service: 'billing' });
    expect(h.slack.messages().filter((m) => m.text.includes(res.json.workflowId))).toHaveLength(1);
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(0);
  });

  it('escalates when the admin API refuses the token: PermissionDenied, PagerDuty, key still alive', async () => {
    const key = api.createKey();
    planted.push(key.value);
    // The admin API rejects the next admin call as a revoked admin token would.
    api.script.push({ status: 401, body: { error: 'admin token required' } });
    const res = await h.post({
      credentialType: 'generic',
      secret: key.value,
      credentialRef: { keyPrefix: key.prefix, service: 'billing' },
      severity: 'high',
    });
    expect(res.status).toBe(202);
    runs.push(res.json.workflowId);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('escalated');
    expect(result.failure).toMatchObject({ step: 'revoking', type: 'PermissionDenied' });
    expect(api.keys.get(key.id)!.revoked).toBe(false);
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(1);
  });

  it('never lets the leaked key, the admin token or the Okta token reach history, logs, audit, Slack, PagerDuty or Okta', async () => {
    expect(runs).toHaveLength(2);
    const places = await secretPlaces(h, runs, {
      'Okta requests (bodies and paths)': okta.requests
        .map((r) => `${r.method} ${r.path}\n${r.body}`)
        .join('\n'),
      'admin API requests other than verify': api.requests
        .filter((r) => r.path !== '/api/whoami')
        .map((r) => `${r.path}\n${r.body}\n${JSON.stringify({ ...r.headers, authorization: undefined })}`)
        .join('\n'),
    });
    // The searches are real: each place holds what it should.
    expect(places['Temporal history']).toContain('revokeCredential');
    expect(places.logs).toContain('user sessions expired');
    expect(places['audit table']).toContain('billing-api');
    expect(places['Slack requests']).toContain('contained');
    expect(places['PagerDuty requests']).toContain('PermissionDenied');
    expect(places['Okta requests (bodies and paths)']).toContain(owner.id);
    expect(places['admin API requests other than verify']).toContain('/admin/keys/by-prefix/');
    expectNowhere(places, planted);
    // The leaked value went to the owner once per verify, in the Authorization header only.
    const verifies = api.requests.filter((r) => r.path === '/api/whoami');
    expect(verifies.length).toBeGreaterThanOrEqual(1);
    for (const r of verifies) expect(r.body).toBe('');
  });
});

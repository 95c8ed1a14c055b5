/**
 * Outbound event subscriptions over HTTP, on the ingress as server.ts wires it (createIngressApp)
 * against the run's PostgreSQL: CRUD with PATCH (merge) and PUT (replacement) semantics, roles,
 * 422 naming each field (scheme, private and loopback destinations, DNS names resolving to a
 * private address, the allow-list from the inventory and OUTBOUND_ALLOW_HOSTS, bounds, unknown event
 * types and formats), the secret sealed and never answered, logged or audited, admin audit rows,
 * the event catalogue, delivery history pages, the test route through an injected OutboundControl,
 * config subscriptions synced at start and read-only, the store on PGlite, and the CLI.
 *
 * Test files share the database: every subscription here is switched off or filtered to an owning
 * system nobody has, so no other file's runs queue events for it; all are removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createIngressApp } from '../../api/server';
import { run, type Io } from '../../cli/killswitch';
import { EVENT_TYPE_NAMES, DEFAULT_EVENT_TYPES } from '../../contracts/events';
import { loadConfig } from '../../lib/config';
import { createPgliteDb, createPostgresDb, migrate, type Db } from '../../lib/db';
import { InventoryError, parseInventory, type Inventory } from '../../lib/inventory';
import { createServerKeys, newServerKey, newWebhookSecret } from '../../lib/keys';
import { checkHost, createAllowList, isPrivateAddress, type OutboundControl } from '../../lib/subscriptions';
import { createEvidenceStore } from '../../store/evidence';
import {
  createSubscription,
  deleteDeliveryAttemptsOlderThan,
  getSubscription,
  insertDeliveryAttempt,
  listDeliveryAttempts,
  setSubscriptionActive,
  subscriptionSecretAad,
  syncConfigSubscriptions,
  updateSubscription,
} from '../../store/subscriptions';
import { capturedLogs, rand, testLogger } from '../helpers/harness';

const r = rand();
const VIEWER = `viewer-${randomBytes(16).toString('hex')}`;
const ADMIN = `admin-${randomBytes(16).toString('hex')}`;
const INVENTORY_FILE = `/etc/kill-switch/inventory-${r}.yaml`;
/** Every secret this file sends: none may come back in an answer, a log line or the admin audit. */
const SECRETS = [`whsec-${randomBytes(24).toString('hex')}`, `rotated-${randomBytes(24).toString('hex')}`];
const CONFIG_SECRET = `cfg-${randomBytes(24).toString('hex')}`;
const CONFIG_SECRET_ENV = `SUB_TOKEN_${r.toUpperCase()}`;
/** An owning system no run has: a subscription filtered to it never gets another file's events. */
const NOBODY = { owningSystems: [`nobody-${r}`] };

/** DNS as the tests want it: public names, a name with one private address among public ones. */
const DNS: Record<string, string[]> = {
  'hooks.public.test': ['203.0.113.10'],
  'mixed.test': ['203.0.113.11', '10.1.2.3'],
  'v6-private.test': ['fd00::5'],
  'hooks.allowed.test': ['10.20.30.40'],
};
const lookups: string[] = [];
const lookup = async (host: string) => {
  lookups.push(host);
  const found = DNS[host];
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found;
};

/** The delivery side, faked at its one boundary: records the calls and answers as told. */
class RecordingOutbound implements OutboundControl {
  readonly calls: Array<{ id: string; by: string }> = [];
  answer = { delivered: true, statusCode: 200 } as {
    delivered: boolean;
    statusCode?: number;
    error?: string;
  };
  async sendTest(id: string, by: string) {
    this.calls.push({ id, by });
    return { eventId: `evt-test-${this.calls.length}`, ...this.answer };
  }
}

const outbound = new RecordingOutbound();
const env: Record<string, string> = {
  TEMPORAL_ADDRESS: inject('temporalAddress'),
  DATABASE_URL: inject('auditDatabaseUrl'),
  KILLSWITCH_SERVER_KEY: newServerKey(),
  GENERIC_WEBHOOK_SECRETS: newWebhookSecret(),
  API_TOKENS: `viewer:${VIEWER},admin:${ADMIN}`,
  INVENTORY_FILE,
  OUTBOUND_ALLOW_HOSTS: '127.0.0.1',
  [CONFIG_SECRET_ENV]: CONFIG_SECRET,
};
const config = loadConfig(env);
const keys = createServerKeys(config.serverKey!);
const inventoryDoc = {
  // A system whose routing names an API subscription: deleting or renaming that one is refused.
  systems: [
    {
      name: `routed-${r}`,
      kind: 'postgres',
      adminUrlEnv: 'ROUTED_DB_URL',
      roles: ['nobody_*'],
      team: 'payments',
      routing: { subscriptions: [`team-hook-${r}`] },
    },
  ],
  outbound: { allowHosts: ['hooks.allowed.test', '10.9.0.0/16'], deliveryRetention: '7d' },
  subscriptions: [
    {
      name: `cfg-siem-${r}`,
      format: 'splunk_hec',
      url: 'https://hooks.public.test/services/collector',
      secretEnv: CONFIG_SECRET_ENV,
      eventTypes: ['run.*'],
      isActive: false,
      filters: NOBODY,
      options: { index: 'security' },
    },
    {
      name: `cfg-syslog-${r}`,
      format: 'syslog',
      connection: { protocol: 'tls', host: 'hooks.allowed.test' },
      isActive: false,
      filters: NOBODY,
    },
  ],
};
const inventory = parseInventory(inventoryDoc);

let db: Db;
let connection: Connection;
let server: http.Server;
let bare: http.Server;
let base: string;
let bareBase: string;
/** Every answer body this file saw, for the secret search. */
const answers: string[] = [];
const created: string[] = [];

function listenOn(app: http.RequestListener): Promise<http.Server> {
  const s = http.createServer(app);
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s)));
}

beforeAll(async () => {
  db = createPostgresDb(config.databaseUrl!);
  await migrate(db);
  connection = Connection.lazy({ address: config.temporal.address! });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const parts = {
    logger: testLogger,
    client,
    keys,
    db,
    evidence: createEvidenceStore(db, keys, 24),
    genericSecrets: config.webhook.genericSecrets!,
    inventory,
    env,
    lookup,
  };
  server = await listenOn(createIngressApp(config, { ...parts, outbound }));
  // The same ingress without a delivery side: the test route answers 503.
  bare = await listenOn(createIngressApp(config, parts));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  bareBase = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;
});

afterAll(async () => {
  if (db) {
    await db.query('DELETE FROM killswitch_subscriptions WHERE id = ANY($1::text[]) OR name LIKE $2', [
      created,
      `%-${r}`,
    ]);
    await db.query('DELETE FROM killswitch_event_deliveries WHERE subscription_id = ANY($1::text[])', [
      created,
    ]);
  }
  await new Promise<void>((res) => (server ? server.close(() => res()) : res()));
  await new Promise<void>((res) => (bare ? bare.close(() => res()) : res()));
  await connection?.close();
  await db?.close();
});

async function api(
  p: string,
  token: string | undefined,
  init: { method?: string; body?: unknown; at?: string } = {},
) {
  const res = await fetch(`${init.at ?? base}${p}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  answers.push(text);
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    location: res.headers.get('location'),
    json: text ? JSON.parse(text) : undefined,
  };
}

const post = (body: unknown, token = ADMIN) => api('/admin/subscriptions', token, { method: 'POST', body });

/** A valid subscription body of this file (switched off, filtered to nobody). */
const sub = (over: Record<string, unknown> = {}) => ({
  name: `sub-${rand()}-${r}`,
  format: 'json',
  url: 'https://hooks.public.test/ks',
  isActive: false,
  filters: NOBODY,
  ...over,
});

async function createOk(body: Record<string, unknown>) {
  const res = await post(body);
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  created.push(res.json.id);
  return res.json as Record<string, any>;
}

/** The 422's fields, each with its message. */
async function refused(body: unknown, method = 'POST', p = '/admin/subscriptions') {
  const res = await api(p, ADMIN, { method, body });
  expect(res.status, JSON.stringify(res.json)).toBe(422);
  expect(res.type).toContain('application/problem+json');
  return res.json.errors as Array<{ field: string; message: string }>;
}

async function auditOf(id: string) {
  return (
    await db.query<{ action: string; actor: string; role: string; before: any; after: any }>(
      'SELECT action, actor, role, before, after FROM killswitch_admin_audit WHERE target = $1 ORDER BY id',
      [id],
    )
  ).rows;
}

describe('roles', () => {
  it('viewers read /api/subscriptions; only admins change them (403); no token is 401', async () => {
    const s = await createOk(sub());
    expect((await api('/api/subscriptions', VIEWER)).status).toBe(200);
    expect((await api(`/api/subscriptions/${s.id}`, VIEWER)).json.name).toBe(s.name);
    for (const [method, p, body] of [
      ['GET', '/admin/subscriptions', undefined],
      ['POST', '/admin/subscriptions', sub()],
      ['PATCH', `/admin/subscriptions/${s.id}`, { retryCount: 1 }],
      ['PUT', `/admin/subscriptions/${s.id}`, sub({ name: s.name })],
      ['DELETE', `/admin/subscriptions/${s.id}`, undefined],
      ['POST', `/admin/subscriptions/${s.id}/test`, undefined],
    ] as const) {
      const res = await api(p, VIEWER, { method, body });
      expect(res.status, `${method} ${p}`).toBe(403);
      expect((await api(p, undefined, { method, body })).status).toBe(401);
    }
    expect(outbound.calls).toHaveLength(0);
    expect((await api(`/admin/subscriptions/${s.id}`, ADMIN)).json.retryCount).toBe(3);
  });
});

describe('CRUD', () => {
  it('POST creates with defaults, seals the secret and answers hasSecret only; GET reads it back', async () => {
    const res = await post(sub({ name: `crud-${r}`, secret: SECRETS[0] }));
    expect(res.status).toBe(201);
    created.push(res.json.id);
    expect(res.location).toBe(`/admin/subscriptions/${res.json.id}`);
    expect(res.json).toMatchObject({
      name: `crud-${r}`,
      format: 'json',
      url: 'https://hooks.public.test/ks',
      connection: null,
      hasSecret: true,
      secretEnv: null,
      eventTypes: [...DEFAULT_EVENT_TYPES],
      retryCount: 3,
      timeoutMs: 5000,
      failureThreshold: 10,
      isActive: false,
      consecutiveFailures: 0,
      origin: 'api',
      filters: NOBODY,
      options: {},
    });
    expect(res.json).not.toHaveProperty('secret');
    const row = (
      await db.query<{ secret_sealed: Buffer }>(
        'SELECT secret_sealed FROM killswitch_subscriptions WHERE id = $1',
        [res.json.id],
      )
    ).rows[0]!;
    // Sealed with the server key, bound to this subscription's id.
    expect(row.secret_sealed.toString('latin1')).not.toContain(SECRETS[0]);
    expect(keys.decrypt(row.secret_sealed, subscriptionSecretAad(res.json.id))).toBe(SECRETS[0]);
    expect(() => keys.decrypt(row.secret_sealed, subscriptionSecretAad('another'))).toThrow();
    for (const [p, token] of [
      [`/admin/subscriptions/${res.json.id}`, ADMIN],
      [`/api/subscriptions/${res.json.id}`, VIEWER],
    ] as const)
      expect((await api(p, token)).json).toEqual(res.json);
    const listed = (await api('/admin/subscriptions', ADMIN)).json.subscriptions;
    expect(listed.find((x: { id: string }) => x.id === res.json.id)).toEqual(res.json);
    expect((await post(sub({ name: `crud-${r}` }))).status).toBe(409);
  });

  it('PATCH merges (objects merge, null removes, a secret left out stays); PUT replaces with defaults', async () => {
    const s = await createOk(
      sub({ secret: SECRETS[0], eventTypes: ['run.*'], retryCount: 7, filters: { ...NOBODY, teams: ['a'] } }),
    );
    const patched = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { retryCount: 5, filters: { severities: ['critical'], teams: null }, by: 'alice' },
    });
    expect(patched.status, JSON.stringify(patched.json)).toBe(200);
    expect(patched.json).toMatchObject({
      retryCount: 5,
      eventTypes: ['run.*'],
      filters: { ...NOBODY, severities: ['critical'] },
      hasSecret: true,
      url: s.url,
    });
    expect(patched.json.filters).not.toHaveProperty('teams');

    const rotated = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { secret: SECRETS[1] },
    });
    expect(rotated.json.hasSecret).toBe(true);
    const sealed = (
      await db.query<{ secret_sealed: Buffer }>(
        'SELECT secret_sealed FROM killswitch_subscriptions WHERE id = $1',
        [s.id],
      )
    ).rows[0]!.secret_sealed;
    expect(keys.decrypt(sealed, subscriptionSecretAad(s.id))).toBe(SECRETS[1]);
    const cleared = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { secret: null },
    });
    expect(cleared.json.hasSecret).toBe(false);

    const put = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PUT',
      body: {
        name: s.name,
        format: 'cef',
        url: 'https://hooks.public.test/cef',
        secret: SECRETS[0],
        isActive: false,
        filters: NOBODY,
      },
    });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    expect(put.json).toMatchObject({
      id: s.id,
      format: 'cef',
      url: 'https://hooks.public.test/cef',
      retryCount: 3,
      eventTypes: [...DEFAULT_EVENT_TYPES],
      filters: NOBODY,
      options: { vendor: 'Secret Kill Switch', product: 'Kill Switch' },
      hasSecret: true,
    });
    // PUT without a secret removes it: every field left out takes its default, and the default is none.
    const put2 = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PUT',
      body: {
        name: s.name,
        format: 'slack',
        url: 'https://hooks.public.test/slack',
        isActive: false,
        filters: NOBODY,
      },
    });
    expect(put2.json).toMatchObject({ format: 'slack', hasSecret: false, options: {} });

    // Merge semantics across formats: moving to syslog needs url removed (null) and a connection.
    const wrong = await refused(
      { format: 'syslog', connection: { protocol: 'udp', host: 'hooks.public.test' } },
      'PATCH',
      `/admin/subscriptions/${s.id}`,
    );
    expect(wrong).toEqual([{ field: 'url', message: 'not used by the syslog format; set connection' }]);
    const moved = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { format: 'syslog', url: null, connection: { protocol: 'udp', host: 'hooks.public.test' } },
    });
    expect(moved.json).toMatchObject({
      format: 'syslog',
      url: null,
      connection: { protocol: 'udp', host: 'hooks.public.test', port: 514 },
    });
  });

  it('never shows a URL that is a credential: Slack/Teams webhook paths and query values are redacted in every answer and audit row; sent back, the redacted URL keeps the stored one', async () => {
    const token = `XoXoWebhookToken${r}`;
    const slackUrl = `https://hooks.public.test/services/T0AAA/B0BBB/${token}`;
    const s = await createOk(sub({ name: `slack-hook-${r}`, format: 'slack', url: slackUrl }));
    expect(s.url).toBe('https://hooks.public.test/services/***');
    const signed = await createOk(
      sub({ name: `signed-hook-${r}`, url: `https://hooks.public.test/in/hook?sig=${token}&v=1` }),
    );
    expect(signed.url).toBe('https://hooks.public.test/in/hook?sig=***&v=***');
    const shown = [
      await api(`/api/subscriptions/${s.id}`, VIEWER),
      await api('/api/subscriptions', VIEWER),
      await api(`/admin/subscriptions/${s.id}`, ADMIN),
      await api('/admin/subscriptions', ADMIN),
    ];
    // GET, edit, PUT: the redacted URL means "keep it".
    const {
      id: _id,
      hasSecret: _h,
      secretEnv: _e,
      consecutiveFailures: _c,
      disabledReason: _d,
      origin: _o,
      createdAt: _ca,
      updatedAt: _u,
      ...editable
    } = shown[0]!.json;
    const put = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PUT',
      body: { ...editable, retryCount: 5 },
    });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    expect(put.json).toMatchObject({ retryCount: 5, url: 'https://hooks.public.test/services/***' });
    const stored = await db.query<{ url: string }>('SELECT url FROM killswitch_subscriptions WHERE id = $1', [
      s.id,
    ]);
    expect(stored.rows[0]!.url).toBe(slackUrl);
    const audit = JSON.stringify([...(await auditOf(s.id)), ...(await auditOf(signed.id))]);
    for (const text of [...shown.map((x) => JSON.stringify(x.json)), JSON.stringify(put.json), audit])
      expect(text).not.toContain(token);
  });

  it("refuses to delete or rename a subscription an owning system's routing names (409 naming the system)", async () => {
    const s = await createOk(sub({ name: `team-hook-${r}`, routedOnly: true }));
    expect(s).toMatchObject({ routedOnly: true });
    const del = await api(`/admin/subscriptions/${s.id}`, ADMIN, { method: 'DELETE' });
    expect(del.status).toBe(409);
    expect(del.json).toMatchObject({ title: 'Subscription in use', systems: [`routed-${r}`] });
    expect(del.json.detail).toContain(`routed-${r}`);
    const renamed = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { name: `team-hook2-${r}` },
    });
    expect(renamed.status).toBe(409);
    // Other changes are fine.
    const off = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { routedOnly: false },
    });
    expect(off.json).toMatchObject({ routedOnly: false, name: `team-hook-${r}` });
    await db.query('DELETE FROM killswitch_subscriptions WHERE id = $1', [s.id]);
  });

  it('switching a subscription back on resets its failure count; DELETE removes it (204, then 404)', async () => {
    const s = await createOk(sub());
    await db.query(
      "UPDATE killswitch_subscriptions SET consecutive_failures = 12, disabled_reason = 'breaker' WHERE id = $1",
      [s.id],
    );
    const on = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { isActive: true },
    });
    expect(on.json).toMatchObject({ isActive: true, consecutiveFailures: 0, disabledReason: null });
    const del = await api(`/admin/subscriptions/${s.id}`, ADMIN, { method: 'DELETE', body: { by: 'bob' } });
    expect(del.status).toBe(204);
    expect((await api(`/admin/subscriptions/${s.id}`, ADMIN)).status).toBe(404);
    expect((await api(`/api/subscriptions/${s.id}`, VIEWER)).status).toBe(404);
    expect((await api(`/admin/subscriptions/${s.id}`, ADMIN, { method: 'DELETE' })).status).toBe(404);
    const rows = await auditOf(s.id);
    expect(rows.map((x) => x.action)).toEqual([
      'subscription.create',
      'subscription.update',
      'subscription.delete',
    ]);
    expect(rows[2]).toMatchObject({
      actor: 'bob',
      role: 'admin',
      after: null,
      before: { id: s.id, isActive: true },
    });
  });
});

describe('422 names the field', () => {
  it('scheme, credentials in the URL, bounds, unknown event types and formats, per-format fields', async () => {
    expect(await refused(sub({ url: 'ftp://hooks.public.test/x' }))).toEqual([
      { field: 'url', message: 'must be an https URL' },
    ]);
    expect(await refused(sub({ url: 'http://hooks.public.test/x' }))).toEqual([
      {
        field: 'url',
        message: expect.stringMatching(/^must be https; http only for hosts in the allow-list/),
      },
    ]);
    expect((await refused(sub({ url: 'https://user:pw@hooks.public.test/x' })))[0]!.field).toBe('url');
    // A port fetch refuses before connecting could never be delivered to.
    for (const port of [25, 587, 6000])
      expect(await refused(sub({ url: `https://hooks.public.test:${port}/x` }))).toEqual([
        { field: 'url', message: expect.stringContaining(`port ${port} is blocked by the Fetch standard`) },
      ]);
    expect(await refused(sub({ retryCount: 11 }))).toEqual([
      { field: 'retryCount', message: expect.stringContaining('10') },
    ]);
    expect((await refused(sub({ timeoutMs: 999 })))[0]!.field).toBe('timeoutMs');
    expect(await refused(sub({ eventTypes: ['run.contained', 'run.foo'] }))).toEqual([
      { field: 'eventTypes[1]', message: expect.stringContaining('not a known event type') },
    ]);
    expect((await refused(sub({ eventTypes: ['nothing.*'] })))[0]!.field).toBe('eventTypes[0]');
    expect((await refused(sub({ format: 'xml' }))).map((e) => e.field)).toEqual(['format']);
    expect((await refused(sub({ name: 'Not A Slug' })))[0]!.field).toBe('name');
    expect((await refused(sub({ filters: { severities: ['urgent'] } })))[0]!.field).toBe(
      'filters.severities[0]',
    );
    expect((await refused(sub({ filters: { credentialTypes: ['nope'] } })))[0]!.field).toBe(
      'filters.credentialTypes[0]',
    );
    const syslog = await refused(
      sub({ format: 'syslog', url: undefined, connection: { protocol: 'quic', host: 'h', port: 70000 } }),
    );
    expect(syslog.map((e) => e.field).sort()).toEqual(['connection.port', 'connection.protocol']);
    const email = await refused(
      sub({
        format: 'email',
        url: undefined,
        connection: { host: 'hooks.public.test', from: 'ks@x.test', to: ['nope'] },
      }),
    );
    expect(email.map((e) => e.field)).toEqual(['connection.to[0]']);
    expect((await refused(sub({ format: 'email' }))).map((e) => e.field).sort()).toEqual([
      'connection',
      'url',
    ]);
    // Jira: the project key and the API token (the secret) are required; the rest defaults.
    expect(
      (await refused(sub({ format: 'jira', secret: SECRETS[0], options: { issueType: 'Bug' } }))).map(
        (e) => e.field,
      ),
    ).toEqual(['options.project']);
    expect((await refused(sub({ format: 'jira', options: { project: 'SEC' } }))).map((e) => e.field)).toEqual(
      ['secret'],
    );
    const jira = await createOk(
      sub({
        format: 'jira',
        url: 'https://hooks.public.test',
        secret: SECRETS[0],
        options: { project: 'SEC', email: 'killswitch-bot@example.org' },
      }),
    );
    expect(jira).toMatchObject({
      format: 'jira',
      hasSecret: true,
      options: {
        project: 'SEC',
        email: 'killswitch-bot@example.org',
        issueType: 'Task',
        labels: ['secret-kill-switch'],
        transitions: { 'run.contained': 'Done' },
      },
    });
    const splunk = await refused(sub({ format: 'splunk_hec', options: { index: 'main', nope: 1 } }));
    expect(splunk.map((e) => e.field)).toEqual(expect.arrayContaining(['options.<key#2>']));
    expect(
      (await refused(sub({ format: 'splunk_hec', options: { index: 'main' } }))).map((e) => e.field),
    ).toEqual(['secret']);
    expect(
      (
        await refused(
          sub({
            format: 'syslog',
            url: undefined,
            connection: { protocol: 'tls', host: 'hooks.public.test' },
            options: { facility: 99 },
          }),
        )
      ).map((e) => e.field),
    ).toEqual(['options.facility']);
    // An unknown key is named by position, never echoed (a secret may have been pasted as a key).
    const unknown = await refused(sub({ [SECRETS[0]!]: 1 }));
    expect(unknown).toEqual([{ field: '<key#6>', message: 'unknown field' }]);
    expect((await refused(sub({ options: { colour: 'red' } })))[0]).toEqual({
      field: 'options.<key#1>',
      message: 'unknown field',
    });
    expect((await refused([sub()]))[0]!.field).toBe('body');
  });

  it('private, loopback and link-local destinations are refused; DNS names are resolved and any private address refuses', async () => {
    for (const url of [
      'https://10.0.0.5/x',
      'https://172.16.4.4/x',
      'https://192.168.1.1/x',
      'https://169.254.169.254/latest/meta-data',
      // 127.0.0.1 itself is allow-listed (OUTBOUND_ALLOW_HOSTS); the rest of 127/8 is not.
      'https://127.0.0.2/x',
      'https://0.0.0.0/x',
      'https://[::1]/x',
      'https://[fd12::1]/x',
      'https://[fe80::1]/x',
      'https://[::ffff:127.0.0.2]/x',
      'https://0x7f.2/x',
      'https://2130706434/x',
    ]) {
      const errors = await refused(sub({ url }));
      expect(errors, url).toEqual([
        { field: 'url', message: expect.stringContaining('is a loopback, private or link-local address') },
      ]);
    }
    expect(await refused(sub({ url: 'https://localhost/x' }))).toEqual([
      { field: 'url', message: expect.stringContaining('names this machine (loopback)') },
    ]);
    expect(await refused(sub({ url: 'https://mixed.test/x' }))).toEqual([
      {
        field: 'url',
        message: expect.stringContaining('resolves to 10.1.2.3, a loopback, private or link-local'),
      },
    ]);
    expect((await refused(sub({ url: 'https://v6-private.test/x' })))[0]!.message).toContain('fd00::5');
    expect(await refused(sub({ url: 'https://nowhere.test/x' }))).toEqual([
      { field: 'url', message: 'the host name does not resolve (ENOTFOUND)' },
    ]);
    expect(
      await refused(
        sub({ format: 'syslog', url: undefined, connection: { protocol: 'tcp', host: '192.168.7.7' } }),
      ),
    ).toEqual([{ field: 'connection.host', message: expect.stringContaining('private') }]);
    expect(lookups).toContain('mixed.test');
    expect(lookups).not.toContain('10.0.0.5');
  });

  it('the allow-list (inventory outbound.allowHosts and OUTBOUND_ALLOW_HOSTS) lets loopback, private and http through', async () => {
    // OUTBOUND_ALLOW_HOSTS=127.0.0.1: a test receiver on loopback, over http.
    const loop = await createOk(sub({ url: 'http://127.0.0.1:9999/hook' }));
    expect(loop.url).toBe('http://127.0.0.1:9999/hook');
    // outbound.allowHosts: a name (resolving to a private address) and a CIDR.
    await createOk(sub({ url: 'http://hooks.allowed.test/hook' }));
    await createOk(sub({ url: 'https://10.9.1.1/hook' }));
    // Outside the CIDR: still refused.
    expect((await refused(sub({ url: 'https://10.10.1.1/hook' })))[0]!.field).toBe('url');
  });

  it('a 422 never echoes the secret', async () => {
    const res = await post(sub({ secret: SECRETS[0], retryCount: 11 }));
    expect(res.status).toBe(422);
    expect(JSON.stringify(res.json)).not.toContain(SECRETS[0]);
  });
});

describe('the event catalogue', () => {
  it('GET /api/events/types lists every type with its description and level, and the JSON schema', async () => {
    const res = await api('/api/events/types', VIEWER);
    expect(res.status).toBe(200);
    expect(res.json.version).toBe(1);
    expect(res.json.types.map((t: { type: string }) => t.type)).toEqual(EVENT_TYPE_NAMES);
    for (const t of res.json.types) {
      expect(t.description.length, t.type).toBeGreaterThan(10);
      expect(['failure', 'warning', 'success', 'info']).toContain(t.level);
    }
    expect(res.json.types.find((t: { type: string }) => t.type === 'run.escalated').level).toBe('failure');
    expect(res.json.schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(res.json.schema.properties.type.enum).toEqual(EVENT_TYPE_NAMES);
    expect(res.json.schema.required).toEqual(expect.arrayContaining(['id', 'type', 'version', 'data']));
    expect((await api('/api/events/types', undefined)).status).toBe(401);
  });
});

describe('delivery history', () => {
  it('pages newest first with a keyset cursor; a bad cursor is 422, an unknown subscription 404', async () => {
    const s = await createOk(sub());
    for (let i = 1; i <= 5; i++)
      await insertDeliveryAttempt(db, {
        subscriptionId: s.id,
        eventId: `evt-${r}-${i}`,
        eventType: 'run.contained',
        attempt: i,
        statusCode: i === 3 ? 503 : 200,
        success: i !== 3,
        durationMs: 10 * i,
        error: i === 3 ? 'HTTP 503' : null,
      });
    const seen: string[] = [];
    let cursor: string | null = null;
    const pages: number[] = [];
    do {
      const q: string = `?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await api(`/api/subscriptions/${s.id}/deliveries${q}`, VIEWER);
      expect(res.status).toBe(200);
      pages.push(res.json.deliveries.length);
      seen.push(...res.json.deliveries.map((d: { eventId: string }) => d.eventId));
      cursor = res.json.nextCursor;
    } while (cursor);
    expect(pages).toEqual([2, 2, 1]);
    expect(seen).toEqual([5, 4, 3, 2, 1].map((i) => `evt-${r}-${i}`));
    const first = (await api(`/api/subscriptions/${s.id}/deliveries?limit=5`, VIEWER)).json.deliveries;
    expect(first[2]).toEqual({
      eventId: `evt-${r}-3`,
      eventType: 'run.contained',
      attempt: 3,
      statusCode: 503,
      success: false,
      durationMs: 30,
      error: 'HTTP 503',
      at: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T.*Z$/),
    });
    const bad = await api(`/api/subscriptions/${s.id}/deliveries?cursor=abc`, VIEWER);
    expect(bad.status).toBe(422);
    expect(bad.json.errors).toEqual([{ field: 'cursor', message: 'not a cursor returned by this API' }]);
    expect((await api(`/api/subscriptions/${s.id}/deliveries?limit=500`, VIEWER)).json.errors[0].field).toBe(
      'limit',
    );
    expect((await api('/api/subscriptions/no-such-id/deliveries', VIEWER)).status).toBe(404);
    // Retention: an attempt older than the window goes; the rest stay.
    await insertDeliveryAttempt(db, {
      subscriptionId: s.id,
      eventId: `evt-${r}-old`,
      eventType: 'run.contained',
      attempt: 1,
      statusCode: 200,
      success: true,
      durationMs: 1,
      error: null,
      at: new Date(Date.now() - 40 * 86_400_000),
    });
    expect(await deleteDeliveryAttemptsOlderThan(db, 30 * 86_400_000)).toBeGreaterThanOrEqual(1);
    expect((await listDeliveryAttempts(db, s.id, { limit: 10 })).map((d) => d.eventId)).not.toContain(
      `evt-${r}-old`,
    );
    expect(await listDeliveryAttempts(db, s.id, { limit: 10 })).toHaveLength(5);
  });
});

describe('the test route', () => {
  it('calls the delivery side with the subscription and the actor, answers its result, audits it; 503 without one', async () => {
    const s = await createOk(sub());
    const res = await api(`/admin/subscriptions/${s.id}/test`, ADMIN, {
      method: 'POST',
      body: { by: 'carol' },
    });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      subscriptionId: s.id,
      eventId: 'evt-test-1',
      delivered: true,
      statusCode: 200,
    });
    expect(outbound.calls).toEqual([{ id: s.id, by: 'carol' }]);
    outbound.answer = { delivered: false, statusCode: 500, error: 'HTTP 500' };
    const failed = await api(`/admin/subscriptions/${s.id}/test`, ADMIN, { method: 'POST' });
    expect(failed.json).toMatchObject({ delivered: false, statusCode: 500, error: 'HTTP 500' });
    expect(outbound.calls[1]).toEqual({ id: s.id, by: 'API_TOKENS[1]' });
    outbound.answer = { delivered: true, statusCode: 200 };
    const audit = await auditOf(s.id);
    expect(audit.filter((a) => a.action === 'subscription.test').map((a) => a.after.delivered)).toEqual([
      true,
      false,
    ]);
    expect((await api('/admin/subscriptions/nope/test', ADMIN, { method: 'POST' })).status).toBe(404);
    const none = await api(`/admin/subscriptions/${s.id}/test`, ADMIN, { method: 'POST', at: bareBase });
    expect(none.status).toBe(503);
    expect(none.json.detail).toBe('outbound delivery is not configured');
    expect(outbound.calls).toHaveLength(2);
  });
});

describe('config subscriptions', () => {
  it('are synced from the inventory (secret from secretEnv), read-only through the API (409 naming the file), replaced at the next start', async () => {
    const first = await syncConfigSubscriptions(db, keys, inventory, env, { lookup });
    expect(first.created.sort()).toEqual([`cfg-siem-${r}`, `cfg-syslog-${r}`].sort());
    const listed = (await api('/api/subscriptions', VIEWER)).json.subscriptions as Array<Record<string, any>>;
    const siem = listed.find((x) => x.name === `cfg-siem-${r}`)!;
    expect(siem).toMatchObject({
      origin: 'config',
      format: 'splunk_hec',
      hasSecret: true,
      secretEnv: CONFIG_SECRET_ENV,
      eventTypes: ['run.*'],
      options: { index: 'security' },
    });
    const sealed = (
      await db.query<{ secret_sealed: Buffer }>(
        'SELECT secret_sealed FROM killswitch_subscriptions WHERE id = $1',
        [siem.id],
      )
    ).rows[0]!.secret_sealed;
    expect(keys.decrypt(sealed, subscriptionSecretAad(siem.id))).toBe(CONFIG_SECRET);
    expect(listed.find((x) => x.name === `cfg-syslog-${r}`)!.connection).toEqual({
      protocol: 'tls',
      host: 'hooks.allowed.test',
      port: 6514,
    });

    for (const [method, body] of [
      ['PATCH', { retryCount: 1 }],
      ['PUT', sub({ name: siem.name })],
      ['DELETE', undefined],
    ] as const) {
      const res = await api(`/admin/subscriptions/${siem.id}`, ADMIN, { method, body });
      expect(res.status, method).toBe(409);
      expect(res.json.detail).toContain(INVENTORY_FILE);
    }
    // Reading and testing are fine.
    expect((await api(`/admin/subscriptions/${siem.id}`, ADMIN)).status).toBe(200);
    expect((await api(`/admin/subscriptions/${siem.id}/test`, ADMIN, { method: 'POST' })).status).toBe(200);

    // The next start: one entry changed, one gone. The kept one keeps its id (and its history).
    await setSubscriptionActive(db, siem.id, false, 'breaker tripped');
    await db.query('UPDATE killswitch_subscriptions SET consecutive_failures = 9 WHERE id = $1', [siem.id]);
    const next = parseInventory({
      ...inventoryDoc,
      subscriptions: [{ ...inventoryDoc.subscriptions[0], retryCount: 6 }],
    });
    const second = await syncConfigSubscriptions(db, keys, next, env, { lookup });
    expect(second).toEqual({ created: [], updated: [`cfg-siem-${r}`], removed: [`cfg-syslog-${r}`] });
    const after = (await getSubscription(db, siem.id))!;
    expect(after).toMatchObject({
      retryCount: 6,
      consecutiveFailures: 0,
      disabledReason: null,
      origin: 'config',
    });
    expect(
      (await api('/api/subscriptions', VIEWER)).json.subscriptions.map((x: any) => x.name),
    ).not.toContain(`cfg-syslog-${r}`);
  });

  it('a bad entry stops the start naming the field: schema (inventory), destination, missing secretEnv, a name the API holds', async () => {
    const bad = (over: Record<string, unknown>) => ({
      subscriptions: [{ name: `cfg-x-${r}`, format: 'json', url: 'https://hooks.public.test/x', ...over }],
    });
    expect(() => parseInventory(bad({ retryCount: 11 }))).toThrow(/subscriptions\[0\]\.retryCount/);
    expect(() => parseInventory(bad({ secret: 'inline' }))).toThrow(InventoryError);
    expect(() => parseInventory(bad({ eventTypes: ['run.foo'] }))).toThrow(
      /subscriptions\[0\]\.eventTypes\[0\]/,
    );
    expect(() => parseInventory(bad({ format: 'splunk_hec', options: { index: 'main' } }))).toThrow(
      /subscriptions\[0\]\.secretEnv/,
    );
    expect(() =>
      parseInventory({ subscriptions: [bad({}).subscriptions[0], bad({}).subscriptions[0]] }),
    ).toThrow(/subscriptions\[1\]\.name: duplicate subscription name/);
    expect(() => parseInventory({ outbound: { allowHosts: ['not a host!'] } })).toThrow(
      /outbound\.allowHosts\[0\]/,
    );
    const sync = (doc: Record<string, unknown>, e: Record<string, string> = env) =>
      syncConfigSubscriptions(db, keys, parseInventory(doc), e, { lookup });
    await expect(sync(bad({ url: 'https://mixed.test/x' }))).rejects.toThrow(
      /subscriptions\[0\]\.url: the host name resolves to 10\.1\.2\.3/,
    );
    await expect(sync(bad({ url: 'https://169.254.169.254/x' }))).rejects.toThrow(/subscriptions\[0\]\.url/);
    await expect(sync(bad({ secretEnv: 'NOT_SET_ANYWHERE' }))).rejects.toThrow(
      /subscriptions\[0\]\.secretEnv: environment variable NOT_SET_ANYWHERE is not set/,
    );
    // DNS down at start: the name is let through (the delivery checks the address it connects to).
    await expect(
      sync(bad({ url: 'https://nowhere.test/x', isActive: false, filters: NOBODY })),
    ).resolves.toMatchObject({
      created: [`cfg-x-${r}`],
    });
    const api1 = await createOk(sub({ name: `taken-${r}` }));
    await expect(sync(bad({ name: api1.name }))).rejects.toThrow(/created through the API/);
    expect((await getSubscription(db, api1.id))!.origin).toBe('api');
    // Nothing was half-written by the refused syncs: the last good one stands.
    expect((await api('/api/subscriptions', VIEWER)).json.subscriptions.map((x: any) => x.name)).toContain(
      `cfg-x-${r}`,
    );
    await sync({});
  });
});

describe('the store on PGlite (npm start without DATABASE_URL)', () => {
  it('creates, updates, syncs and pages as on PostgreSQL', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-subs-'));
    const lite = await createPgliteDb(dir);
    try {
      await migrate(lite);
      const s = await createSubscription(lite, keys, {
        name: 'lite',
        format: 'json',
        url: 'https://hooks.public.test/x',
        eventTypes: ['*'],
        filters: {},
        options: {},
        retryCount: 3,
        timeoutMs: 5000,
        failureThreshold: 10,
        isActive: true,
        secret: SECRETS[0],
      });
      expect(s).toMatchObject({ hasSecret: true, eventTypes: ['*'] });
      expect(
        (await updateSubscription(lite, keys, s.id, { eventTypes: ['run.*'], url: undefined }))!,
      ).toMatchObject({
        eventTypes: ['run.*'],
        url: null,
      });
      const inv: Inventory = parseInventory(inventoryDoc);
      expect((await syncConfigSubscriptions(lite, keys, inv, env, { lookup })).created).toHaveLength(2);
      await insertDeliveryAttempt(lite, {
        subscriptionId: s.id,
        eventId: 'e1',
        eventType: 'run.started',
        attempt: 1,
        statusCode: null,
        success: false,
        durationMs: 5,
        error: 'ECONNREFUSED',
      });
      expect(await listDeliveryAttempts(lite, s.id, { limit: 5 })).toMatchObject([
        { eventId: 'e1', statusCode: null },
      ]);
    } finally {
      await lite.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the destination rules', () => {
  it('classify addresses and allow-list entries', async () => {
    for (const a of [
      '10.0.0.1',
      '127.8.8.8',
      '169.254.1.1',
      '100.64.0.1',
      '::1',
      'fe80::2',
      'fc00::1',
      '::ffff:a00:1',
      '64:ff9b::a00:1',
      '0.0.0.0',
      '::',
    ])
      expect(isPrivateAddress(a), a).toBe(true);
    for (const a of ['203.0.113.5', '8.8.8.8', '2606:4700::1111', '::ffff:808:808', '64:ff9b::808:808'])
      expect(isPrivateAddress(a), a).toBe(false);
    const allow = createAllowList(['*.corp.test', 'fd00::/8', '192.168.0.0/24']);
    const policy = { allow, lookup, unresolvable: 'refuse' as const };
    expect(await checkHost('url', 'a.corp.test', 'http', policy)).toEqual([]);
    expect(await checkHost('url', 'fd00::9', 'https', policy)).toEqual([]);
    expect(await checkHost('url', '192.168.0.7', 'https', policy)).toEqual([]);
    expect(await checkHost('url', '192.168.1.7', 'https', policy)).toHaveLength(1);
    expect(() => createAllowList(['10.0.0.0/40'])).toThrow(/not a CIDR/);
  });
});

describe('the CLI', () => {
  it('subscriptions list, deliveries and test through the API (test needs an admin token)', async () => {
    const s = await createOk(sub({ name: `cli-${r}` }));
    for (let i = 1; i <= 3; i++)
      await insertDeliveryAttempt(db, {
        subscriptionId: s.id,
        eventId: `cli-evt-${i}`,
        eventType: 'run.escalated',
        attempt: 1,
        statusCode: 202,
        success: true,
        durationMs: 12,
        error: null,
      });
    const cli = async (argv: string[], token: string) => {
      let out = '';
      let err = '';
      const io: Io = {
        out: (x) => (out += x),
        err: (x) => (err += x),
        env: { KILLSWITCH_API_TOKEN: token, KILLSWITCH_URL: base },
        sleep: async () => undefined,
      };
      return { code: await run(argv, io), out, err };
    };
    const list = await cli(['subscriptions', 'list'], VIEWER);
    expect(list.code, list.err).toBe(0);
    expect(list.out).toMatch(new RegExp(`cli-${r}\\s+json\\s+no\\s+0\\s+api`));
    const page = await cli(['subscriptions', 'deliveries', `cli-${r}`, '--limit', '2'], VIEWER);
    expect(page.code, page.err).toBe(0);
    expect(page.out).toContain('cli-evt-3');
    expect(page.out).toContain('cli-evt-2');
    expect(page.out).not.toContain('cli-evt-1');
    expect(page.out).toMatch(/more: killswitch subscriptions deliveries .* --cursor \d+/);
    const viewer = await cli(['subscriptions', 'test', `cli-${r}`], VIEWER);
    expect(viewer.code).toBe(1);
    expect(viewer.err).toContain('403');
    const before = outbound.calls.length;
    const admin = await cli(['subscriptions', 'test', `cli-${r}`], ADMIN);
    expect(admin.code, admin.err).toBe(0);
    expect(admin.out).toMatch(/delivered\s+yes/);
    expect(outbound.calls.slice(before)).toEqual([{ id: s.id, by: 'API_TOKENS[1]' }]);
    expect((await cli(['subscriptions', 'test', `absent-${r}`], ADMIN)).code).toBe(1);
  });
});

describe('secret hygiene', () => {
  it('no secret in any answer, log line or admin-audit row; every change was audited with the secret left out', async () => {
    const audit = (
      await db.query<{ action: string; before: unknown; after: unknown }>(
        `SELECT action, before, after FROM killswitch_admin_audit WHERE target = ANY($1::text[]) ORDER BY id`,
        [created],
      )
    ).rows;
    expect(audit.length).toBeGreaterThan(created.length);
    const creates = audit.filter((a) => a.action === 'subscription.create');
    expect(creates).toHaveLength(created.length);
    expect(audit.some((a) => (a.after as { secretChange?: string } | null)?.secretChange === 'set')).toBe(
      true,
    );
    expect(audit.some((a) => (a.after as { secretChange?: string } | null)?.secretChange === 'removed')).toBe(
      true,
    );
    const places = { answers: answers.join('\n'), logs: capturedLogs.join(''), audit: JSON.stringify(audit) };
    for (const secret of [...SECRETS, CONFIG_SECRET])
      for (const [where, text] of Object.entries(places))
        expect(text.includes(secret), `${where}`).toBe(false);
    expect(answers.length).toBeGreaterThan(50);
  });
});

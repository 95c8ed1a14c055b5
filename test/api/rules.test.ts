/**
 * Outbound rules over HTTP, on the ingress as server.ts wires it (createIngressApp) against the
 * run's PostgreSQL: CRUD with PATCH (merge) and PUT (replacement) semantics, roles, 422 naming each
 * field (trigger, actions, conditions, an action naming no subscription), 409 on a taken name, the
 * admin audit, the runtime switch (config rules included), config rules synced at start and
 * read-only otherwise, subscriptions a rule names guarded against deletion and renaming, the store
 * on PGlite, and the CLI.
 *
 * Test files share the database: every rule here has a condition on an owning system nobody has,
 * and every subscription is switched off, so no other file's runs count or deliver through them;
 * all are removed at the end.
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
import { loadConfig } from '../../lib/config';
import { createPgliteDb, createPostgresDb, migrate, type Db } from '../../lib/db';
import { InventoryError, parseInventory } from '../../lib/inventory';
import { createServerKeys, newServerKey, newWebhookSecret } from '../../lib/keys';
import { createEvidenceStore } from '../../store/evidence';
import {
  createRule,
  getRule,
  listRules,
  rulesReferencing,
  setRuleEnabled,
  syncConfigRules,
  updateRule,
} from '../../store/rules';
import { createSubscription, getSubscription } from '../../store/subscriptions';
import { rand, testLogger } from '../helpers/harness';

const r = rand();
const VIEWER = `viewer-${randomBytes(16).toString('hex')}`;
const ADMIN = `admin-${randomBytes(16).toString('hex')}`;
const INVENTORY_FILE = `/etc/kill-switch/inventory-${r}.yaml`;
/** An owning system no run has: a rule conditioned on it never matches another file's events. */
const NOBODY = { owningSystems: [`nobody-${r}`] };

const env: Record<string, string> = {
  TEMPORAL_ADDRESS: inject('temporalAddress'),
  DATABASE_URL: inject('auditDatabaseUrl'),
  KILLSWITCH_SERVER_KEY: newServerKey(),
  GENERIC_WEBHOOK_SECRETS: newWebhookSecret(),
  API_TOKENS: `viewer:${VIEWER},admin:${ADMIN}`,
  INVENTORY_FILE,
};
const config = loadConfig(env);
const keys = createServerKeys(config.serverKey!);

/** Subscriptions of this file (switched off): the ones rules name. */
const SUB = { a: `rsub-a-${r}`, b: `rsub-b-${r}`, c: `rsub-c-${r}` };

const ruleDoc = (over: Record<string, unknown> = {}) => ({
  name: `rule-${rand()}-${r}`,
  trigger: ['run.contained', 'run.escalated'],
  conditions: { ...NOBODY, severities: ['critical', 'high'] },
  actions: [{ subscription: SUB.a }],
  ...over,
});

const inventoryDoc = {
  rules: [
    ruleDoc({ name: `cfg-one-${r}`, description: 'from the file', trigger: ['run.*'] }),
    ruleDoc({ name: `cfg-two-${r}`, enabled: false, actions: [{ subscription: SUB.b }] }),
  ],
};

let db: Db;
let connection: Connection;
let server: http.Server;
let base: string;
const subIds: Record<string, string> = {};

beforeAll(async () => {
  db = createPostgresDb(config.databaseUrl!);
  await migrate(db);
  for (const name of Object.values(SUB)) {
    const s = await createSubscription(db, keys, {
      name,
      format: 'json',
      url: 'https://hooks.public.test/ks',
      eventTypes: ['run.*'],
      filters: NOBODY,
      options: {},
      retryCount: 0,
      timeoutMs: 1000,
      failureThreshold: 1,
      isActive: false,
    });
    subIds[name] = s.id;
  }
  connection = Connection.lazy({ address: config.temporal.address! });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const app = createIngressApp(config, {
    logger: testLogger,
    client,
    keys,
    db,
    evidence: createEvidenceStore(db, keys, 24),
    genericSecrets: config.webhook.genericSecrets!,
    inventory: parseInventory({}),
    env,
  });
  server = await new Promise<http.Server>((resolve) => {
    const s = http.createServer(app);
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  if (db) {
    await db.query('DELETE FROM killswitch_rules WHERE name LIKE $1', [`%-${r}`]);
    await db.query('DELETE FROM killswitch_subscriptions WHERE name LIKE $1', [`%-${r}`]);
  }
  await new Promise<void>((res) => (server ? server.close(() => res()) : res()));
  await connection?.close();
  await db?.close();
});

async function api(p: string, token: string | undefined, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`${base}${p}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    location: res.headers.get('location'),
    json: text ? JSON.parse(text) : undefined,
  };
}

const post = (body: unknown, token = ADMIN) => api('/admin/rules', token, { method: 'POST', body });

async function createOk(body: Record<string, unknown>) {
  const res = await post(body);
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  return res.json as Record<string, any>;
}

/** The 422's fields, each with its message. */
async function refused(body: unknown, method = 'POST', p = '/admin/rules') {
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
  it('viewers read /api/rules; only admins change them (403); no token is 401', async () => {
    const rule = await createOk(ruleDoc());
    expect((await api('/api/rules', VIEWER)).json.rules.map((x: any) => x.id)).toContain(rule.id);
    expect((await api(`/api/rules/${rule.id}`, VIEWER)).json).toEqual(rule);
    for (const [method, p, body] of [
      ['GET', '/admin/rules', undefined],
      ['GET', `/admin/rules/${rule.id}`, undefined],
      ['POST', '/admin/rules', ruleDoc()],
      ['PATCH', `/admin/rules/${rule.id}`, { description: 'x' }],
      ['PATCH', `/admin/rules/${rule.id}`, { enabled: false }],
      ['PUT', `/admin/rules/${rule.id}`, ruleDoc({ name: rule.name })],
      ['DELETE', `/admin/rules/${rule.id}`, undefined],
      ['POST', `/admin/rules/${rule.id}/disable`, undefined],
      ['POST', `/admin/rules/${rule.id}/enable`, undefined],
    ] as const) {
      expect((await api(p, VIEWER, { method, body })).status, `${method} ${p}`).toBe(403);
      expect((await api(p, undefined, { method, body })).status).toBe(401);
    }
    expect((await api('/api/rules', undefined)).status).toBe(401);
    // Nothing changed.
    expect(await getRule(db, rule.id)).toEqual(rule);
    expect(await auditOf(rule.id)).toHaveLength(1);
  });
});

describe('CRUD', () => {
  it('POST creates with defaults (201, Location); GET reads it back on /admin and /api; 409 on a taken name', async () => {
    const res = await post({
      name: `crud-${r}`,
      trigger: ['run.*'],
      conditions: NOBODY,
      actions: [{ subscription: SUB.a }, { subscription: SUB.b }],
      by: 'alice',
    });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    expect(res.location).toBe(`/admin/rules/${res.json.id}`);
    expect(res.json).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: `crud-${r}`,
      enabled: true,
      trigger: ['run.*'],
      conditions: NOBODY,
      actions: [{ subscription: SUB.a }, { subscription: SUB.b }],
      origin: 'api',
      executionCount: 0,
      lastExecutedAt: null,
      lastEventType: null,
      createdAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T.*Z$/),
      updatedAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T.*Z$/),
    });
    for (const [p, token] of [
      [`/admin/rules/${res.json.id}`, ADMIN],
      [`/api/rules/${res.json.id}`, VIEWER],
    ] as const)
      expect((await api(p, token)).json).toEqual(res.json);
    for (const [p, token] of [
      ['/admin/rules', ADMIN],
      ['/api/rules', VIEWER],
    ] as const)
      expect((await api(p, token)).json.rules.find((x: any) => x.id === res.json.id)).toEqual(res.json);

    const taken = await post(ruleDoc({ name: `crud-${r}` }));
    expect(taken.status).toBe(409);
    expect(taken.json).toMatchObject({
      type: 'urn:secret-kill-switch:problem:rule-exists',
      errors: [{ field: 'name', message: 'another rule has this name' }],
    });
    expect((await api('/admin/rules/no-such-id', ADMIN)).status).toBe(404);
    expect((await api('/api/rules/no-such-id', VIEWER)).status).toBe(404);
    expect((await api(`/api/rules/${encodeURIComponent('../x y')}`, VIEWER)).status).toBe(404);

    const audit = await auditOf(res.json.id);
    expect(audit).toEqual([
      { action: 'rule.create', actor: 'alice', role: 'admin', before: null, after: res.json },
    ]);
  });

  it('PATCH merges (objects merge, null removes, arrays replace) and keeps the execution count; PUT replaces with defaults', async () => {
    const rule = await createOk(ruleDoc({ description: 'first' }));
    // The emission counts executions (store/outbound.ts); here the count is set as it would leave it.
    await db.query(
      `UPDATE killswitch_rules SET execution_count = 7, last_executed_at = '2025-11-27T10:00:00Z',
         last_event_type = 'run.contained' WHERE id = $1`,
      [rule.id],
    );
    const patched = await api(`/admin/rules/${rule.id}`, ADMIN, {
      method: 'PATCH',
      body: {
        description: null,
        conditions: { severities: ['critical'], teams: ['payments'] },
        actions: [{ subscription: SUB.b }, { subscription: SUB.c }],
        by: 'bob',
      },
    });
    expect(patched.status, JSON.stringify(patched.json)).toBe(200);
    expect(patched.json).toMatchObject({
      id: rule.id,
      name: rule.name,
      trigger: rule.trigger,
      conditions: { ...NOBODY, severities: ['critical'], teams: ['payments'] },
      actions: [{ subscription: SUB.b }, { subscription: SUB.c }],
      executionCount: 7,
      lastExecutedAt: '2025-11-27T10:00:00.000Z',
      lastEventType: 'run.contained',
    });
    expect(patched.json).not.toHaveProperty('description');
    expect((await api(`/api/rules/${rule.id}`, VIEWER)).json).toEqual(patched.json);

    const put = await api(`/admin/rules/${rule.id}`, ADMIN, {
      method: 'PUT',
      body: {
        name: `${rule.name}-x`.replace(`-${r}-x`, `-x-${r}`),
        trigger: ['breaker.tripped'],
        conditions: NOBODY,
        actions: [{ subscription: SUB.a }],
      },
    });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    expect(put.json).toMatchObject({
      id: rule.id,
      name: expect.stringMatching(/-x-/),
      enabled: true,
      trigger: ['breaker.tripped'],
      conditions: NOBODY,
      actions: [{ subscription: SUB.a }],
      executionCount: 7,
    });
    // PUT is the whole rule: what it leaves out takes its default.
    const minimal = await api(`/admin/rules/${rule.id}`, ADMIN, {
      method: 'PUT',
      body: {
        name: put.json.name,
        trigger: ['run.contained'],
        actions: [{ subscription: SUB.a }],
        enabled: false,
      },
    });
    expect(minimal.json).toMatchObject({ conditions: {}, enabled: false, trigger: ['run.contained'] });

    // A name another rule has: 409, nothing changed.
    const other = await createOk(ruleDoc());
    const clash = await api(`/admin/rules/${rule.id}`, ADMIN, {
      method: 'PATCH',
      body: { name: other.name },
    });
    expect(clash.status).toBe(409);
    expect((await getRule(db, rule.id))!.name).toBe(put.json.name);

    const audit = await auditOf(rule.id);
    expect(audit.map((a) => a.action)).toEqual(['rule.create', 'rule.update', 'rule.update', 'rule.update']);
    expect(audit[1]).toMatchObject({
      actor: 'bob',
      before: { description: 'first', actions: [{ subscription: SUB.a }] },
      after: { actions: [{ subscription: SUB.b }, { subscription: SUB.c }] },
    });
    expect(audit[1]!.after).not.toHaveProperty('description');
  });

  it('DELETE removes it (204, then 404) and audits the rule it removed', async () => {
    const rule = await createOk(ruleDoc());
    const del = await api(`/admin/rules/${rule.id}`, ADMIN, { method: 'DELETE', body: { by: 'carol' } });
    expect(del.status).toBe(204);
    expect((await api(`/admin/rules/${rule.id}`, ADMIN)).status).toBe(404);
    expect((await api(`/api/rules/${rule.id}`, VIEWER)).status).toBe(404);
    expect((await api(`/admin/rules/${rule.id}`, ADMIN, { method: 'DELETE' })).status).toBe(404);
    const audit = await auditOf(rule.id);
    expect(audit.map((a) => a.action)).toEqual(['rule.create', 'rule.delete']);
    expect(audit[1]).toMatchObject({ actor: 'carol', before: rule, after: null });
  });
});

describe('422 names the field', () => {
  it('trigger, actions, conditions, an action naming no subscription, the body and by', async () => {
    const before = (await listRules(db)).length;
    expect(await refused(ruleDoc({ trigger: ['run.contained', 'run.foo'] }))).toEqual([
      { field: 'trigger[1]', message: expect.stringContaining('not a known event type') },
    ]);
    expect((await refused(ruleDoc({ trigger: [] })))[0]!.field).toBe('trigger');
    expect(
      await refused(
        ruleDoc({
          actions: [
            { subscription: SUB.a },
            { subscription: SUB.b },
            { subscription: SUB.c },
            { subscription: 'd' },
          ],
        }),
      ),
    ).toEqual([{ field: 'actions', message: 'at most 3 actions' }]);
    expect((await refused(ruleDoc({ actions: [] })))[0]!.field).toBe('actions');
    expect(await refused(ruleDoc({ actions: [{ subscription: SUB.a }, { subscription: SUB.a }] }))).toEqual([
      { field: 'actions[1].subscription', message: `names ${SUB.a} twice` },
    ]);
    // An unknown condition is named by its position, never echoed.
    expect(await refused(ruleDoc({ conditions: { ...NOBODY, colour: ['red'] } }))).toEqual([
      { field: 'conditions.<key#2>', message: 'unknown field' },
    ]);
    expect((await refused(ruleDoc({ conditions: { severities: ['urgent'] } })))[0]!.field).toBe(
      'conditions.severities[0]',
    );
    expect((await refused(ruleDoc({ conditions: { credentialTypes: ['nope'] } })))[0]!.field).toBe(
      'conditions.credentialTypes[0]',
    );
    expect((await refused(ruleDoc({ conditions: { outcomes: ['won'] } })))[0]!.field).toBe(
      'conditions.outcomes[0]',
    );
    expect((await refused(ruleDoc({ name: 'Not A Slug' })))[0]!.field).toBe('name');
    expect((await refused(ruleDoc({ enabled: 'yes' })))[0]!.field).toBe('enabled');
    // The schema holds, but an action names no subscription: named by its index.
    expect(
      await refused(ruleDoc({ actions: [{ subscription: SUB.a }, { subscription: `absent-${r}` }] })),
    ).toEqual([{ field: 'actions[1].subscription', message: `no subscription named absent-${r}` }]);
    expect(await refused({ ...ruleDoc(), [`pasted-${r}`]: 1 })).toEqual([
      { field: '<key#5>', message: 'unknown field' },
    ]);
    expect(await refused([ruleDoc()])).toEqual([{ field: 'body', message: 'must be a JSON object' }]);
    expect((await refused({ ...ruleDoc(), by: '' }))[0]!.field).toBe('by');
    expect((await listRules(db)).length).toBe(before);

    // The same checks on a change.
    const rule = await createOk(ruleDoc());
    expect(
      await refused({ actions: [{ subscription: `absent-${r}` }] }, 'PATCH', `/admin/rules/${rule.id}`),
    ).toEqual([{ field: 'actions[0].subscription', message: `no subscription named absent-${r}` }]);
    expect((await refused({ trigger: ['nothing.*'] }, 'PATCH', `/admin/rules/${rule.id}`))[0]!.field).toBe(
      'trigger[0]',
    );
    expect(
      (await refused({ name: rule.name, actions: rule.actions }, 'PUT', `/admin/rules/${rule.id}`))[0]!.field,
    ).toBe('trigger');
    expect(await refused({ enabled: 'no' }, 'PATCH', `/admin/rules/${rule.id}`)).toEqual([
      { field: 'enabled', message: 'must be true or false' },
    ]);
    // The switch takes `by` only.
    expect(await refused({ by: 'erin', x: 1 }, 'POST', `/admin/rules/${rule.id}/disable`)).toEqual([
      { field: '<key#2>', message: 'unknown field' },
    ]);
    expect(await getRule(db, rule.id)).toEqual(rule);
  });
});

describe('the runtime switch', () => {
  it('POST /:id/disable and /:id/enable, or a PATCH of enabled alone, switch any rule, audited as rule.disable / rule.enable', async () => {
    const rule = await createOk(ruleDoc());
    const off = await api(`/admin/rules/${rule.id}/disable`, ADMIN, { method: 'POST', body: { by: 'dave' } });
    expect(off.status, JSON.stringify(off.json)).toBe(200);
    expect(off.json).toMatchObject({ id: rule.id, enabled: false });
    expect((await api(`/api/rules/${rule.id}`, VIEWER)).json.enabled).toBe(false);
    const on = await api(`/admin/rules/${rule.id}/enable`, ADMIN, { method: 'POST' });
    expect(on.json.enabled).toBe(true);
    const patched = await api(`/admin/rules/${rule.id}`, ADMIN, {
      method: 'PATCH',
      body: { enabled: false },
    });
    expect(patched.json.enabled).toBe(false);
    const audit = await auditOf(rule.id);
    expect(audit.map((a) => [a.action, a.actor, a.before?.enabled, a.after.enabled])).toEqual([
      ['rule.create', 'API_TOKENS[1]', undefined, true],
      ['rule.disable', 'dave', true, false],
      ['rule.enable', 'API_TOKENS[1]', false, true],
      ['rule.disable', 'API_TOKENS[1]', true, false],
    ]);
    expect((await api('/admin/rules/nope/enable', ADMIN, { method: 'POST' })).status).toBe(404);
  });
});

describe('config rules', () => {
  it('are synced from the inventory, read-only through the API except the switch (409 naming the file), replaced at the next start', async () => {
    const inventory = parseInventory(inventoryDoc);
    expect(inventory.rules[0]).toMatchObject({ enabled: true, description: 'from the file' });
    const first = await syncConfigRules(db, inventory);
    expect(first).toEqual({ created: [`cfg-one-${r}`, `cfg-two-${r}`], updated: [], removed: [] });
    const listed = (await api('/api/rules', VIEWER)).json.rules as Array<Record<string, any>>;
    const one = listed.find((x) => x.name === `cfg-one-${r}`)!;
    const two = listed.find((x) => x.name === `cfg-two-${r}`)!;
    expect(one).toMatchObject({
      origin: 'config',
      enabled: true,
      trigger: ['run.*'],
      description: 'from the file',
    });
    expect(two).toMatchObject({ origin: 'config', enabled: false, actions: [{ subscription: SUB.b }] });

    for (const [method, body] of [
      ['PATCH', { description: 'changed' }],
      ['PATCH', { enabled: false, description: 'changed' }],
      ['PUT', ruleDoc({ name: one.name })],
      ['DELETE', undefined],
    ] as const) {
      const res = await api(`/admin/rules/${one.id}`, ADMIN, { method, body });
      expect(res.status, method).toBe(409);
      expect(res.json.type).toBe('urn:secret-kill-switch:problem:rule-from-config');
      expect(res.json.detail).toContain(INVENTORY_FILE);
    }
    expect(await getRule(db, one.id)).toEqual(one);
    // The runtime switch works on a config rule.
    expect((await api(`/admin/rules/${one.id}/disable`, ADMIN, { method: 'POST' })).json.enabled).toBe(false);
    expect(
      (await api(`/admin/rules/${two.id}`, ADMIN, { method: 'PATCH', body: { enabled: true } })).json.enabled,
    ).toBe(true);
    expect((await auditOf(two.id)).map((a) => a.action)).toEqual(['rule.enable']);

    // The next start: one entry changed, one gone, one new. The kept one keeps its id and its count;
    // every field is the file's again (the runtime switch lasts until the start).
    await db.query('UPDATE killswitch_rules SET execution_count = 41, last_event_type = $2 WHERE id = $1', [
      one.id,
      'run.escalated',
    ]);
    const next = parseInventory({
      rules: [
        { ...inventoryDoc.rules[0], trigger: ['run.contained'], actions: [{ subscription: SUB.c }] },
        ruleDoc({ name: `cfg-three-${r}` }),
      ],
    });
    const second = await syncConfigRules(db, next);
    expect(second).toEqual({
      created: [`cfg-three-${r}`],
      updated: [`cfg-one-${r}`],
      removed: [`cfg-two-${r}`],
    });
    expect(await getRule(db, one.id)).toMatchObject({
      id: one.id,
      origin: 'config',
      enabled: true,
      trigger: ['run.contained'],
      actions: [{ subscription: SUB.c }],
      executionCount: 41,
      lastEventType: 'run.escalated',
    });
    expect(await getRule(db, two.id)).toBeNull();
    expect((await listRules(db, { origin: 'config' })).map((x) => x.name)).toEqual(
      expect.arrayContaining([`cfg-one-${r}`, `cfg-three-${r}`]),
    );
  });

  it('a bad entry stops the start naming the field: schema and duplicates (inventory), an action naming no subscription, a name the API holds', async () => {
    const bad = (over: Record<string, unknown>) => ({ rules: [ruleDoc({ name: `cfg-x-${r}`, ...over })] });
    expect(() => parseInventory(bad({ trigger: ['run.foo'] }))).toThrow(/rules\[0\]\.trigger\[0\]/);
    expect(() =>
      parseInventory(bad({ actions: [1, 2, 3, 4].map((i) => ({ subscription: `s${i}` })) })),
    ).toThrow(/rules\[0\]\.actions: at most 3 actions/);
    expect(() => parseInventory(bad({ conditions: { severities: ['urgent'] } }))).toThrow(
      /rules\[0\]\.conditions\.severities\[0\]/,
    );
    expect(() => parseInventory(bad({ conditions: { colour: ['red'] } }))).toThrow(InventoryError);
    expect(() => parseInventory({ rules: [bad({}).rules[0], bad({}).rules[0]] })).toThrow(
      /rules\[1\]\.name: duplicate rule name/,
    );

    const before = await listRules(db, { origin: 'config' });
    const missing = parseInventory({
      rules: [
        ruleDoc({ name: `cfg-ok-${r}` }),
        ruleDoc({
          name: `cfg-x-${r}`,
          actions: [{ subscription: SUB.a }, { subscription: `absent-${r}` }, { subscription: `gone-${r}` }],
        }),
      ],
    });
    const err = await syncConfigRules(db, missing).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(
      [
        'inventory rules are invalid:',
        `  rules[1].actions[1].subscription: no subscription named absent-${r}`,
        `  rules[1].actions[2].subscription: no subscription named gone-${r}`,
      ].join('\n'),
    );
    // A subscription of any origin will do: these are API ones.
    const apiRule = await createOk(ruleDoc({ name: `taken-${r}` }));
    await expect(syncConfigRules(db, parseInventory(bad({ name: apiRule.name })))).rejects.toThrow(
      /created through the API/,
    );
    expect((await getRule(db, apiRule.id))!.origin).toBe('api');
    // Nothing was half-written by the refused syncs: the last good one stands.
    expect(await listRules(db, { origin: 'config' })).toEqual(before);
  });
});

describe('subscriptions a rule names', () => {
  it('cannot be deleted nor renamed (409 naming the rules); other changes pass; once no rule names it, it can go', async () => {
    const s = await createSubscription(db, keys, {
      name: `guarded-${r}`,
      format: 'json',
      url: 'https://203.0.113.10/ks',
      eventTypes: ['run.*'],
      filters: NOBODY,
      options: {},
      retryCount: 0,
      timeoutMs: 1000,
      failureThreshold: 1,
      isActive: false,
    });
    const r1 = await createOk(ruleDoc({ name: `uses-1-${r}`, actions: [{ subscription: s.name }] }));
    const r2 = await createOk(
      ruleDoc({ name: `uses-2-${r}`, actions: [{ subscription: SUB.a }, { subscription: s.name }] }),
    );
    expect((await rulesReferencing(db, s.name)).map((x) => x.name)).toEqual([r1.name, r2.name]);

    const del = await api(`/admin/subscriptions/${s.id}`, ADMIN, { method: 'DELETE' });
    expect(del.status).toBe(409);
    expect(del.json).toMatchObject({
      type: 'urn:secret-kill-switch:problem:subscription-in-use',
      rules: [
        { id: r1.id, name: r1.name },
        { id: r2.id, name: r2.name },
      ],
    });
    expect(del.json.detail).toContain(`${r1.name}, ${r2.name}`);
    expect(await getSubscription(db, s.id)).not.toBeNull();

    const rename = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { name: `renamed-${r}` },
    });
    expect(rename.status).toBe(409);
    expect(rename.json.detail).toContain('cannot be renamed');
    const put = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PUT',
      body: { name: `renamed-${r}`, format: 'json', url: s.url, isActive: false, filters: NOBODY },
    });
    expect(put.status).toBe(409);
    expect((await getSubscription(db, s.id))!.name).toBe(s.name);
    // A change that keeps the name is fine.
    const kept = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { retryCount: 2 },
    });
    expect(kept.status, JSON.stringify(kept.json)).toBe(200);

    // Rule by rule, the subscription is freed.
    await api(`/admin/rules/${r1.id}`, ADMIN, { method: 'DELETE' });
    await api(`/admin/rules/${r2.id}`, ADMIN, {
      method: 'PATCH',
      body: { actions: [{ subscription: SUB.a }] },
    });
    const renamed = await api(`/admin/subscriptions/${s.id}`, ADMIN, {
      method: 'PATCH',
      body: { name: `renamed-${r}` },
    });
    expect(renamed.status, JSON.stringify(renamed.json)).toBe(200);
    expect((await api(`/admin/subscriptions/${s.id}`, ADMIN, { method: 'DELETE' })).status).toBe(204);
  });
});

describe('the store on PGlite (npm start without DATABASE_URL)', () => {
  it('creates, updates, switches, syncs and guards as on PostgreSQL', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-rules-'));
    const lite = await createPgliteDb(dir);
    try {
      await migrate(lite);
      await createSubscription(lite, keys, {
        name: 'lite-sub',
        format: 'json',
        url: 'https://hooks.public.test/x',
        eventTypes: ['*'],
        filters: {},
        options: {},
        retryCount: 3,
        timeoutMs: 5000,
        failureThreshold: 10,
        isActive: true,
      });
      const spec = parseInventory({
        rules: [{ name: 'lite', trigger: ['run.*'], actions: [{ subscription: 'lite-sub' }] }],
      }).rules[0]!;
      const rule = await createRule(lite, { ...spec, name: 'lite-api' });
      expect(rule).toMatchObject({ conditions: {}, enabled: true, executionCount: 0 });
      expect(
        await updateRule(lite, rule.id, { ...spec, name: 'lite-api', conditions: { severities: ['low'] } }),
      ).toMatchObject({ conditions: { severities: ['low'] } });
      expect((await setRuleEnabled(lite, rule.id, false))!.enabled).toBe(false);
      expect(await syncConfigRules(lite, { rules: [spec] })).toEqual({
        created: ['lite'],
        updated: [],
        removed: [],
      });
      expect((await rulesReferencing(lite, 'lite-sub')).map((x) => x.name)).toEqual(['lite', 'lite-api']);
      await expect(
        syncConfigRules(lite, { rules: [{ ...spec, actions: [{ subscription: 'nope' }] }] }),
      ).rejects.toThrow(/rules\[0\]\.actions\[0\]\.subscription: no subscription named nope/);
    } finally {
      await lite.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the CLI', () => {
  it('rules list (viewer) and rules enable / disable by name or id (admin token)', async () => {
    const rule = await createOk(ruleDoc({ name: `cli-${r}`, trigger: ['run.contained'] }));
    await db.query(
      `UPDATE killswitch_rules SET execution_count = 3, last_executed_at = '2025-11-27T10:00:00Z',
         last_event_type = 'run.contained' WHERE id = $1`,
      [rule.id],
    );
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
    const list = await cli(['rules', 'list'], VIEWER);
    expect(list.code, list.err).toBe(0);
    expect(list.out).toMatch(
      /^NAME\s+ENABLED\s+ORIGIN\s+TRIGGER\s+ACTIONS\s+EXECUTIONS\s+LAST EXECUTION\s+ID/,
    );
    expect(list.out).toMatch(
      new RegExp(
        `cli-${r}\\s+yes\\s+api\\s+run\\.contained\\s+${SUB.a}\\s+3\\s+2025-11-27 10:00:00Z run\\.contained\\s+${rule.id}`,
      ),
    );
    const viewer = await cli(['rules', 'disable', `cli-${r}`], VIEWER);
    expect(viewer.code).toBe(1);
    expect(viewer.err).toContain('403');
    expect((await getRule(db, rule.id))!.enabled).toBe(true);
    const off = await cli(['rules', 'disable', `cli-${r}`], ADMIN);
    expect(off.code, off.err).toBe(0);
    expect(off.out).toMatch(/enabled\s+no/);
    expect((await getRule(db, rule.id))!.enabled).toBe(false);
    const on = await cli(['rules', 'enable', rule.id], ADMIN);
    expect(on.code, on.err).toBe(0);
    expect(on.out).toMatch(/enabled\s+yes/);
    expect((await getRule(db, rule.id))!.enabled).toBe(true);
    expect((await auditOf(rule.id)).map((a) => [a.action, a.actor])).toEqual([
      ['rule.create', 'API_TOKENS[1]'],
      ['rule.disable', 'API_TOKENS[1]'],
      ['rule.enable', 'API_TOKENS[1]'],
    ]);
    const absent = await cli(['rules', 'enable', `absent-${r}`], ADMIN);
    expect(absent.code).toBe(1);
    expect(absent.err).toContain(`no rule has the id or name absent-${r}`);
    const help = await cli(['rules', '--help'], VIEWER);
    expect(help.out).toMatch(/list[\s\S]*enable[\s\S]*disable/);
  });
});

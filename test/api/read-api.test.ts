/**
 * The read and admin API against the real ingress, worker, Temporal and PostgreSQL: roles (viewer,
 * admin, the legacy ADMIN_TOKENS), filters and keyset pagination of the audit, 422 on bad query
 * parameters, detail with the live step of an open run and of a finished one, the runtime dry-run
 * switch making the next run dry, and every admin change landing in killswitch_admin_audit.
 * Detections come through a custom source of this file only, so its rows and its dry-run switch
 * touch no other test file sharing the database.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newWebhookSecret } from '../../lib/keys';
import { decideUpdate, type KillSwitchResult } from '../../contracts/run';
import { leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';

const VIEWER = `viewer-${randomBytes(16).toString('hex')}`;
const ADMIN = `admin-${randomBytes(16).toString('hex')}`;
const LEGACY = `legacy-${randomBytes(16).toString('hex')}`;
const r = rand();
const SRC = `rd-${r}`;
const SYS = `rd-sys-${r}`;
const ROLE_PREFIX = `rd${r}`;
const SRC_SECRET = newWebhookSecret();
let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    env: {
      API_TOKENS: `viewer:${VIEWER},admin:${ADMIN}`,
      ADMIN_TOKENS: LEGACY,
      RD_WEBHOOK_SECRETS: SRC_SECRET,
    },
    config: {
      systems: [
        {
          name: 'owned-db',
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['app_*', 'dba_*'],
          hosts: ['127.0.0.1', 'db.internal'],
        },
        { name: SYS, kind: 'postgres', adminUrlEnv: 'OWNED_DB_ADMIN_URL', roles: [`${ROLE_PREFIX}_*`] },
      ],
      sources: {
        custom: [
          {
            name: SRC,
            verify: { scheme: 'standard-webhooks', secretsEnv: 'RD_WEBHOOK_SECRETS' },
            mapping: {
              secret: 'secret',
              credentialType: 'kind',
              dedupeId: 'id',
              location: { repository: 'repo' },
            },
          },
        ],
      },
      policy: {
        rules: [
          {
            name: 'rd-hold',
            match: { source: SRC, repository: 'rd/hold' },
            action: 'require_approval',
            approvalTimeout: '10m',
          },
          { name: 'rd-notify', match: { source: SRC, repository: 'rd/notify' }, action: 'notify_only' },
        ],
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
});

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function api(path: string, token?: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`${h.baseUrl}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(token ? bearer(token) : {}),
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    json: text ? JSON.parse(text) : undefined,
  };
}

/** A leak of a fresh role of SYS, through this file's own source. */
async function leak(repository: string) {
  const { role, password } = await h.owned.createRole({ prefix: ROLE_PREFIX });
  const res = await h.post(
    { id: `f-${rand()}`, kind: 'postgres_password', secret: leakedUrl(role, password), repo: repository },
    { path: `/webhooks/${SRC}`, secret: SRC_SECRET },
  );
  expect(res.status).toBe(202);
  return {
    role,
    password,
    workflowId: res.json.workflowId as string,
    detectionId: res.json.detectionId as string,
    handle: h.client.workflow.getHandle<() => Promise<KillSwitchResult>>(res.json.workflowId),
  };
}

describe('roles', () => {
  it('no token or a wrong one: 401 problem+json on /api and /admin', async () => {
    for (const path of ['/api/detections', '/admin/sources', '/admin/audit']) {
      const none = await api(path);
      expect(none.status).toBe(401);
      expect(none.type).toContain('application/problem+json');
      expect((await api(path, `x${ADMIN}`)).status).toBe(401);
    }
  });

  it('a viewer reads but gets 403 problem+json on every admin route', async () => {
    expect((await api('/api/detections?limit=1', VIEWER)).status).toBe(200);
    for (const [method, path, body] of [
      ['GET', '/admin/sources'],
      ['GET', '/admin/audit'],
      ['GET', '/admin/dry-run'],
      ['PUT', '/admin/dry-run', { enabled: true, scope: SRC }],
      ['PUT', `/admin/sources/${SRC}`, { enabled: false }],
    ] as const) {
      const res = await api(path, VIEWER, { method, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.type).toContain('application/problem+json');
      expect(res.json.type).toBe('urn:secret-kill-switch:problem:forbidden');
    }
    // Nothing changed: the viewer's PUT did not switch anything.
    const state = await api('/admin/dry-run', ADMIN);
    expect(state.json.scopes).toContainEqual(expect.objectContaining({ scope: SRC, enabled: false }));
  });

  it('admin tokens, from API_TOKENS and from the legacy ADMIN_TOKENS, reach both', async () => {
    for (const t of [ADMIN, LEGACY]) {
      expect((await api('/api/detections?limit=1', t)).status).toBe(200);
      const sources = await api('/admin/sources', t);
      expect(sources.status).toBe(200);
      expect(sources.json.sources).toContainEqual(expect.objectContaining({ name: SRC, enabled: true }));
    }
  });
});

describe('GET /api/detections', () => {
  it('filters, pages newest first with an opaque cursor, and returns no secret', async () => {
    const leaks = [];
    for (let i = 0; i < 3; i++) {
      const l = await leak('rd/notify');
      expect((await l.handle.result()).outcome).toBe('notified');
      leaks.push(l);
    }
    const page1 = await api(`/api/detections?source=${SRC}&outcome=notified&limit=2`, VIEWER);
    expect(page1.status).toBe(200);
    expect(page1.json.detections.map((d: { workflowId: string }) => d.workflowId)).toEqual([
      leaks[2]!.workflowId,
      leaks[1]!.workflowId,
    ]);
    expect(page1.json.nextCursor).toEqual(expect.any(String));
    const page2 = await api(
      `/api/detections?source=${SRC}&outcome=notified&limit=2&cursor=${page1.json.nextCursor}`,
      VIEWER,
    );
    expect(page2.json.detections.map((d: { workflowId: string }) => d.workflowId)).toEqual([
      leaks[0]!.workflowId,
    ]);
    expect(page2.json.nextCursor).toBeNull();

    const first = page1.json.detections[0];
    expect(first).toMatchObject({
      source: SRC,
      owningSystem: SYS,
      outcome: 'notified',
      policyAction: 'notify_only',
      policyRule: 'rd-notify',
      credentialType: 'postgres_password',
    });
    expect(first.credentialRef).toMatchObject({ role: leaks[2]!.role });
    expect(first.temporalUiUrl).toContain(encodeURIComponent(leaks[2]!.workflowId));
    expect(first).not.toHaveProperty('fingerprint');
    const all = JSON.stringify([page1.json, page2.json]);
    for (const l of leaks)
      expect(all.includes(l.password) || all.includes(encodeURIComponent(l.password))).toBe(false);

    expect(
      (await api(`/api/detections?source=${SRC}&system=${SYS}&limit=200`, VIEWER)).json.detections.length,
    ).toBeGreaterThanOrEqual(3);
    expect(
      (
        await api(
          `/api/detections?source=${SRC}&outcome=contained&since=${new Date(Date.now() - 60_000).toISOString()}`,
          VIEWER,
        )
      ).json.detections,
    ).toEqual([]);
    expect(
      (
        await api(
          `/api/detections?source=${SRC}&since=${new Date(Date.now() + 60_000).toISOString()}`,
          VIEWER,
        )
      ).json.detections,
    ).toEqual([]);
    expect((await api(`/api/detections?source=${SRC}&system=none`, VIEWER)).json.detections).toEqual([]);
  });

  it.each([
    ['since=yesterday', 'since'],
    ['since=2025-11-27T10:00:00', 'since'],
    ['limit=0', 'limit'],
    ['limit=201', 'limit'],
    ['limit=ten', 'limit'],
    ['cursor=bm90LWEtY3Vyc29y', 'cursor'],
    ['outcome=exploded', 'outcome'],
    ['system=Not%20A%20System', 'system'],
    ['source=a&source=b', 'source'],
    // An unknown parameter is named by its position, never echoed.
    ['colour=red', '<key#1>'],
  ])('422 naming the parameter: %s', async (query, field) => {
    const res = await api(`/api/detections?${query}`, VIEWER);
    expect(res.status).toBe(422);
    expect(res.type).toContain('application/problem+json');
    expect(res.json.errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(res.json.detail).toContain(field);
  });
});

describe('GET /api/detections/:id', () => {
  it('shows the live step of an open run and the audit of the finished one, by workflow or detection id', async () => {
    const l = await leak('rd/hold');
    let open: { json: any } | undefined;
    for (let i = 0; i < 100; i++) {
      open = await api(`/api/detections/${l.workflowId}`, VIEWER);
      if (open.json.live?.step === 'awaiting_approval') break;
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(open!.json).toMatchObject({
      workflowId: l.workflowId,
      live: {
        status: 'RUNNING',
        step: 'awaiting_approval',
        owningSystem: SYS,
        policy: { action: 'require_approval', rule: 'rd-hold', dryRun: false },
        sightings: 1,
      },
      audit: [],
      sightings: [{ detectionId: l.detectionId, source: SRC }],
    });
    const byDetection = await api(`/api/detections/${encodeURIComponent(l.detectionId)}`, VIEWER);
    expect(byDetection.json).toMatchObject({
      workflowId: l.workflowId,
      live: { status: 'RUNNING', step: 'awaiting_approval' },
    });

    await l.handle.executeUpdate(decideUpdate, { args: [{ decision: 'deny', by: 'carol@example.com' }] });
    expect((await l.handle.result()).outcome).toBe('denied');
    const done = await api(`/api/detections/${l.workflowId}`, VIEWER);
    expect(done.json.live).toMatchObject({ status: 'COMPLETED', closeTime: expect.any(String) });
    expect(done.json.live).not.toHaveProperty('step');
    expect(done.json.audit).toMatchObject([
      { outcome: 'denied', decidedBy: 'deny by carol@example.com', workflowId: l.workflowId },
    ]);
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
  });

  it('404 problem+json for an id nobody knows', async () => {
    const res = await api(`/api/detections/killswitch-generic-${'0'.repeat(32)}`, VIEWER);
    expect(res.status).toBe(404);
    expect(res.type).toContain('application/problem+json');
  });
});

describe('admin: runtime dry run and the admin audit', () => {
  it('PUT /admin/dry-run makes the next run of its scope dry, and turning it off makes the next one real', async () => {
    const on = await api('/admin/dry-run', ADMIN, {
      method: 'PUT',
      body: { enabled: true, scope: SRC, by: 'alice@example.com' },
    });
    expect(on.status).toBe(200);
    expect(on.json).toEqual({ scope: SRC, enabled: true, configured: false, changedBy: 'alice@example.com' });

    const dry = await leak('rd/rotate');
    const dryResult = await dry.handle.result();
    expect(dryResult).toMatchObject({ outcome: 'dry_run', policy: { action: 'rotate', dryRun: true } });
    expect(await h.owned.loginFails(dry.role, dry.password)).toBeNull();
    const dryRow = await api(`/api/detections/${dry.workflowId}`, VIEWER);
    expect(dryRow.json.audit).toMatchObject([{ outcome: 'dry_run', dryRun: true }]);

    const off = await api('/admin/dry-run', LEGACY, { method: 'PUT', body: { enabled: false, scope: SRC } });
    expect(off.status).toBe(200);
    const real = await leak('rd/rotate');
    expect(await real.handle.result()).toMatchObject({ outcome: 'contained', policy: { dryRun: false } });
    expect(await h.owned.loginFails(real.role, real.password)).not.toBeNull();

    const rows = (
      await h.db.query<Record<string, any>>(
        `SELECT * FROM killswitch_admin_audit WHERE action = 'dry_run.set' AND target = $1 ORDER BY id`,
        [SRC],
      )
    ).rows;
    expect(rows).toMatchObject([
      {
        actor: 'alice@example.com',
        role: 'admin',
        token: 'API_TOKENS[1]',
        before: { enabled: false, configured: false },
        after: { enabled: true },
      },
      {
        actor: 'ADMIN_TOKENS[0]',
        role: 'admin',
        token: 'ADMIN_TOKENS[0]',
        before: { enabled: true, configured: false },
        after: { enabled: false },
      },
    ]);
    expect(rows[0]!.at).toBeInstanceOf(Date);
    expect(rows[0]!.request_id).toEqual(expect.any(String));
    expect(JSON.stringify(rows)).not.toContain(ADMIN);
  });

  it('refuses bad dry-run requests with 422 naming the field', async () => {
    for (const [body, field] of [
      [{ enabled: true, scope: 'no-such-source' }, 'scope'],
      [{ enabled: 'yes', scope: 'global' }, 'enabled'],
      [{ scope: 'global' }, 'enabled'],
      [{ enabled: true, scope: 'global', by: 'x\u0000y' }, 'by'],
      [{ enabled: true, scope: 'global', extra: 1 }, '<key#3>'],
    ] as const) {
      const res = await api('/admin/dry-run', ADMIN, { method: 'PUT', body });
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(res.json.errors.map((e: { field: string }) => e.field)).toContain(field);
    }
  });

  it('source switches are audited too, and GET /admin/audit lists every change newest first', async () => {
    const res = await api(`/admin/sources/${SRC}`, LEGACY, {
      method: 'PUT',
      body: { enabled: true, by: 'bob' },
    });
    expect(res.status).toBe(200);
    const list = await api('/admin/audit?limit=200', ADMIN);
    expect(list.status).toBe(200);
    const mine = list.json.entries.filter((e: { target: string }) => e.target === SRC);
    expect(mine[0]).toMatchObject({
      action: 'source.set',
      actor: 'bob',
      role: 'admin',
      token: 'ADMIN_TOKENS[0]',
      before: { enabled: true },
      after: { enabled: true },
    });
    expect(mine.map((e: { action: string }) => e.action)).toEqual([
      'source.set',
      'dry_run.set',
      'dry_run.set',
    ]);
    const ids = list.json.entries.map((e: { id: string }) => BigInt(e.id));
    expect([...ids].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0))).toEqual(ids);
    expect((await api('/admin/audit?limit=0', ADMIN)).status).toBe(422);
  });

  it('the admin audit is append-only', async () => {
    await expect(
      h.db.query(`UPDATE killswitch_admin_audit SET actor = 'mallory' WHERE target = $1`, [SRC]),
    ).rejects.toThrow(/append-only/);
    await expect(h.db.query(`DELETE FROM killswitch_admin_audit WHERE target = $1`, [SRC])).rejects.toThrow(
      /append-only/,
    );
  });
});

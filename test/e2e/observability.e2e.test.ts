/**
 * Health and metrics over real HTTP: the ingress's /livez and /readyz against the real store and
 * Temporal server (not ready while no worker polls, or while the database is unreachable), the
 * production worker entry as its own process with WORKER_HEALTH_PORT (/livez, /readyz, /metrics with
 * the Temporal SDK's own worker metrics), and the metrics of a contained run on both scrapes: the
 * right names and labels, no secret. The shipped Grafana dashboard and the documented alert rules
 * use only metrics these scrapes export.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIngressApp } from '../../api/server';
import { createPostgresDb } from '../../lib/db';
import { createEvidenceStore } from '../../store/evidence';
import { freeLoopbackPort } from '../../lib/health';
import { PROJECT_ROOT } from '../../lib/paths';
import type { KillSwitchResult } from '../../contracts/run';
import { leakedUrl, rand, startHarness, testLogger, type Harness } from '../helpers/harness';
import { spawnWorker, waitFor, type WorkerProcess } from '../faults/support';

const METRICS_TOKEN = `metrics-${randomBytes(18).toString('base64url')}`;
let h: Harness;
let worker: WorkerProcess | undefined;
let workerHealth: string;

beforeAll(async () => {
  // No worker in this process: the worker runs as its own process below, as in production.
  h = await startHarness({ worker: false, env: { METRICS_TOKEN } });
});
afterAll(async () => {
  await worker?.stop();
  await h?.close();
});

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

async function scrape(url: string, token?: string): Promise<{ status: number; text: string; type: string }> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') ?? '' };
}

/** The metric names a scrape declares (# TYPE) or has samples of. */
function namesIn(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const typed = /^# TYPE (\S+) /.exec(line);
    if (typed) names.add(typed[1]!);
    else if (/^[a-zA-Z_:]/.test(line)) names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return names;
}

/** One sample's value, by name and exact labels (in the scrape's order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels);
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (want.every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('ingress /livez and /readyz', () => {
  it('/livez (and /healthz, its older name) answer while the process is up', async () => {
    for (const p of ['/livez', '/healthz']) {
      expect(await getJson(`${h.baseUrl}${p}`)).toEqual({ status: 200, body: { status: 'ok' } });
    }
  });

  it('/readyz is 503 naming the failed check while no worker polls the task queue', async () => {
    const r = await getJson(`${h.baseUrl}/readyz`);
    expect(r.status).toBe(503);
    expect(r.body.status).toBe('not ready');
    expect(r.body.checks.database).toEqual({ ok: true });
    expect(r.body.checks.temporal).toEqual({ ok: true });
    expect(r.body.checks.worker.ok).toBe(false);
    expect(r.body.checks.worker.detail).toContain(`no worker polls task queue ${h.taskQueue}`);
  });

  it('/readyz is 503 naming the database when the store is unreachable, and shows no credential', async () => {
    const password = `pw-${rand()}${rand()}`;
    const db = createPostgresDb(`postgresql://ks_nobody:${password}@127.0.0.1:1/none`);
    const app = createIngressApp(h.config, {
      logger: testLogger,
      client: h.client,
      keys: h.keys,
      db,
      evidence: createEvidenceStore(db, h.keys, 1),
      genericSecrets: h.config.webhook.genericSecrets!,
      inventory: h.inventory,
      env: h.env,
      codec: h.codec,
    });
    const server = http.createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`);
      const text = await res.text();
      expect(res.status).toBe(503);
      const body = JSON.parse(text);
      expect(body.checks.database).toEqual({
        ok: false,
        detail: 'the database did not answer (ECONNREFUSED)',
      });
      expect(body.checks.temporal).toEqual({ ok: true });
      expect(text).not.toContain(password);
      expect(text).not.toContain('ks_nobody');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await db.close();
    }
  });
});

describe('the worker process: health endpoint and metrics', () => {
  it('serves /livez, then /readyz once it polls; the ingress becomes ready with it', async () => {
    const port = await freeLoopbackPort();
    workerHealth = `http://127.0.0.1:${port}`;
    worker = spawnWorker(h, { WORKER_HEALTH_PORT: String(port), WORKER_HEALTH_HOST: '127.0.0.1' });
    // Up before the worker runs (bundling, connecting): alive, not ready.
    await waitFor('worker /livez', async () => (await fetch(`${workerHealth}/livez`)).status === 200, 60_000);
    await worker.ready;
    const ready = await waitFor(
      'worker /readyz 200',
      async () => {
        const r = await getJson(`${workerHealth}/readyz`);
        return r.status === 200 ? r : undefined;
      },
      30_000,
      500,
    );
    expect(ready.body).toEqual({
      status: 'ready',
      checks: { worker: { ok: true, detail: 'RUNNING' }, temporal: { ok: true } },
    });
    // The ingress sees the worker's pollers (its answer is cached for 5 s).
    const ingress = await waitFor(
      'ingress /readyz 200',
      async () => {
        const r = await getJson(`${h.baseUrl}/readyz`);
        return r.status === 200 ? r : undefined;
      },
      30_000,
      1_000,
    );
    expect(ingress.body.status).toBe('ready');
    expect(ingress.body.checks.worker.ok).toBe(true);
  });

  it('after a contained run: deliveries on the ingress scrape; runs, time to contain, provider calls and SDK metrics on the worker scrape; no secret in either', async () => {
    expect(worker, 'the worker process of the test above').toBeDefined();
    const { role, password } = await h.owned.createRole();
    const res = await h.post({
      scanner: 'ci-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
      location: { repository: 'acme/payments', file: 'deploy/.env', line: 12 },
    });
    expect(res.status).toBe(202);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('contained');

    // The ingress: only with the bearer token.
    expect((await scrape(`${h.baseUrl}/metrics`)).status).toBe(401);
    expect((await scrape(`${h.baseUrl}/metrics`, 'wrong-token-wrong-token-wrong')).status).toBe(401);
    const ingress = await scrape(`${h.baseUrl}/metrics`, METRICS_TOKEN);
    expect(ingress.status).toBe(200);
    expect(ingress.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(ingress.text, 'killswitch_deliveries_total', { source: 'generic', status: '202' })).toBe(1);
    expect(sample(ingress.text, 'killswitch_metrics_store_up', {})).toBe(1);
    expect(sample(ingress.text, 'killswitch_outbound_backlog', {})).toBeGreaterThanOrEqual(0);

    // The worker: the run's outcome and time to contain, the provider's calls, and the SDK's metrics.
    const w = await scrape(`${workerHealth}/metrics`, METRICS_TOKEN);
    expect(w.status).toBe(200);
    expect((await scrape(`${workerHealth}/metrics`)).status).toBe(401);
    expect(sample(w.text, 'killswitch_runs_total', { outcome: 'contained', system: 'owned-db' })).toBe(1);
    expect(sample(w.text, 'killswitch_time_to_contain_seconds_count', { system: 'owned-db' })).toBe(1);
    const contained = sample(w.text, 'killswitch_time_to_contain_seconds_sum', { system: 'owned-db' })!;
    expect(contained).toBeGreaterThan(0);
    expect(contained).toBeLessThan(60);
    expect(
      sample(w.text, 'killswitch_time_to_contain_seconds_bucket', { le: '+Inf', system: 'owned-db' }),
    ).toBe(1);
    for (const call of ['revoke', 'expireSessions', 'verifyDead']) {
      expect(
        sample(w.text, 'killswitch_provider_call_duration_seconds_count', {
          system: 'owned-db',
          call,
          result: 'ok',
        }),
        call,
      ).toBeGreaterThanOrEqual(1);
    }
    // The Temporal SDK's own worker metrics, from its Prometheus exporter, in the same scrape.
    expect(w.text).toMatch(/^temporal_num_pollers\{/m);
    expect(w.text).toMatch(/^temporal_worker_task_slots_available\{/m);

    const secrets = [
      password,
      leakedUrl(role, password),
      h.owned.adminPassword,
      h.webhookSecret,
      h.codecToken,
      METRICS_TOKEN,
      h.env.KILLSWITCH_SERVER_KEY!,
    ];
    for (const s of secrets) {
      expect(ingress.text).not.toContain(s);
      expect(w.text).not.toContain(s);
    }

    // The dashboard and the alert rules use only metrics these processes export.
    const exported = new Set([...namesIn(ingress.text), ...namesIn(w.text)]);
    const used = usedMetricNames();
    expect(used.size).toBeGreaterThan(10);
    const missing = [...used].filter(
      (n) => !exported.has(n) && !exported.has(n.replace(/_(bucket|sum|count)$/, '')),
    );
    expect(missing).toEqual([]);
  });
});

/** Every metric name in the Grafana dashboard's queries and in the alert rules of docs/observability.md. */
function usedMetricNames(): Set<string> {
  const dashboard = JSON.parse(
    readFileSync(path.join(PROJECT_ROOT, 'docs/grafana/kill-switch.json'), 'utf8'),
  );
  const exprs: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        if (k === 'expr' && typeof x === 'string') exprs.push(x);
        else walk(x);
      }
  };
  walk(dashboard);
  expect(exprs.length).toBeGreaterThan(8);
  const doc = readFileSync(path.join(PROJECT_ROOT, 'docs/observability.md'), 'utf8');
  const rules = [...doc.matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1]!);
  expect(rules.length).toBeGreaterThanOrEqual(5);
  const names = new Set<string>();
  for (const e of [...exprs, ...rules])
    for (const m of e.matchAll(/\b((?:killswitch|temporal|process|nodejs)_[a-z0-9_]+)\b/g)) names.add(m[1]!);
  return names;
}

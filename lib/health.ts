/**
 * Liveness and readiness. /livez says the process is up; /readyz says it can do its work: for the
 * ingress, the store and Temporal answer and a worker polls the task queue; for a worker, it runs,
 * polls and reaches Temporal. Checks are cached for a few seconds (probes come every few seconds
 * from every kubelet and load balancer) and time out quickly. A failed check says what failed and
 * an error code, never an error's message (which may quote a connection string).
 *
 * Also the worker's small HTTP server (WORKER_HEALTH_PORT): /livez, /readyz and /metrics.
 */
import http from 'node:http';
import net from 'node:net';
import type { Client } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import type { Db } from './db';
import type { Logger } from './logger';
import { METRICS_CONTENT_TYPE, metricsAuthorized, metricsText } from './metrics';

/** A protobuf Timestamp (seconds may be a Long) as epoch milliseconds; 0 when absent. */
function timestampMs(
  ts: { seconds?: { toString(): string } | number | null; nanos?: number | null } | null | undefined,
): number {
  if (!ts) return 0;
  return Number(String(ts.seconds ?? 0)) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
}

export interface CheckResult {
  ok: boolean;
  /** What failed, or what was found (e.g. the number of pollers). */
  detail?: string;
}

export interface Readiness {
  status: 'ready' | 'not ready';
  checks: Record<string, CheckResult>;
}

export const CHECK_TIMEOUT_MS = 2_000;
export const CHECK_CACHE_MS = 5_000;
/** A worker long-polls for about a minute; a poller not seen for longer than this is gone. */
export const POLLER_FRESH_MS = 2 * 60_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'TIMEOUT' })), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** An error's code (ECONNREFUSED, 28P01, a gRPC status), never its message. */
export function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown } | null;
  if (typeof e?.code === 'string' && /^[A-Za-z0-9_.-]{1,40}$/.test(e.code)) return e.code;
  if (typeof e?.code === 'number') return `grpc status ${e.code}`;
  return typeof e?.name === 'string' ? e.name : 'error';
}

/** The last answer of `fn` for `ttlMs`; concurrent callers share one call. */
export function cached<T>(fn: () => Promise<T>, ttlMs = CHECK_CACHE_MS): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ttlMs) last = { at: now, value: fn() };
    return last.value;
  };
}

function readinessOf(checks: Record<string, CheckResult>): Readiness {
  return { status: Object.values(checks).every((c) => c.ok) ? 'ready' : 'not ready', checks };
}

export async function databaseCheck(db: Db): Promise<CheckResult> {
  try {
    await withTimeout(db.query('SELECT 1'), CHECK_TIMEOUT_MS);
    return { ok: true };
  } catch (err) {
    return { ok: false, detail: `the database did not answer (${errorCode(err)})` };
  }
}

/**
 * The ingress's readiness: the store answers, Temporal answers, and a worker polls the task queue
 * for both workflow and activity tasks (DescribeTaskQueue's pollers seen within POLLER_FRESH_MS).
 */
export function ingressReadiness(deps: {
  db?: Db;
  temporal: { client: Client; namespace: string; taskQueue: string };
}): () => Promise<Readiness> {
  const { client, namespace, taskQueue } = deps.temporal;
  const describe = (taskQueueType: 1 | 2) =>
    client.connection.withDeadline(Date.now() + CHECK_TIMEOUT_MS, () =>
      client.workflowService.describeTaskQueue({
        namespace,
        taskQueue: { name: taskQueue, kind: 1 },
        taskQueueType,
      }),
    );
  return cached(async () => {
    const [database, temporal] = await Promise.all([
      deps.db ? databaseCheck(deps.db) : Promise.resolve<CheckResult>({ ok: true, detail: 'no database' }),
      Promise.all([describe(1), describe(2)]).then(
        (r) => ({ ok: true as const, answers: r }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
    ]);
    if (!temporal.ok) {
      return readinessOf({
        database,
        temporal: { ok: false, detail: `Temporal did not answer (${errorCode(temporal.err)})` },
        worker: { ok: false, detail: 'not checked: Temporal did not answer' },
      });
    }
    const since = Date.now() - POLLER_FRESH_MS;
    const fresh = temporal.answers.map(
      (a) => (a.pollers ?? []).filter((p) => timestampMs(p.lastAccessTime) >= since).length,
    );
    const [workflowPollers, activityPollers] = fresh as [number, number];
    return readinessOf({
      database,
      temporal: { ok: true },
      worker:
        workflowPollers > 0 && activityPollers > 0
          ? { ok: true, detail: `${workflowPollers} workflow and ${activityPollers} activity pollers` }
          : {
              ok: false,
              detail: `no worker polls task queue ${taskQueue} (${workflowPollers} workflow, ${activityPollers} activity pollers in the last ${POLLER_FRESH_MS / 1000} s)`,
            },
    });
  });
}

/**
 * A worker's readiness: it runs and polls (the SDK's own state) and its connection reaches
 * Temporal. `worker` is undefined while the process is still starting (bundling, connecting).
 */
export function workerReadiness(
  current: () => { worker: Pick<Worker, 'getStatus'>; connection: NativeConnection } | undefined,
): () => Promise<Readiness> {
  return cached(async () => {
    const w = current();
    if (!w) return readinessOf({ worker: { ok: false, detail: 'starting' } });
    const s = w.worker.getStatus();
    const running =
      s.runState === 'RUNNING' && s.workflowPollerState === 'POLLING' && s.activityPollerState === 'POLLING';
    let temporal: CheckResult;
    try {
      await w.connection.withDeadline(Date.now() + CHECK_TIMEOUT_MS, () =>
        w.connection.workflowService.getSystemInfo({}),
      );
      temporal = { ok: true };
    } catch (err) {
      temporal = { ok: false, detail: `Temporal did not answer (${errorCode(err)})` };
    }
    return readinessOf({
      worker: running
        ? { ok: true, detail: 'RUNNING' }
        : {
            ok: false,
            detail: `${s.runState} (workflow poller ${s.workflowPollerState}, activity poller ${s.activityPollerState})`,
          },
      temporal,
    });
  });
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

/**
 * The worker's health endpoint: GET /livez (and /healthz), /readyz (200 or 503 with the checks as
 * JSON) and /metrics (Prometheus text; a bearer token when METRICS_TOKEN is set). Plain node:http.
 */
export function startHealthServer(opts: {
  port: number;
  host: string;
  ready: () => Promise<Readiness>;
  metrics: () => Promise<string>;
  metricsToken?: string;
  logger: Logger;
}): Promise<HealthServer> {
  const json = (res: http.ServerResponse, status: number, body: unknown) =>
    res
      .writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
      .end(JSON.stringify(body));
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return json(res, 405, { title: 'Method not allowed', detail: 'GET only' });
    if (path === '/livez' || path === '/healthz') return json(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      void opts.ready().then(
        (r) => json(res, r.status === 'ready' ? 200 : 503, r),
        () => json(res, 503, { status: 'not ready', checks: {} }),
      );
      return;
    }
    if (path === '/metrics') {
      if (!metricsAuthorized(req.headers.authorization, opts.metricsToken)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
        return json(res, 401, { title: 'Unauthorized', detail: 'Authorization: Bearer <METRICS_TOKEN>' });
      }
      void opts.metrics().then(
        (text) =>
          res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'cache-control': 'no-store' }).end(text),
        (err: unknown) => {
          opts.logger.warn({ err: errorCode(err) }, 'metrics scrape failed');
          json(res, 500, { title: 'Internal error', detail: 'the metrics could not be collected' });
        },
      );
      return;
    }
    json(res, 404, { title: 'Not found', detail: 'GET /livez, /readyz or /metrics' });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/** A port free on loopback now (for the SDK's metrics exporter, which cannot report the one it got). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The worker's health endpoint on WORKER_HEALTH_PORT: ready once `current()` returns the running
 * worker; /metrics with the store gauges read from `db`.
 */
export async function startWorkerHealthServer(opts: {
  port: number;
  host: string;
  metricsToken: string | undefined;
  db: Db;
  logger: Logger;
  current: () => { worker: Pick<Worker, 'getStatus'>; connection: NativeConnection } | undefined;
}): Promise<HealthServer> {
  const server = await startHealthServer({
    port: opts.port,
    host: opts.host,
    ready: workerReadiness(opts.current),
    metrics: () => metricsText({ db: opts.db }),
    ...(opts.metricsToken ? { metricsToken: opts.metricsToken } : {}),
    logger: opts.logger,
  }).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`WORKER_HEALTH_PORT: cannot listen on ${opts.host}:${opts.port} (${errorCode(err)})`);
  });
  opts.logger.info(
    { health: `http://${opts.host}:${server.port}`, paths: ['/livez', '/readyz', '/metrics'] },
    'worker health endpoint listening',
  );
  return server;
}

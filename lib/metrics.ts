/**
 * The kill switch's own Prometheus metrics (prom-client), one registry per process, and the text a
 * /metrics endpoint serves: these, the store gauges read at scrape time, and the Temporal SDK's
 * worker metrics when this process runs a worker (lib/temporal-logging.ts binds the SDK's exporter
 * on loopback; its text is appended). Label values are names from the config or the code (sources,
 * owning systems, outcomes, calls, HTTP statuses), never a value from a request: the cardinality
 * stays bounded and no secret can reach a scrape. docs/observability.md lists every metric.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RunSummary } from '../contracts/run';
import type { Db } from './db';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** Webhook deliveries answered by the ingress, by source and the HTTP status of the answer. */
export const deliveriesTotal = new Counter({
  name: 'killswitch_deliveries_total',
  help: 'Deliveries answered by the ingress, by source and HTTP status of the answer',
  labelNames: ['source', 'status'] as const,
  registers: [registry],
});

/** Runs recorded in the audit (once per run: a retried audit step counts nothing twice). */
export const runsTotal = new Counter({
  name: 'killswitch_runs_total',
  help: 'Runs recorded in the audit, by outcome and owning system (none: no owner)',
  labelNames: ['outcome', 'system'] as const,
  registers: [registry],
});

export const timeToContain = new Histogram({
  name: 'killswitch_time_to_contain_seconds',
  help: 'Contained runs: from the first receipt of the detection to the credential verified dead',
  labelNames: ['system'] as const,
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
  registers: [registry],
});

/** Every call to an owning system's admin API, sink or session target (activities/providers). */
export const providerCallDuration = new Histogram({
  name: 'killswitch_provider_call_duration_seconds',
  help: 'Calls to owning systems (provider methods, sink put, session targets), by system, call and result (ok, error)',
  labelNames: ['system', 'call', 'result'] as const,
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

export const providerCallErrors = new Counter({
  name: 'killswitch_provider_call_errors_total',
  help: 'Calls to owning systems that failed (each attempt), by system and call',
  labelNames: ['system', 'call'] as const,
  registers: [registry],
});

export const breakerTrips = new Counter({
  name: 'killswitch_breaker_trips_total',
  help: 'Mass-leak breakers tripped by this worker, by owning system',
  labelNames: ['system'] as const,
  registers: [registry],
});

const breakerTripped = new Gauge({
  name: 'killswitch_breaker_tripped',
  help: '1 while the mass-leak breaker of a system is tripped and not reset (read from the store at scrape)',
  labelNames: ['system'] as const,
  registers: [registry],
});

/** Counted up to this many rows: a scrape stays cheap whatever the backlog. */
export const BACKLOG_COUNT_LIMIT = 100_000;

const outboundBacklog = new Gauge({
  name: 'killswitch_outbound_backlog',
  help: `Outbound events queued and not yet delivered, all subscriptions (read from the store at scrape, counted up to ${BACKLOG_COUNT_LIMIT})`,
  registers: [registry],
});

const outboundOldest = new Gauge({
  name: 'killswitch_outbound_oldest_pending_seconds',
  help: 'Age of the oldest outbound event not yet delivered (0: none)',
  registers: [registry],
});

const storeUp = new Gauge({
  name: 'killswitch_metrics_store_up',
  help: '1 when this scrape could read the store gauges (breakers, outbound backlog), 0 when not',
  registers: [registry],
});

/** A call of one system's provider, sink or session target, measured. */
export async function measureProviderCall<T>(system: string, call: string, fn: () => Promise<T>): Promise<T> {
  const end = providerCallDuration.startTimer({ system, call });
  try {
    const r = await fn();
    end({ result: 'ok' });
    return r;
  } catch (err) {
    end({ result: 'error' });
    providerCallErrors.inc({ system, call });
    throw err;
  }
}

/** A run's outcome and time to contain, once, when its audit row is first written. */
export function recordRunMetrics(summary: Pick<RunSummary, 'outcome' | 'owner' | 'timeline'>): void {
  const system = summary.owner?.system ?? 'none';
  runsTotal.inc({ outcome: summary.outcome, system });
  if (summary.outcome !== 'contained') return;
  const t = summary.timeline;
  const end = t.verifiedDeadAt ?? t.sessionsExpiredAt ?? t.rotatedAt ?? t.revokedAt;
  const seconds = end ? (Date.parse(end) - Date.parse(t.receivedAt)) / 1000 : NaN;
  if (Number.isFinite(seconds) && seconds >= 0) timeToContain.observe({ system }, seconds);
}

const STORE_TIMEOUT_MS = 2_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The gauges read from the store: two small indexed queries, bounded. */
async function refreshStoreGauges(db: Db): Promise<void> {
  try {
    const [breakers, backlog] = await withTimeout(
      Promise.all([
        db.query<{ system: string; tripped: boolean }>(
          'SELECT system, (tripped_at IS NOT NULL AND reset_at IS NULL) AS tripped FROM killswitch_breakers',
        ),
        db.query<{ pending: string | number; oldest: string | number | null }>(
          `SELECT count(*) AS pending, EXTRACT(EPOCH FROM now() - min(enqueued_at)) AS oldest
             FROM (SELECT enqueued_at FROM killswitch_event_queue WHERE state = 'pending' LIMIT ${BACKLOG_COUNT_LIMIT}) q`,
        ),
      ]),
      STORE_TIMEOUT_MS,
    );
    breakerTripped.reset();
    for (const b of breakers.rows) breakerTripped.set({ system: b.system }, b.tripped ? 1 : 0);
    outboundBacklog.set(Number(backlog.rows[0]?.pending ?? 0));
    outboundOldest.set(Math.max(0, Number(backlog.rows[0]?.oldest ?? 0)));
    storeUp.set(1);
  } catch {
    storeUp.set(0);
  }
}

let sdkMetricsUrl: string | undefined;

/** Where the Temporal SDK's Prometheus exporter of this process answers (lib/temporal-logging.ts). */
export function setSdkMetricsUrl(url: string | undefined): void {
  sdkMetricsUrl = url;
}

export const METRICS_CONTENT_TYPE = registry.contentType;

/**
 * The text of one scrape: the kill switch's metrics (store gauges read now when `db` is given), then
 * the Temporal SDK's when this process runs a worker.
 */
export async function metricsText(opts: { db?: Db } = {}): Promise<string> {
  if (opts.db) await refreshStoreGauges(opts.db);
  const own = (await registry.metrics()).trimEnd();
  if (!sdkMetricsUrl) return `${own}\n`;
  try {
    const res = await fetch(sdkMetricsUrl, { signal: AbortSignal.timeout(STORE_TIMEOUT_MS) });
    if (res.ok) return `${own}\n${(await res.text()).trimEnd()}\n`;
  } catch {
    // Reported below; the kill switch's own metrics are served anyway.
  }
  return `${own}\n# the Temporal SDK metrics exporter did not answer\n`;
}

/** Whether an Authorization header carries the metrics bearer token (constant time). */
export function metricsAuthorized(header: string | undefined, token: string | undefined): boolean {
  if (token === undefined) return true;
  const m = /^Bearer (\S+)$/.exec(header ?? '');
  if (!m) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}

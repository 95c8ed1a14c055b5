/**
 * PagerDuty Events API v2 fake: POST /v2/enqueue validated as documented (routing_key, event_action,
 * dedup_key, payload.summary/source/severity for triggers), 202 with the dedup_key, 400 "invalid
 * event" otherwise, scripted 429/5xx. Records every request.
 *
 * Alerts are modelled as PagerDuty documents them: a trigger whose dedup_key names an open alert is
 * grouped into that alert, not a new one; a resolve closes it, so a later trigger opens a new one.
 * `events()` is every accepted request, `alertsOpened(key)` the alerts (pages) a dedup_key raised.
 */
import { startRecorder, type RecordingServer } from './http-recorder';

export interface PagerDutyFake extends RecordingServer {
  routingKey: string;
  events(): Array<Record<string, any>>;
  /** How many events were answered 429 by `perMinute`. */
  rateLimited(): number;
  /** How many alerts the dedup key opened (a repeated trigger while open is grouped, not counted). */
  alertsOpened(dedupKey: string): number;
}

export interface PagerDutyFakeOptions {
  /** PagerDuty's Events API limit: about 120 events a minute per routing key; beyond it 429. Unset: no limit. */
  perMinute?: number;
}

const SEVERITIES = new Set(['critical', 'error', 'warning', 'info']);

export async function startPagerDutyFake(
  routingKey = 'R0UT1NGKEY00000000000000000000AB',
  opts: PagerDutyFakeOptions = {},
): Promise<PagerDutyFake> {
  /** Accepted event times per routing key (a sliding one-minute window). */
  const accepted = new Map<string, number[]>();
  let rateLimited = 0;
  /** Open alerts by routing key and dedup key, and how many each dedup key opened. */
  const open = new Set<string>();
  const opened = new Map<string, number>();
  const rec = await startRecorder((r) => {
    if (r.method !== 'POST' || r.path !== '/v2/enqueue')
      return { status: 404, body: { status: 'not found' } };
    let e: Record<string, any>;
    try {
      e = JSON.parse(r.body);
    } catch {
      return {
        status: 400,
        body: { status: 'invalid event', message: 'Event object is invalid', errors: ['invalid JSON'] },
      };
    }
    const errors: string[] = [];
    if (typeof e.routing_key !== 'string' || e.routing_key.length !== 32)
      errors.push("'routing_key' is invalid");
    if (!['trigger', 'acknowledge', 'resolve'].includes(e.event_action))
      errors.push("'event_action' is invalid");
    if (e.dedup_key !== undefined && (typeof e.dedup_key !== 'string' || e.dedup_key.length > 255))
      errors.push("'dedup_key' is invalid");
    if (e.event_action === 'trigger') {
      if (!e.payload?.summary || String(e.payload.summary).length > 1024)
        errors.push("'payload.summary' is missing or too long");
      if (!e.payload?.source) errors.push("'payload.source' is missing");
      if (!SEVERITIES.has(e.payload?.severity)) errors.push("'payload.severity' is invalid");
    } else if (!e.dedup_key) errors.push("'dedup_key' is required for acknowledge and resolve");
    if (errors.length)
      return { status: 400, body: { status: 'invalid event', message: 'Event object is invalid', errors } };
    if (opts.perMinute) {
      const now = Date.now();
      const recent = (accepted.get(e.routing_key) ?? []).filter((t) => now - t < 60_000);
      accepted.set(e.routing_key, recent);
      if (recent.length >= opts.perMinute) {
        rateLimited += 1;
        return {
          status: 429,
          headers: { 'retry-after': String(Math.max(1, Math.ceil((recent[0]! + 60_000 - now) / 1000))) },
          body: { status: 'throttled', message: 'Too many requests for this routing key' },
        };
      }
      recent.push(now);
    }
    const alert = `${e.routing_key}\u0000${e.dedup_key ?? ''}`;
    if (e.event_action === 'trigger' && !open.has(alert)) {
      if (e.dedup_key !== undefined) open.add(alert);
      opened.set(e.dedup_key ?? '', (opened.get(e.dedup_key ?? '') ?? 0) + 1);
    } else if (e.event_action === 'resolve') open.delete(alert);
    return {
      status: 202,
      body: { status: 'success', message: 'Event processed', dedup_key: e.dedup_key ?? 'generated' },
    };
  });
  return {
    ...rec,
    routingKey,
    events: () =>
      rec.requests
        .filter((r) => r.path === '/v2/enqueue')
        .map((r) => JSON.parse(r.body) as Record<string, any>),
    rateLimited: () => rateLimited,
    alertsOpened: (dedupKey) => opened.get(dedupKey) ?? 0,
  };
}

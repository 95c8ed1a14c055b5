/**
 * The outbound outbox: events, each subscription's queue, and the delivery attempts. Emission is one
 * statement (events and queue rows together, idempotent by event id); delivery claims due rows with
 * a lease (a retried activity never sends a row another attempt holds), records each attempt and
 * moves the row on in one statement, and counts the subscription's consecutive failures for its
 * circuit breaker.
 */
import type { KillSwitchEvent } from '../contracts/events';
import type { Db } from '../lib/db';

/** A subscription row as the worker reads it (the secret still sealed). */
export interface SubscriptionRow {
  id: string;
  name: string;
  format: string;
  url: string | null;
  connection: Record<string, unknown> | null;
  secret_sealed: Buffer | null;
  secret_env: string | null;
  event_types: string[];
  filters: Record<string, string[] | undefined>;
  options: Record<string, unknown>;
  retry_count: number;
  timeout_ms: number;
  failure_threshold: number;
  is_active: boolean;
  routed_only: boolean;
}

export async function activeSubscriptionRows(db: Pick<Db, 'query'>): Promise<SubscriptionRow[]> {
  const r = await db.query<SubscriptionRow>(
    `SELECT id, name, format, url, connection, secret_sealed, secret_env, event_types, filters, options,
            retry_count, timeout_ms, failure_threshold, is_active, routed_only
       FROM killswitch_subscriptions WHERE is_active ORDER BY id`,
  );
  return r.rows;
}

export async function subscriptionRow(
  db: Pick<Db, 'query'>,
  id: string,
): Promise<SubscriptionRow | undefined> {
  const r = await db.query<SubscriptionRow>(
    `SELECT id, name, format, url, connection, secret_sealed, secret_env, event_types, filters, options,
            retry_count, timeout_ms, failure_threshold, is_active, routed_only
       FROM killswitch_subscriptions WHERE id = $1`,
    [id],
  );
  return r.rows[0];
}

/** An enabled rule as emission matches it (lib/rules.ts). */
export interface RuleRow {
  id: string;
  name: string;
  trigger: string[];
  conditions: Record<string, string[] | undefined>;
  /** Subscription names. */
  actions: string[];
}

export async function enabledRuleRows(db: Pick<Db, 'query'>): Promise<RuleRow[]> {
  const r = await db.query<RuleRow>(
    `SELECT id, name, trigger, conditions, actions FROM killswitch_rules WHERE enabled ORDER BY name`,
  );
  return r.rows;
}

/**
 * Stores the events and queues each for the subscriptions that want it, in one statement, and
 * counts an execution of every rule that fired for it. An event already stored (a retried or
 * replayed emission) is not stored, queued or counted twice. Returns the subscriptions that got at
 * least one new row due now (one backing off is left to its delivery run's timer).
 */
export async function enqueueEvents(
  db: Pick<Db, 'query'>,
  items: ReadonlyArray<{
    event: KillSwitchEvent;
    subscriptionIds: readonly string[];
    /** Rules that fired for the event (counted once per event). */
    ruleIds?: readonly string[];
  }>,
): Promise<string[]> {
  const wanted = items.filter((i) => i.subscriptionIds.length > 0 || (i.ruleIds?.length ?? 0) > 0);
  if (wanted.length === 0) return [];
  const events = wanted.map(({ event }) => ({
    id: event.id,
    type: event.type,
    occurred_at: event.occurredAt,
    workflow_id: event.run?.workflowId ?? null,
    envelope: event,
  }));
  const queue = wanted.flatMap(({ event, subscriptionIds }) =>
    subscriptionIds.map((s) => ({ subscription_id: s, event_id: event.id })),
  );
  const fired = wanted.flatMap(({ event, ruleIds }) =>
    (ruleIds ?? []).map((id) => ({ rule_id: id, event_id: event.id, type: event.type })),
  );
  const r = await db.query<{ subscription_id: string; due: boolean }>(
    `WITH e AS (
       INSERT INTO killswitch_events (id, type, occurred_at, workflow_id, envelope)
       SELECT x.id, x.type, x.occurred_at, x.workflow_id, x.envelope
         FROM jsonb_to_recordset($1::jsonb) AS x(id text, type text, occurred_at timestamptz, workflow_id text, envelope jsonb)
       ON CONFLICT (id) DO NOTHING
       RETURNING id
     ), fired AS (
       UPDATE killswitch_rules k
          SET execution_count = k.execution_count + f.n, last_executed_at = now(), last_event_type = f.last_type
         FROM (SELECT x.rule_id, count(*) AS n, (array_agg(x.type ORDER BY x.ord DESC))[1] AS last_type
                 FROM ROWS FROM (jsonb_to_recordset($3::jsonb) AS (rule_id text, event_id text, type text))
                      WITH ORDINALITY AS x(rule_id, event_id, type, ord)
                 JOIN e ON e.id = x.event_id
                GROUP BY x.rule_id) f
        WHERE k.id = f.rule_id
     )
     INSERT INTO killswitch_event_queue (subscription_id, event_id, next_attempt_at)
     -- A subscription backing off (its destination failing) gets new rows that wait with the others.
     SELECT q.subscription_id, q.event_id, GREATEST(now(), COALESCE(s.backoff_until, now()))
       FROM ROWS FROM (jsonb_to_recordset($2::jsonb) AS (subscription_id text, event_id text)) WITH ORDINALITY AS q(subscription_id, event_id, ord)
       JOIN e ON e.id = q.event_id
       JOIN killswitch_subscriptions s ON s.id = q.subscription_id AND s.is_active
      ORDER BY q.ord
     ON CONFLICT DO NOTHING
     RETURNING subscription_id, next_attempt_at <= now() AS due`,
    [JSON.stringify(events), JSON.stringify(queue), JSON.stringify(fired)],
  );
  // A subscription backing off is not woken: its delivery run sleeps until the backoff ends.
  return [...new Set(r.rows.filter((x) => x.due).map((x) => x.subscription_id))];
}

/** Queues one event for one subscription (a test delivery); the event is stored if new. */
export async function enqueueFor(
  db: Pick<Db, 'query'>,
  event: KillSwitchEvent,
  subscriptionId: string,
): Promise<void> {
  await db.query(
    `WITH e AS (
       INSERT INTO killswitch_events (id, type, occurred_at, workflow_id, envelope)
       VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (id) DO NOTHING
     )
     INSERT INTO killswitch_event_queue (subscription_id, event_id) VALUES ($6, $1) ON CONFLICT DO NOTHING`,
    [
      event.id,
      event.type,
      event.occurredAt,
      event.run?.workflowId ?? null,
      JSON.stringify(event),
      subscriptionId,
    ],
  );
}

export interface DueRow {
  event: KillSwitchEvent;
  attempts: number;
}

/**
 * Claims up to `limit` due rows of a subscription, in the order they were queued, leasing them for `leaseMs` (a
 * second claimer skips them until the lease runs out, so a lost activity's rows come back).
 */
export async function claimDue(
  db: Pick<Db, 'query'>,
  subscriptionId: string,
  limit: number,
  leaseMs: number,
): Promise<DueRow[]> {
  const r = await db.query<{ envelope: KillSwitchEvent; attempts: number; seq: string }>(
    `WITH due AS (
       SELECT q.subscription_id, q.event_id
         FROM killswitch_event_queue q
        WHERE q.subscription_id = $1 AND q.state = 'pending' AND q.next_attempt_at <= now()
        ORDER BY q.seq
        LIMIT $2
        FOR UPDATE SKIP LOCKED
     )
     UPDATE killswitch_event_queue q
        SET next_attempt_at = now() + ($3 || ' milliseconds')::interval
       FROM due, killswitch_events e
      WHERE q.subscription_id = due.subscription_id AND q.event_id = due.event_id AND e.id = q.event_id
     RETURNING e.envelope, q.attempts, q.seq
     `,
    [subscriptionId, limit, String(leaseMs)],
  );
  return r.rows
    .sort((a, b) => Number(BigInt(a.seq) - BigInt(b.seq)))
    .map((x) => ({ event: x.envelope, attempts: x.attempts }));
}

export interface AttemptRecord {
  subscriptionId: string;
  eventId: string;
  eventType: string;
  attempt: number;
  statusCode: number | null;
  success: boolean;
  durationMs: number;
  error: string | null;
  /** Where the row goes: delivered, rejected for good, or pending again after `retryInMs`. */
  next: { state: 'delivered' } | { state: 'rejected' } | { state: 'pending'; retryInMs: number };
}

/**
 * Records one attempt, moves its queue row on, and updates the subscription's consecutive-failure
 * count (reset by a success): one statement. Returns the count and the breaker's threshold.
 */
export async function recordAttempt(
  db: Pick<Db, 'query'>,
  a: AttemptRecord,
): Promise<{ consecutiveFailures: number; failureThreshold: number; isActive: boolean }> {
  const r = await db.query<{ consecutive_failures: number; failure_threshold: number; is_active: boolean }>(
    `WITH d AS (
       INSERT INTO killswitch_event_deliveries (subscription_id, event_id, event_type, attempt, status_code, success, duration_ms, error)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ), q AS (
       UPDATE killswitch_event_queue
          SET state = $9, attempts = $4, last_error = $8,
              next_attempt_at = CASE WHEN $9 = 'pending' THEN now() + ($10 || ' milliseconds')::interval ELSE next_attempt_at END,
              done_at = CASE WHEN $9 = 'pending' THEN NULL ELSE now() END
        WHERE subscription_id = $1 AND event_id = $2
     )
     UPDATE killswitch_subscriptions
        SET consecutive_failures = CASE WHEN $6 THEN 0 ELSE consecutive_failures + 1 END,
            backoff_until = CASE WHEN $6 THEN NULL ELSE backoff_until END
      WHERE id = $1
     RETURNING consecutive_failures, failure_threshold, is_active`,
    [
      a.subscriptionId,
      a.eventId,
      a.eventType,
      a.attempt,
      a.statusCode,
      a.success,
      Math.round(a.durationMs),
      a.error,
      a.next.state,
      String(a.next.state === 'pending' ? Math.max(0, Math.round(a.next.retryInMs)) : 0),
    ],
  );
  const row = r.rows[0];
  return {
    consecutiveFailures: row?.consecutive_failures ?? 0,
    failureThreshold: row?.failure_threshold ?? Number.MAX_SAFE_INTEGER,
    isActive: row?.is_active ?? false,
  };
}

/**
 * Records successful deliveries of one subscription in one statement (a round's batch): the attempts,
 * their rows delivered, the subscription's failure count and backoff cleared.
 */
export async function recordDelivered(
  db: Pick<Db, 'query'>,
  subscriptionId: string,
  done: ReadonlyArray<{
    eventId: string;
    eventType: string;
    attempt: number;
    statusCode: number | null;
    durationMs: number;
  }>,
): Promise<void> {
  if (done.length === 0) return;
  await db.query(
    `WITH x AS (
       SELECT * FROM jsonb_to_recordset($2::jsonb)
         AS x(event_id text, event_type text, attempt int, status_code int, duration_ms int)
     ), d AS (
       INSERT INTO killswitch_event_deliveries (subscription_id, event_id, event_type, attempt, status_code, success, duration_ms)
       SELECT $1, event_id, event_type, attempt, status_code, true, duration_ms FROM x
     ), q AS (
       UPDATE killswitch_event_queue k
          SET state = 'delivered', attempts = x.attempt, last_error = NULL, done_at = now()
         FROM x
        WHERE k.subscription_id = $1 AND k.event_id = x.event_id
     )
     UPDATE killswitch_subscriptions SET consecutive_failures = 0, backoff_until = NULL WHERE id = $1`,
    [
      subscriptionId,
      JSON.stringify(
        done.map((a) => ({
          event_id: a.eventId,
          event_type: a.eventType,
          attempt: a.attempt,
          status_code: a.statusCode,
          duration_ms: Math.round(a.durationMs),
        })),
      ),
    ],
  );
}

/** Switches a subscription off (its breaker tripped). True when this call switched it off. */
export async function tripSubscription(db: Pick<Db, 'query'>, id: string, reason: string): Promise<boolean> {
  const r = await db.query<{ id: string }>(
    `UPDATE killswitch_subscriptions SET is_active = false, disabled_reason = $2, updated_at = now()
      WHERE id = $1 AND is_active RETURNING id`,
    [id, reason],
  );
  return r.rows.length > 0;
}

/** Milliseconds until the subscription's next pending row is due (0: now), or null when none is pending. */
export async function nextDueInMs(db: Pick<Db, 'query'>, subscriptionId: string): Promise<number | null> {
  const r = await db.query<{ ms: string | null }>(
    // GREATEST ignores NULLs (GREATEST(0, NULL) is 0): nothing pending must stay NULL, or the
    // delivery run would take "due now" for an empty queue and spin.
    `SELECT CASE WHEN min(next_attempt_at) IS NULL THEN NULL
                 ELSE GREATEST(0, EXTRACT(EPOCH FROM (min(next_attempt_at) - now())) * 1000)::bigint END AS ms
       FROM killswitch_event_queue WHERE subscription_id = $1 AND state = 'pending'`,
    [subscriptionId],
  );
  const ms = r.rows[0]?.ms;
  return ms === null || ms === undefined ? null : Number(ms);
}

/** Active subscriptions with a pending row due now (what the worker's sweep wakes). */
export async function subscriptionsWithDueRows(db: Pick<Db, 'query'>): Promise<string[]> {
  const r = await db.query<{ subscription_id: string }>(
    `SELECT DISTINCT q.subscription_id
       FROM killswitch_event_queue q JOIN killswitch_subscriptions s ON s.id = q.subscription_id AND s.is_active
      WHERE q.state = 'pending' AND q.next_attempt_at <= now()`,
  );
  return r.rows.map((x) => x.subscription_id);
}

/** The delivery attempts of one event for one subscription, oldest first (the test route waits on it). */
export async function attemptsOf(
  db: Pick<Db, 'query'>,
  subscriptionId: string,
  eventId: string,
): Promise<Array<{ success: boolean; status_code: number | null; error: string | null }>> {
  const r = await db.query<{ success: boolean; status_code: number | null; error: string | null }>(
    `SELECT success, status_code, error FROM killswitch_event_deliveries
      WHERE subscription_id = $1 AND event_id = $2 ORDER BY id`,
    [subscriptionId, eventId],
  );
  return r.rows;
}

/** Hands rows claimed but not sent this round back to the queue, due at once. */
export async function releaseClaims(
  db: Pick<Db, 'query'>,
  subscriptionId: string,
  eventIds: readonly string[],
): Promise<void> {
  if (eventIds.length === 0) return;
  await db.query(
    `UPDATE killswitch_event_queue SET next_attempt_at = now()
      WHERE subscription_id = $1 AND event_id = ANY($2::text[]) AND state = 'pending'`,
    [subscriptionId, [...eventIds]],
  );
}

/**
 * Retention: delivery attempts older than `retentionMs`, and events that old whose every queue row
 * is done (delivered or rejected). A pending event is kept whatever its age: nothing undelivered is
 * dropped by the sweep.
 */
export async function deleteOutboundOlderThan(
  db: Pick<Db, 'query'>,
  retentionMs: number,
): Promise<{ attempts: number; events: number }> {
  const r = await db.query<{ attempts: number; events: number }>(
    `WITH a AS (
       DELETE FROM killswitch_event_deliveries WHERE at < now() - ($1::bigint * interval '1 millisecond') RETURNING 1
     ), e AS (
       DELETE FROM killswitch_events ev
        WHERE ev.created_at < now() - ($1::bigint * interval '1 millisecond')
          AND NOT EXISTS (SELECT 1 FROM killswitch_event_queue q WHERE q.event_id = ev.id AND q.state = 'pending')
       RETURNING 1
     ), j AS (
       -- A run's Jira issue mapping: a run older than the retention emits nothing more (and a late
       -- event would still find its issue by the run's label).
       DELETE FROM killswitch_jira_issues WHERE created_at < now() - ($1::bigint * interval '1 millisecond')
     )
     SELECT (SELECT count(*) FROM a)::int AS attempts, (SELECT count(*) FROM e)::int AS events`,
    [Math.max(0, Math.round(retentionMs))],
  );
  return r.rows[0] ?? { attempts: 0, events: 0 };
}

/**
 * The subscription backs off as a whole: every pending row (claimed ones included) waits `delayMs` (a destination
 * that is down is not tried once per queued event, so its failures count once per backoff step).
 */
export async function postponePending(
  db: Pick<Db, 'query'>,
  subscriptionId: string,
  delayMs: number,
): Promise<void> {
  // The rows queued later wait too (enqueueEvents reads backoff_until).
  await db.query(
    `WITH s AS (
       UPDATE killswitch_subscriptions SET backoff_until = now() + ($2 || ' milliseconds')::interval WHERE id = $1
     )
     UPDATE killswitch_event_queue
        SET next_attempt_at = now() + ($2 || ' milliseconds')::interval
      WHERE subscription_id = $1 AND state = 'pending'`,
    [subscriptionId, String(Math.max(0, Math.round(delayMs)))],
  );
}

/**
 * Outbound events in the worker: emission (the run's activities queue what its summary evidences,
 * for every active subscription that wants it, in one statement, then wake those subscriptions'
 * delivery runs without waiting), and delivery (one round of a subscription's queue: send, record
 * the attempt, retry with backoff, trip the subscription's circuit breaker).
 *
 * Emission never delays containment: it runs where the run already writes (the audit row, a wait),
 * costs nothing when no subscription is active (an in-memory check), and a dead destination only
 * leaves rows pending in its own queue.
 */
import {
  eventEnvelopeSchema,
  eventTypeMatches,
  filtersMatch,
  EVENT_VERSION,
  deliveryWorkflowId,
  wakeSignal,
  type EventFilters,
  type EventFormat,
  type KillSwitchEvent,
} from '../../contracts/events';
import type { RunSummary } from '../../contracts/run';
import type { ServerKeys } from '../../contracts/keys';
import type { Db } from '../../lib/db';
import type { WorkflowDispatcher } from '../../lib/dispatch';
import type { Logger } from '../../lib/logger';
import type { RouteTable } from '../../lib/routing';
import { ruleMatches, type RuleConditions } from '../../lib/rules';
import { checkDestination, type DestinationPolicy } from '../../lib/subscriptions';
import { insertAdminAudit } from '../../store/admin-audit';
import {
  activeSubscriptionRows,
  claimDue,
  enabledRuleRows,
  enqueueEvents,
  nextDueInMs,
  recordAttempt,
  recordDelivered,
  postponePending,
  releaseClaims,
  subscriptionRow,
  subscriptionsWithDueRows,
  tripSubscription,
  type RuleRow,
  type SubscriptionRow,
} from '../../store/outbound';
import type { PagerDutySender } from '../pagerduty';
import type { SlackSender } from '../slack';
import { eventId, eventsOfRun } from './events';
import { httpTransport, jsonFormatter } from './http';
import type { DeliveryResult, Formatter, OutboundSubscription, Transport } from './types';

/** Backoff after a subscription's 1st, 2nd, 3rd consecutive failure (index = failures; its retryCount of them). */
export const RETRY_SCHEDULE_MS = [0, 2_000, 5_000, 10_000];
/** After its retries, a row still pending is tried again every minute, doubling up to 5 minutes. */
const PARKED_MS = { first: 60_000, max: 300_000 };
/** One round sends for at most this long (the activity's timeout is 3 minutes). */
const ROUND_BUDGET_MS = 60_000;
const ROUND_ROWS = 100;
/** At most one wake signal per subscription this often (the rest coalesced into one trailing wake). */
const WAKE_COALESCE_MS = 1_000;
/** Successful deliveries are recorded this many at a time (and at the end of a round). */
const RECORD_BATCH = 25;

export interface OutboundDeps {
  db: Db;
  keys: ServerKeys;
  env: Readonly<Record<string, string | undefined>>;
  /** Starts or wakes delivery runs; unset: nothing is woken (the sweep or a test does it). */
  workflows?: WorkflowDispatcher;
  log: Pick<Logger, 'warn' | 'info'>;
  slack?: SlackSender;
  pagerduty?: PagerDutySender;
  /** Transports of the formats that are not HTTP bodies (syslog, email, jira), and any override. */
  transports?: Partial<Record<EventFormat, Transport>>;
  /** HTTP bodies by format (json is built in). */
  formatters?: Partial<Record<EventFormat, Formatter>>;
  /**
   * Where deliveries may go (the allow-list and the private-address rule of lib/subscriptions.ts),
   * checked again at each round: a name that resolves to a private address since the subscription
   * was saved (DNS rebinding) is refused there too. Unset: not checked (tests of the transports).
   */
  destinations?: DestinationPolicy;
  /** How long "no subscription is active" is believed before the table is read again (default 1 s). */
  cacheMs?: number;
  /** Per owning system: the subscriptions (by name) its runs' events are routed to (lib/routing.ts). */
  routes?: RouteTable;
}

export interface Outbound {
  /** Queues the events a run's summary evidences (`final`: with its outcome) and wakes their subscriptions. */
  emitRun(summary: RunSummary, runUrl: string, final: boolean): Promise<{ queued: number }>;
  /** Queues one event for every active subscription that wants it. */
  emit(events: readonly KillSwitchEvent[]): Promise<{ queued: number }>;
  /** One delivery round of a subscription. */
  deliverDue(
    subscriptionId: string,
    heartbeat?: () => void,
  ): Promise<{ active: boolean; delivered: number; nextDueInMs: number | null }>;
  /** Wakes the delivery runs of every subscription with rows due (the worker's sweep). */
  wakeDue(): Promise<string[]>;
  close(): Promise<void>;
}

/** A subscription row as the worker uses it: the secret unsealed (or read from its env var). */
export function subscriptionOf(
  row: SubscriptionRow,
  keys: ServerKeys,
  env: OutboundDeps['env'],
  withSecret = true,
): OutboundSubscription {
  let secret: string | undefined;
  if (!withSecret) secret = undefined;
  else if (row.secret_sealed) secret = keys.decrypt(row.secret_sealed, `subscription:${row.id}`);
  else if (row.secret_env) secret = env[row.secret_env];
  return {
    id: row.id,
    name: row.name,
    format: row.format as EventFormat,
    ...(row.url ? { url: row.url } : {}),
    ...(row.connection ? { connection: row.connection } : {}),
    ...(secret ? { secret } : {}),
    eventTypes: row.event_types,
    filters: row.filters as EventFilters,
    options: row.options ?? {},
    retryCount: row.retry_count,
    timeoutMs: row.timeout_ms,
    failureThreshold: row.failure_threshold,
    isActive: row.is_active,
    routedOnly: row.routed_only,
  };
}

export function wants(
  sub: Pick<OutboundSubscription, 'eventTypes' | 'filters'>,
  e: KillSwitchEvent,
): boolean {
  return sub.eventTypes.some((p) => eventTypeMatches(p, e.type)) && filtersMatch(sub.filters ?? {}, e);
}

/**
 * Who gets an event: every active subscription that wants it (its event types and filters) unless
 * it is `routedOnly`; the subscriptions the owning system routes to, when they want it; and the
 * actions of every enabled rule that fires for it (whatever those subscriptions' own event types
 * and filters say: the rule's trigger and conditions decide). Each subscription at most once.
 */
export function targetsOf(
  subs: readonly OutboundSubscription[],
  rules: readonly RuleRow[],
  routes: RouteTable | undefined,
  e: KillSwitchEvent,
): { subscriptionIds: string[]; ruleIds: string[] } {
  const byName = new Map(subs.map((s) => [s.name, s]));
  const ids = new Set<string>();
  for (const s of subs) if (!s.routedOnly && wants(s, e)) ids.add(s.id);
  const system = e.data.owner?.system;
  for (const name of (system && routes?.get(system)?.subscriptions) || []) {
    const s = byName.get(name);
    if (s && wants(s, e)) ids.add(s.id);
  }
  const ruleIds: string[] = [];
  for (const r of rules) {
    if (!ruleMatches({ trigger: r.trigger, conditions: r.conditions as RuleConditions }, e)) continue;
    ruleIds.push(r.id);
    for (const name of r.actions) {
      const s = byName.get(name);
      if (s) ids.add(s.id);
    }
  }
  return { subscriptionIds: [...ids], ruleIds };
}

/**
 * How long a failing subscription waits after its `failures`-th consecutive failure: the schedule
 * (2, 5, 10 s) for its first `retryCount` failures, then parked (1 min, doubling to 5 min); never less
 * than the destination's Retry-After. With the defaults (3 retries, breaker at 10 failures) a
 * destination must fail for ~25 minutes before its subscription is switched off.
 */
export function retryDelayMs(failures: number, retryCount: number, retryAfterMs?: number): number {
  const scheduled =
    failures <= retryCount
      ? (RETRY_SCHEDULE_MS[Math.min(failures, RETRY_SCHEDULE_MS.length - 1)] ?? 10_000)
      : Math.min(PARKED_MS.first * 2 ** (failures - retryCount - 1), PARKED_MS.max);
  return Math.max(scheduled, retryAfterMs ?? 0);
}

export function createOutbound(deps: OutboundDeps): Outbound {
  // Whether any subscription is active is cached (emission costs nothing when none is); the list
  // itself is read fresh at each emission, so a new or changed subscription applies at once.
  const cacheMs = deps.cacheMs ?? 1_000;
  let anyActive: { at: number; value: boolean } | undefined;
  interface Audience {
    subs: OutboundSubscription[];
    rules: RuleRow[];
  }
  const active = async (): Promise<Audience> => {
    if (anyActive && !anyActive.value && Date.now() - anyActive.at < cacheMs) return { subs: [], rules: [] };
    // Emission needs only what a subscription wants, never its secret: a secret that cannot be
    // unsealed (a changed server key) must not stop any run from recording its outcome.
    const [rows, rules] = await Promise.all([activeSubscriptionRows(deps.db), enabledRuleRows(deps.db)]);
    const subs = rows.map((r) => subscriptionOf(r, deps.keys, deps.env, false));
    anyActive = { at: Date.now(), value: subs.length > 0 };
    return { subs, rules };
  };
  const formatters: Partial<Record<EventFormat, Formatter>> = { json: jsonFormatter, ...deps.formatters };
  const httpTransports = new Map<EventFormat, Transport>();
  const transportOf = (format: EventFormat): Transport | undefined => {
    const own = deps.transports?.[format];
    if (own) return own;
    const f = formatters[format];
    if (!f) return undefined;
    if (!httpTransports.has(format)) httpTransports.set(format, httpTransport(f));
    return httpTransports.get(format);
  };

  const wake = (subscriptionId: string): Promise<void> => {
    if (!deps.workflows) return Promise.resolve();
    return deps.workflows
      .signalWithStart({
        workflowType: 'deliverEvents',
        workflowId: deliveryWorkflowId(subscriptionId),
        args: [{ subscriptionId }],
        signal: wakeSignal,
        signalArgs: [],
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        staticSummary: `Deliver outbound events of subscription ${subscriptionId}`,
      })
      .then(
        () => undefined,
        (err: Error) =>
          deps.log.warn(
            { subscriptionId, err: err.message },
            'could not wake a delivery run; the sweep will',
          ),
      );
  };

  /**
   * Wakes coalesced per subscription: at most one signal per WAKE_COALESCE_MS, the others folded
   * into one trailing wake. A busy system emits for every run; each wake costs the server a signal
   * and a workflow task, while one round delivers everything queued by then (and a round checks for
   * rows queued meanwhile before it sleeps). A wake lost with the process is caught up by the sweep.
   */
  const lastWake = new Map<string, number>();
  const trailing = new Map<string, NodeJS.Timeout>();
  const wakeSoon = (subscriptionId: string): void => {
    if (trailing.has(subscriptionId)) return;
    const wait = (lastWake.get(subscriptionId) ?? 0) + WAKE_COALESCE_MS - Date.now();
    const send = () => {
      trailing.delete(subscriptionId);
      lastWake.set(subscriptionId, Date.now());
      void wake(subscriptionId);
    };
    if (wait <= 0) return send();
    const t = setTimeout(send, wait);
    t.unref();
    trailing.set(subscriptionId, t);
  };

  const emit = async (events: readonly KillSwitchEvent[]) => emitTo(await active(), events);
  const emitTo = async ({ subs, rules }: Audience, events: readonly KillSwitchEvent[]) => {
    if (subs.length === 0 || events.length === 0) return { queued: 0 };
    const items = events.map((event) => ({ event, ...targetsOf(subs, rules, deps.routes, event) }));
    const woken = await enqueueEvents(deps.db, items);
    // Not awaited: the run goes on; a wake that fails is caught up by the sweep.
    for (const id of woken) wakeSoon(id);
    return { queued: items.reduce((n, i) => n + i.subscriptionIds.length, 0) };
  };

  const trip = async (sub: OutboundSubscription, failures: number, lastError: string) => {
    const reason = `${failures} consecutive failed deliveries (last: ${lastError})`.slice(0, 500);
    if (!(await tripSubscription(deps.db, sub.id, reason))) return;
    deps.log.warn({ subscription: sub.name, failures }, 'subscription switched off by its circuit breaker');
    await insertAdminAudit(deps.db, {
      actor: 'circuit-breaker',
      role: 'system',
      token: 'none',
      action: 'subscription.disable',
      target: `subscription:${sub.id}`,
      before: { isActive: true },
      after: { isActive: false, reason },
      requestId: null,
    });
    const text = `Outbound subscription "${sub.name}" (${sub.format}) was switched off after ${failures} consecutive failed deliveries (last: ${lastError}). Its undelivered events are kept; re-enable it with PATCH /admin/subscriptions/${sub.id} {"isActive": true}.`;
    await deps.slack
      ?.post({
        text,
        blocks: [
          {
            type: 'section',
            text: {
              type: 'mrkdwn',
              text: text.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!),
            },
          },
        ],
      })
      .catch((err: Error) =>
        deps.log.warn({ err: err.message }, 'could not tell Slack about the switched-off subscription'),
      );
    await deps.pagerduty
      ?.event({
        dedupKey: `killswitch-subscription-${sub.id}`,
        summary: `Kill switch outbound subscription ${sub.name} switched off after ${failures} failed deliveries`,
        source: 'secret-kill-switch',
        severity: 'error',
        class: 'subscription.disabled',
        details: { subscription: sub.name, format: sub.format, failures, lastError },
        link: '',
      })
      .catch((err: Error) =>
        deps.log.warn({ err: err.message }, 'could not page about the switched-off subscription'),
      );
    const at = new Date().toISOString();
    await emit([
      eventEnvelopeSchema.parse({
        id: eventId('subscription.disabled', sub.id, at),
        type: 'subscription.disabled',
        version: EVENT_VERSION,
        occurredAt: at,
        source: 'secret-kill-switch',
        summary: `Subscription ${sub.name} switched off: ${reason}`.slice(0, 1024),
        data: { subscription: { id: sub.id, name: sub.name }, message: reason },
      }),
    ]).catch(() => undefined);
  };

  return {
    emit,

    async emitRun(summary, runUrl, final) {
      const audience = await active();
      if (audience.subs.length === 0) return { queued: 0 };
      return emitTo(audience, eventsOfRun(summary, { runUrl }, final, new Date()));
    },

    async deliverDue(subscriptionId, heartbeat) {
      const row = await subscriptionRow(deps.db, subscriptionId);
      if (!row || !row.is_active) return { active: false, delivered: 0, nextDueInMs: null };
      let sub: OutboundSubscription;
      let unsealError: string | undefined;
      try {
        sub = subscriptionOf(row, deps.keys, deps.env);
      } catch {
        // Counted as failed attempts (retried, then the breaker), not an activity that throws forever.
        sub = subscriptionOf(row, deps.keys, deps.env, false);
        unsealError = 'the subscription secret cannot be unsealed with this server key: set it again';
      }
      const transport = transportOf(sub.format);
      const refused = unsealError
        ? [{ field: 'secret', message: unsealError }]
        : deps.destinations
          ? await checkDestination(
              { url: sub.url, connection: sub.connection } as Parameters<typeof checkDestination>[0],
              { ...deps.destinations, unresolvable: 'refuse' },
            ).catch((err: Error) => [{ field: 'destination', message: err.message }])
          : [];
      const started = Date.now();
      let delivered = 0;
      const unsent: string[] = [];
      // One delivery's budget: its transport's requests in a row (jira: up to 6), each within timeoutMs;
      // at most 100 s, so a round (60 s, then its last delivery) ends within the activity's 3 minutes.
      const deliveryBudgetMs = Math.min(
        sub.timeoutMs * (transport?.requestsPerDelivery ?? 1) + 1_000,
        100_000,
      );
      const rows = await claimDue(
        deps.db,
        sub.id,
        ROUND_ROWS,
        // No delivery starts after the round's budget: the lease covers the budget and the last one.
        ROUND_BUDGET_MS + deliveryBudgetMs + 10_000,
      );
      const ok: Parameters<typeof recordDelivered>[2][number][] = [];
      const flush = async () => {
        if (ok.length === 0) return;
        await recordDelivered(deps.db, sub.id, ok.splice(0));
      };
      for (const { event, attempts } of rows) {
        heartbeat?.();
        if (Date.now() - started > ROUND_BUDGET_MS) {
          unsent.push(event.id);
          continue;
        }
        const attempt = attempts + 1;
        const t0 = performance.now();
        const result: DeliveryResult =
          refused.length > 0
            ? // Kept pending (retryable): fixing the allow-list or the DNS record lets it through; the
              // breaker switches a subscription off that stays refused.
              {
                ok: false,
                retryable: true,
                error: `${unsealError ? 'not sent' : 'destination refused'}: ${refused[0]!.field} ${refused[0]!.message}`,
              }
            : transport
              ? await transport.deliver(event, sub, AbortSignal.timeout(deliveryBudgetMs))
              : { ok: false, retryable: false, error: `no transport for format ${sub.format}` };
        const durationMs = performance.now() - t0;
        if (result.ok) {
          // Successes are recorded in batches (one statement for many); a crash before the batch is
          // written sends those events again (at least once: receivers dedupe on the event id).
          delivered += 1;
          ok.push({
            eventId: event.id,
            eventType: event.type,
            attempt,
            statusCode: result.statusCode ?? null,
            durationMs,
          });
          if (ok.length >= RECORD_BATCH) await flush();
          continue;
        }
        // A failure after successes: those reset the failure count first.
        await flush();
        const next: Parameters<typeof recordAttempt>[1]['next'] = !result.retryable
          ? { state: 'rejected' }
          : { state: 'pending', retryInMs: 0 };
        const counted = await recordAttempt(deps.db, {
          subscriptionId: sub.id,
          eventId: event.id,
          eventType: event.type,
          attempt,
          statusCode: result.statusCode ?? null,
          success: result.ok,
          durationMs,
          error: (result.error ?? 'failed').slice(0, 500),
          next,
        });
        if (counted.isActive && counted.consecutiveFailures >= counted.failureThreshold) {
          await trip(sub, counted.consecutiveFailures, result.error ?? 'failed');
          return { active: false, delivered, nextDueInMs: null };
        }
        if (next.state === 'pending') {
          // The destination is failing: the whole subscription backs off (its failures count once
          // per step: 2, 5, 10 s, then parked 1, 2, 4, 5 min), the rest of this round included.
          await postponePending(
            deps.db,
            sub.id,
            retryDelayMs(counted.consecutiveFailures, sub.retryCount, result.retryAfterMs),
          );
          unsent.length = 0;
          break;
        }
      }
      await flush();
      await releaseClaims(deps.db, sub.id, unsent);
      return { active: true, delivered, nextDueInMs: await nextDueInMs(deps.db, sub.id) };
    },

    async wakeDue() {
      const ids = await subscriptionsWithDueRows(deps.db);
      await Promise.all(ids.map(wake));
      return ids;
    },

    async close() {
      for (const t of trailing.values()) clearTimeout(t);
      trailing.clear();
      await Promise.allSettled(Object.values(deps.transports ?? {}).map((t) => t?.close?.()));
    },
  };
}

/**
 * The worker's catch-up for delivery runs: every `everyMs` it wakes each active subscription with
 * rows due (a wake lost to a crash, rows parked after their retries, a subscription re-enabled).
 */
export function startOutboundSweep(
  outbound: Outbound | undefined,
  log: Pick<Logger, 'warn'>,
  everyMs = 15_000,
): () => void {
  if (!outbound) return () => undefined;
  const timer = setInterval(() => {
    outbound.wakeDue().catch((err: Error) => log.warn({ err: err.message }, 'outbound sweep failed'));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

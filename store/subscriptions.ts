/**
 * killswitch_subscriptions (what the admin API and the inventory file manage) and the read side of
 * killswitch_event_deliveries (history, retention). The queue, the claims and the recording of
 * attempts are store/outbound.ts. The secret is sealed with the server key (associated data
 * `subscription:<id>`) before it is written and never read back here: every function returns the
 * view (`hasSecret`), never the sealed bytes.
 */
import { randomUUID } from 'node:crypto';
import type { EventFilters, EventFormat } from '../contracts/events';
import type { ServerKeys } from '../contracts/keys';
import type { Db } from '../lib/db';
import {
  allowHostsOf,
  checkDestination,
  createAllowList,
  SECRET_REQUIRED,
  type ConfigSubscription,
  type DestinationPolicy,
  type OutboundConfig,
  type SubscriptionView,
} from '../lib/subscriptions';

/** The associated data a subscription's secret is sealed with (the worker unseals with the same). */
export const subscriptionSecretAad = (id: string) => `subscription:${id}`;

/** What a create or a full update writes. */
export interface SubscriptionFields {
  name: string;
  format: EventFormat;
  url?: string | undefined;
  connection?: Record<string, unknown> | undefined;
  eventTypes: string[];
  filters: EventFilters;
  options: Record<string, unknown>;
  retryCount: number;
  timeoutMs: number;
  failureThreshold: number;
  isActive: boolean;
  /** Default false. */
  routedOnly?: boolean;
}

/** A change of the secret: a new value, or null to remove it; absent keeps it. */
export type SecretChange = { secret?: string | null };

/** Thrown when another subscription has the name already. */
export class SubscriptionNameTakenError extends Error {
  override name = 'SubscriptionNameTakenError';
  constructor(readonly subscriptionName: string) {
    super(`a subscription named ${subscriptionName} exists already`);
  }
}

interface Row {
  id: string;
  name: string;
  format: EventFormat;
  url: string | null;
  connection: Record<string, unknown> | null;
  has_secret: boolean;
  secret_env: string | null;
  event_types: string[];
  filters: EventFilters | null;
  options: Record<string, unknown> | null;
  retry_count: number;
  timeout_ms: number;
  failure_threshold: number;
  is_active: boolean;
  routed_only: boolean;
  consecutive_failures: number;
  disabled_reason: string | null;
  origin: 'api' | 'config';
  created_at: Date | string;
  updated_at: Date | string;
}

/** Every column but the sealed secret, which only says whether it is there. */
const COLUMNS = `id, name, format, url, connection, secret_sealed IS NOT NULL AS has_secret, secret_env, event_types,
  filters, options, retry_count, timeout_ms, failure_threshold, is_active, routed_only, consecutive_failures,
  disabled_reason, origin, created_at, updated_at`;

const iso = (v: Date | string) => (v instanceof Date ? v.toISOString() : new Date(v).toISOString());

function viewOf(r: Row): SubscriptionView {
  return {
    id: r.id,
    name: r.name,
    format: r.format,
    url: r.url,
    connection: r.connection,
    hasSecret: r.has_secret,
    secretEnv: r.secret_env,
    eventTypes: r.event_types,
    filters: r.filters ?? {},
    options: r.options ?? {},
    retryCount: r.retry_count,
    timeoutMs: r.timeout_ms,
    failureThreshold: r.failure_threshold,
    isActive: r.is_active,
    routedOnly: r.routed_only,
    consecutiveFailures: r.consecutive_failures,
    disabledReason: r.disabled_reason,
    origin: r.origin,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

const isUniqueViolation = (err: unknown) => (err as { code?: unknown } | null)?.code === '23505';

const json = (v: unknown) => (v === undefined || v === null ? null : JSON.stringify(v));

export async function createSubscription(
  db: Pick<Db, 'query'>,
  keys: ServerKeys,
  f: SubscriptionFields & { secret?: string; secretEnv?: string; origin?: 'api' | 'config'; id?: string },
): Promise<SubscriptionView> {
  const id = f.id ?? randomUUID();
  const sealed = f.secret ? keys.encrypt(f.secret, subscriptionSecretAad(id)) : null;
  try {
    const r = await db.query<Row>(
      `INSERT INTO killswitch_subscriptions
         (id, name, format, url, connection, secret_sealed, secret_env, event_types, filters, options,
          retry_count, timeout_ms, failure_threshold, is_active, origin, routed_only)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::text[], $9::jsonb, $10::jsonb, $11, $12, $13, $14, $15, $16)
       RETURNING ${COLUMNS}`,
      [
        id,
        f.name,
        f.format,
        f.url ?? null,
        json(f.connection),
        sealed,
        f.secretEnv ?? null,
        f.eventTypes,
        JSON.stringify(f.filters),
        JSON.stringify(f.options),
        f.retryCount,
        f.timeoutMs,
        f.failureThreshold,
        f.isActive,
        f.origin ?? 'api',
        f.routedOnly ?? false,
      ],
    );
    return viewOf(r.rows[0]!);
  } catch (err) {
    if (isUniqueViolation(err)) throw new SubscriptionNameTakenError(f.name);
    throw err;
  }
}

export async function getSubscription(db: Pick<Db, 'query'>, id: string): Promise<SubscriptionView | null> {
  const r = await db.query<Row>(`SELECT ${COLUMNS} FROM killswitch_subscriptions WHERE id = $1`, [id]);
  return r.rows[0] ? viewOf(r.rows[0]) : null;
}

export async function getSubscriptionByName(
  db: Pick<Db, 'query'>,
  name: string,
): Promise<SubscriptionView | null> {
  const r = await db.query<Row>(`SELECT ${COLUMNS} FROM killswitch_subscriptions WHERE name = $1`, [name]);
  return r.rows[0] ? viewOf(r.rows[0]) : null;
}

/** Every subscription, by name. */
export async function listSubscriptions(
  db: Pick<Db, 'query'>,
  opts: { origin?: 'api' | 'config' } = {},
): Promise<SubscriptionView[]> {
  const r = await db.query<Row>(
    `SELECT ${COLUMNS} FROM killswitch_subscriptions ${opts.origin ? 'WHERE origin = $1' : ''} ORDER BY name`,
    opts.origin ? [opts.origin] : [],
  );
  return r.rows.map(viewOf);
}

const UPDATABLE: ReadonlyArray<readonly [keyof SubscriptionFields, string, string]> = [
  ['name', 'name', ''],
  ['format', 'format', ''],
  ['url', 'url', ''],
  ['connection', 'connection', '::jsonb'],
  ['eventTypes', 'event_types', '::text[]'],
  ['filters', 'filters', '::jsonb'],
  ['options', 'options', '::jsonb'],
  ['retryCount', 'retry_count', ''],
  ['timeoutMs', 'timeout_ms', ''],
  ['failureThreshold', 'failure_threshold', ''],
  ['routedOnly', 'routed_only', ''],
];

/**
 * Changes the fields given (a key present with `undefined` clears url or connection); `secret` as
 * SecretChange says. Switching it on or off resets the failure count and the breaker's reason.
 * Returns the subscription after, or null when there is none with this id.
 */
export async function updateSubscription(
  db: Pick<Db, 'query'>,
  keys: ServerKeys,
  id: string,
  patch: Partial<SubscriptionFields> & SecretChange,
): Promise<SubscriptionView | null> {
  const sets: string[] = ['updated_at = now()'];
  const params: unknown[] = [id];
  const param = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  for (const [key, column, cast] of UPDATABLE) {
    if (!(key in patch)) continue;
    const v = patch[key];
    const value = cast === '::jsonb' ? json(v) : (v ?? null);
    sets.push(`${column} = ${param(value)}${cast}`);
  }
  if (patch.isActive !== undefined) {
    sets.push(`is_active = ${param(patch.isActive)}`);
    sets.push('consecutive_failures = 0', 'disabled_reason = NULL', 'backoff_until = NULL');
  }
  if ('secret' in patch && patch.secret !== undefined)
    sets.push(
      `secret_sealed = ${param(patch.secret === null ? null : keys.encrypt(patch.secret, subscriptionSecretAad(id)))}`,
    );
  try {
    const r = await db.query<Row>(
      `UPDATE killswitch_subscriptions SET ${sets.join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`,
      params,
    );
    return r.rows[0] ? viewOf(r.rows[0]) : null;
  } catch (err) {
    if (isUniqueViolation(err)) throw new SubscriptionNameTakenError(String(patch.name));
    throw err;
  }
}

/** Switches a subscription on or off; either way its failure count starts again from 0. */
export async function setSubscriptionActive(
  db: Pick<Db, 'query'>,
  id: string,
  active: boolean,
  reason?: string,
): Promise<SubscriptionView | null> {
  const r = await db.query<Row>(
    `UPDATE killswitch_subscriptions
        SET is_active = $2, consecutive_failures = 0, disabled_reason = $3, backoff_until = NULL, updated_at = now()
      WHERE id = $1 RETURNING ${COLUMNS}`,
    [id, active, active ? null : (reason ?? null)],
  );
  return r.rows[0] ? viewOf(r.rows[0]) : null;
}

/** Deletes a subscription (its queue rows go with it) and its delivery history. */
export async function deleteSubscription(db: Pick<Db, 'query'>, id: string): Promise<boolean> {
  const r = await db.query<{ id: string }>(
    `WITH d AS (DELETE FROM killswitch_event_deliveries WHERE subscription_id = $1)
     DELETE FROM killswitch_subscriptions WHERE id = $1 RETURNING id`,
    [id],
  );
  return r.rows.length > 0;
}

/** A config subscription with its secret read from the environment. */
export type ResolvedConfigSubscription = SubscriptionFields & { secret?: string; secretEnv?: string };

/**
 * Makes the origin='config' rows exactly `subs`, by name, in one transaction: a row keeps its id
 * (and so its queue and history) while its name stays in the file; a name gone from the file is
 * deleted; a state the breaker left (switched off, failures) starts again. A name an API-created
 * subscription holds is refused: the file never takes over a row the API owns.
 */
export async function replaceConfigSubscriptions(
  db: Pick<Db, 'withSession'>,
  keys: ServerKeys,
  subs: readonly ResolvedConfigSubscription[],
): Promise<{ created: string[]; updated: string[]; removed: string[] }> {
  return db.withSession(async (s) => {
    await s.query('BEGIN');
    try {
      // Two ingress processes starting at once replace in turn.
      await s.query(`SELECT pg_advisory_xact_lock(hashtext('killswitch_subscriptions:config'))`);
      const existing = await s.query<{ id: string; name: string; origin: string }>(
        'SELECT id, name, origin FROM killswitch_subscriptions WHERE origin = $1 OR name = ANY($2::text[])',
        ['config', subs.map((x) => x.name)],
      );
      const taken = existing.rows.filter((r) => r.origin !== 'config').map((r) => r.name);
      if (taken.length > 0)
        throw new Error(
          `subscriptions ${taken.join(', ')} of the inventory file have the name of a subscription created through the API; rename one or delete the API's (DELETE /admin/subscriptions/:id)`,
        );
      const byName = new Map(existing.rows.map((r) => [r.name, r.id]));
      const keep = new Set(subs.map((x) => x.name));
      const removed = existing.rows.filter((r) => !keep.has(r.name)).map((r) => r.name);
      if (removed.length > 0)
        await s.query(
          `WITH d AS (DELETE FROM killswitch_event_deliveries WHERE subscription_id = ANY($1::text[]))
           DELETE FROM killswitch_subscriptions WHERE id = ANY($1::text[])`,
          [existing.rows.filter((r) => !keep.has(r.name)).map((r) => r.id)],
        );
      const created: string[] = [];
      const updated: string[] = [];
      for (const f of subs) {
        const id = byName.get(f.name) ?? randomUUID();
        (byName.has(f.name) ? updated : created).push(f.name);
        await s.query(
          `INSERT INTO killswitch_subscriptions
             (id, name, format, url, connection, secret_sealed, secret_env, event_types, filters, options,
              retry_count, timeout_ms, failure_threshold, is_active, routed_only, origin)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::text[], $9::jsonb, $10::jsonb, $11, $12, $13, $14, $15, 'config')
           ON CONFLICT (id) DO UPDATE SET
             format = EXCLUDED.format, url = EXCLUDED.url, connection = EXCLUDED.connection,
             secret_sealed = EXCLUDED.secret_sealed, secret_env = EXCLUDED.secret_env,
             event_types = EXCLUDED.event_types, filters = EXCLUDED.filters, options = EXCLUDED.options,
             retry_count = EXCLUDED.retry_count, timeout_ms = EXCLUDED.timeout_ms,
             failure_threshold = EXCLUDED.failure_threshold, is_active = EXCLUDED.is_active,
             routed_only = EXCLUDED.routed_only, consecutive_failures = 0, disabled_reason = NULL,
             backoff_until = NULL, updated_at = now()`,
          [
            id,
            f.name,
            f.format,
            f.url ?? null,
            json(f.connection),
            f.secret ? keys.encrypt(f.secret, subscriptionSecretAad(id)) : null,
            f.secretEnv ?? null,
            f.eventTypes,
            JSON.stringify(f.filters),
            JSON.stringify(f.options),
            f.retryCount,
            f.timeoutMs,
            f.failureThreshold,
            f.isActive,
            f.routedOnly ?? false,
          ],
        );
      }
      await s.query('COMMIT');
      return { created, updated, removed };
    } catch (err) {
      await s.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

/**
 * The inventory's `subscriptions:` checked as the API checks a body (destinations resolved, each
 * secretEnv set) and written as the origin='config' rows. Called once at the ingress's start; a
 * problem stops the start with every bad field named. A host name that does not resolve now is let
 * through (DNS may be down at start); the delivery checks the address it connects to.
 */
export async function syncConfigSubscriptions(
  db: Pick<Db, 'withSession'>,
  keys: ServerKeys,
  inventory: { subscriptions: readonly ConfigSubscription[]; outbound: Pick<OutboundConfig, 'allowHosts'> },
  env: Record<string, string | undefined>,
  opts: { lookup?: DestinationPolicy['lookup'] } = {},
): Promise<{ created: string[]; updated: string[]; removed: string[] }> {
  const policy: DestinationPolicy = {
    allow: createAllowList(allowHostsOf(inventory.outbound.allowHosts, env.OUTBOUND_ALLOW_HOSTS)),
    unresolvable: 'accept',
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
  };
  const problems: string[] = [];
  const resolved: ResolvedConfigSubscription[] = [];
  for (const [i, sub] of inventory.subscriptions.entries()) {
    const at = `subscriptions[${i}].`;
    for (const p of await checkDestination(sub, policy, at)) problems.push(`  ${p.field}: ${p.message}`);
    const { secretEnv, ...fields } = sub;
    const secret = secretEnv ? env[secretEnv] : undefined;
    if (secretEnv && !secret) problems.push(`  ${at}secretEnv: environment variable ${secretEnv} is not set`);
    else if (SECRET_REQUIRED.has(sub.format) && !secret)
      problems.push(`  ${at}secretEnv: the ${sub.format} format needs a token`);
    resolved.push({ ...fields, ...(secret ? { secret, secretEnv } : {}) });
  }
  if (problems.length > 0) throw new Error(`inventory subscriptions are invalid:\n${problems.join('\n')}`);
  return replaceConfigSubscriptions(db, keys, resolved);
}

/**
 * Every subscription an owning system's routing names must exist (of the inventory file or the API):
 * checked at the ingress's start, after the file's subscriptions are written; a problem stops the
 * start with each bad field named.
 */
export async function checkRoutedSubscriptions(
  db: Pick<Db, 'query'>,
  systems: ReadonlyArray<{ routing?: { subscriptions: readonly string[] } | undefined }>,
): Promise<void> {
  const names = [...new Set(systems.flatMap((s) => s.routing?.subscriptions ?? []))];
  if (names.length === 0) return;
  const r = await db.query<{ name: string }>(
    'SELECT name FROM killswitch_subscriptions WHERE name = ANY($1::text[])',
    [names],
  );
  const known = new Set(r.rows.map((x) => x.name));
  const problems = systems.flatMap((s, i) =>
    (s.routing?.subscriptions ?? []).flatMap((name, j) =>
      known.has(name)
        ? []
        : [
            `  systems[${i}].routing.subscriptions[${j}]: no subscription named ${name} (declare it under subscriptions: or create it with POST /admin/subscriptions)`,
          ],
    ),
  );
  if (problems.length > 0) throw new Error(`inventory routing is invalid:\n${problems.join('\n')}`);
}

// ---------------------------------------------------------------------------------------------
// killswitch_event_deliveries: the history (recording attempts is store/outbound.ts).

export interface DeliveryAttempt {
  id: string;
  eventId: string;
  eventType: string;
  attempt: number;
  statusCode: number | null;
  success: boolean;
  durationMs: number;
  error: string | null;
  at: string;
}

/** One attempt, as it happened (the history only; the queue is not touched). Returns its id. */
export async function insertDeliveryAttempt(
  db: Pick<Db, 'query'>,
  a: Omit<DeliveryAttempt, 'id' | 'at'> & { subscriptionId: string; at?: Date },
): Promise<string> {
  const r = await db.query<{ id: string }>(
    `INSERT INTO killswitch_event_deliveries
       (subscription_id, event_id, event_type, attempt, status_code, success, duration_ms, error, at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9::timestamptz, now())) RETURNING id::text AS id`,
    [
      a.subscriptionId,
      a.eventId,
      a.eventType,
      a.attempt,
      a.statusCode,
      a.success,
      Math.round(a.durationMs),
      a.error,
      a.at ?? null,
    ],
  );
  return r.rows[0]!.id;
}

/** A subscription's attempts newest first, at most `limit`, below the id `before` when given. */
export async function listDeliveryAttempts(
  db: Pick<Db, 'query'>,
  subscriptionId: string,
  opts: { limit: number; before?: string },
): Promise<DeliveryAttempt[]> {
  const r = await db.query<{
    id: string;
    event_id: string;
    event_type: string;
    attempt: number;
    status_code: number | null;
    success: boolean;
    duration_ms: number;
    error: string | null;
    at: Date | string;
  }>(
    `SELECT id::text AS id, event_id, event_type, attempt, status_code, success, duration_ms, error, at
       FROM killswitch_event_deliveries
      WHERE subscription_id = $1 ${opts.before ? 'AND id < $3::bigint' : ''}
      ORDER BY id DESC LIMIT $2`,
    opts.before ? [subscriptionId, opts.limit, opts.before] : [subscriptionId, opts.limit],
  );
  return r.rows.map((x) => ({
    id: x.id,
    eventId: x.event_id,
    eventType: x.event_type,
    attempt: x.attempt,
    statusCode: x.status_code,
    success: x.success,
    durationMs: x.duration_ms,
    error: x.error,
    at: iso(x.at),
  }));
}

/** Deletes the attempts older than `retentionMs` (outbound.deliveryRetention); returns how many. */
export async function deleteDeliveryAttemptsOlderThan(
  db: Pick<Db, 'query'>,
  retentionMs: number,
): Promise<number> {
  const r = await db.query<{ n: number }>(
    `WITH d AS (
       DELETE FROM killswitch_event_deliveries WHERE at < now() - ($1::bigint * interval '1 millisecond') RETURNING 1
     ) SELECT count(*)::int AS n FROM d`,
    [Math.max(0, Math.round(retentionMs))],
  );
  return r.rows[0]?.n ?? 0;
}

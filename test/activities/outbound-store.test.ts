/**
 * The outbound outbox on the embedded database (a private PGlite, so nothing here touches the
 * shared test database): emission is idempotent and ordered, a claim leases its rows, an attempt
 * moves its row and counts the subscription's failures, retention keeps what is undelivered.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVENT_VERSION,
  eventEnvelopeSchema,
  type EventType,
  type KillSwitchEvent,
} from '../../contracts/events';
import { createPgliteDb, migrate, type Db } from '../../lib/db';
import {
  claimDue,
  deleteOutboundOlderThan,
  enqueueEvents,
  nextDueInMs,
  recordAttempt,
  subscriptionsWithDueRows,
  tripSubscription,
} from '../../store/outbound';

let db: Db;
const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-outbox-'));

beforeAll(async () => {
  db = await createPgliteDb(dir);
  await migrate(db);
  await db.query(
    `INSERT INTO killswitch_subscriptions (id, name, format, url, event_types) VALUES
       ('s1', 'one', 'json', 'https://a.example/h', '{*}'), ('s2', 'two', 'json', 'https://b.example/h', '{*}')`,
  );
});
afterAll(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

const event = (id: string, type: EventType = 'run.contained'): KillSwitchEvent =>
  eventEnvelopeSchema.parse({
    id,
    type,
    version: EVENT_VERSION,
    occurredAt: new Date().toISOString(),
    source: 'secret-kill-switch',
    run: { workflowId: 'wf-1' },
    summary: id,
    data: {},
  });

describe('outbound outbox', () => {
  it('queues each event once per subscription, in emission order, for active subscriptions only', async () => {
    const events = ['e3', 'e1', 'e2'].map((id) => event(id));
    expect(
      (
        await enqueueEvents(
          db,
          events.map((e) => ({ event: e, subscriptionIds: ['s1', 's2'] })),
        )
      ).sort(),
    ).toEqual(['s1', 's2']);
    // A retried emission stores and queues nothing again.
    expect(
      await enqueueEvents(
        db,
        events.map((e) => ({ event: e, subscriptionIds: ['s1', 's2'] })),
      ),
    ).toEqual([]);
    const claimed = await claimDue(db, 's1', 10, 60_000);
    expect(claimed.map((r) => r.event.id)).toEqual(['e3', 'e1', 'e2']);
    // Leased: a second claim gets nothing until the lease ends.
    expect(await claimDue(db, 's1', 10, 60_000)).toEqual([]);
    expect(await subscriptionsWithDueRows(db)).toEqual(['s2']);
  });

  it('moves a row on per attempt and counts consecutive failures, reset by a success', async () => {
    const fail = (eventId: string, attempt: number) =>
      recordAttempt(db, {
        subscriptionId: 's1',
        eventId,
        eventType: 'run.contained',
        attempt,
        statusCode: 503,
        success: false,
        durationMs: 5,
        error: 'HTTP 503',
        next: { state: 'pending', retryInMs: 2_000 },
      });
    expect((await fail('e3', 1)).consecutiveFailures).toBe(1);
    expect((await fail('e1', 1)).consecutiveFailures).toBe(2);
    const due = await nextDueInMs(db, 's1');
    expect(due).toBeGreaterThan(0);
    expect(due).toBeLessThanOrEqual(2_000);
    const ok = await recordAttempt(db, {
      subscriptionId: 's1',
      eventId: 'e2',
      eventType: 'run.contained',
      attempt: 1,
      statusCode: 200,
      success: true,
      durationMs: 5,
      error: null,
      next: { state: 'delivered' },
    });
    expect(ok).toMatchObject({ consecutiveFailures: 0, isActive: true });
    const states = await db.query<{ event_id: string; state: string; attempts: number }>(
      "SELECT event_id, state, attempts FROM killswitch_event_queue WHERE subscription_id = 's1' ORDER BY seq",
    );
    expect(states.rows).toEqual([
      { event_id: 'e3', state: 'pending', attempts: 1 },
      { event_id: 'e1', state: 'pending', attempts: 1 },
      { event_id: 'e2', state: 'delivered', attempts: 1 },
    ]);
    expect(await tripSubscription(db, 's1', 'test')).toBe(true);
    expect(await tripSubscription(db, 's1', 'test')).toBe(false);
    // A switched-off subscription gets no new rows.
    expect(await enqueueEvents(db, [{ event: event('e4'), subscriptionIds: ['s1'] }])).toEqual([]);
  });

  it('retention deletes attempts and finished events, never a pending one', async () => {
    await db.query("UPDATE killswitch_event_queue SET state = 'delivered' WHERE subscription_id = 's2'");
    // Nothing pending is "nothing due" (null), not "due now" (0): the delivery run must not spin.
    expect(await nextDueInMs(db, 's2')).toBeNull();
    expect(await nextDueInMs(db, 'no-such-subscription')).toBeNull();
    const swept = await deleteOutboundOlderThan(db, 0);
    expect(swept.attempts).toBe(3);
    // e1 and e3 are still pending for s1: kept; e2 (done everywhere) and e4 (queued nowhere) go.
    const left = await db.query<{ id: string }>('SELECT id FROM killswitch_events ORDER BY id');
    expect(left.rows.map((r) => r.id)).toEqual(['e1', 'e3']);
  });

  it("counts a rule's execution once per event, however often the event is emitted, and stores an event only a rule matched", async () => {
    await db.query(
      `INSERT INTO killswitch_rules (id, name, trigger, actions) VALUES ('r1', 'rule-one', '{run.*}', '{one}'), ('r2', 'rule-two', '{*}', '{gone}')`,
    );
    const count = async (id: string) =>
      (
        await db.query<{ n: number; t: string | null; at: Date | null }>(
          'SELECT execution_count::int AS n, last_event_type AS t, last_executed_at AS at FROM killswitch_rules WHERE id = $1',
          [id],
        )
      ).rows[0]!;
    const a = event('r-a', 'run.started');
    const b = event('r-b', 'run.contained');
    const items = [
      { event: a, subscriptionIds: ['s1'], ruleIds: ['r1'] },
      { event: b, subscriptionIds: ['s1'], ruleIds: ['r1'] },
    ];
    await enqueueEvents(db, items);
    await enqueueEvents(db, items);
    expect(await count('r1')).toMatchObject({ n: 2, t: 'run.contained' });
    expect((await count('r1')).at).not.toBeNull();
    // A rule whose action names no active subscription still fired: the event is kept and counted.
    await enqueueEvents(db, [{ event: event('r-c', 'run.escalated'), subscriptionIds: [], ruleIds: ['r2'] }]);
    expect(await count('r2')).toMatchObject({ n: 1, t: 'run.escalated' });
    expect((await db.query(`SELECT 1 FROM killswitch_events WHERE id = 'r-c'`)).rows).toHaveLength(1);
    expect(await count('r1')).toMatchObject({ n: 2 });
  });
});

/** The subscription-wide backoff and how long a dead destination lasts before its breaker trips. */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createOutbound, retryDelayMs } from '../../activities/outbound';
import { EVENT_VERSION, eventEnvelopeSchema } from '../../contracts/events';
import { createPgliteDb, migrate } from '../../lib/db';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { enqueueEvents } from '../../store/outbound';

describe('outbound backoff', () => {
  it('retries after 2, 5, 10 s, then parks at 1 min doubling to 5 min, never below Retry-After', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => retryDelayMs(n, 3))).toEqual([
      2_000, 5_000, 10_000, 60_000, 120_000, 240_000, 300_000, 300_000,
    ]);
    expect(retryDelayMs(1, 3, 30_000)).toBe(30_000);
    expect(retryDelayMs(1, 0)).toBe(60_000);
  });

  it('with the defaults (3 retries, breaker at 10 failures) a destination down for 2 minutes is never switched off', () => {
    // Failures 1..9 each wait their step before the next attempt; the 10th trips the breaker.
    const untilTrip = [1, 2, 3, 4, 5, 6, 7, 8, 9].reduce((ms, n) => ms + retryDelayMs(n, 3), 0);
    expect(untilTrip).toBeGreaterThan(20 * 60_000);
    const withinTwoMinutes = [1, 2, 3, 4, 5, 6, 7, 8, 9].filter(
      (_, i, all) => all.slice(0, i).reduce((ms, n) => ms + retryDelayMs(n, 3), 0) < 120_000,
    ).length;
    expect(withinTwoMinutes).toBeLessThan(10);
  });
});

describe('a failing subscription backs off as a whole, new events included', () => {
  it('an event queued while the subscription backs off waits with the others: no attempt, no wake, no extra failure', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-backoff-'));
    const db = await createPgliteDb(dir);
    const hits: string[] = [];
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        hits.push((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: string }).id);
        res.writeHead(503).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      await migrate(db);
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      await db.query(
        `INSERT INTO killswitch_subscriptions (id, name, format, url, event_types) VALUES ('s1', 'down', 'json', $1, '{*}')`,
        [url],
      );
      const outbound = createOutbound({
        db,
        keys: createServerKeys(newServerKey()),
        env: {},
        log: { warn: () => undefined, info: () => undefined },
      });
      const event = (id: string) =>
        eventEnvelopeSchema.parse({
          id,
          type: 'run.contained',
          version: EVENT_VERSION,
          occurredAt: new Date().toISOString(),
          source: 'secret-kill-switch',
          summary: id,
          data: {},
        });
      const failures = async () =>
        (
          await db.query<{ n: number }>(
            `SELECT consecutive_failures AS n FROM killswitch_subscriptions WHERE id = 's1'`,
          )
        ).rows[0]!.n;

      expect(await enqueueEvents(db, [{ event: event('e1'), subscriptionIds: ['s1'] }])).toEqual(['s1']);
      const first = await outbound.deliverDue('s1');
      expect(hits).toEqual(['e1']);
      expect(await failures()).toBe(1);
      expect(first.nextDueInMs).toBeGreaterThan(1_000);

      // A busy system keeps emitting: the new event is not due, its subscription not woken.
      expect(await enqueueEvents(db, [{ event: event('e2'), subscriptionIds: ['s1'] }])).toEqual([]);
      const second = await outbound.deliverDue('s1');
      expect(second).toMatchObject({ active: true, delivered: 0 });
      expect(second.nextDueInMs).toBeGreaterThan(1_000);
      expect(hits).toEqual(['e1']);
      expect(await failures()).toBe(1);

      // The backoff over, the next round tries again (one attempt: it backs off again at once).
      await db.query(
        `UPDATE killswitch_event_queue SET next_attempt_at = now() WHERE subscription_id = 's1'`,
      );
      await db.query(`UPDATE killswitch_subscriptions SET backoff_until = now() WHERE id = 's1'`);
      await outbound.deliverDue('s1');
      expect(hits).toHaveLength(2);
      expect(await failures()).toBe(2);

      // Switched back on (or a success), new events are due at once again.
      await db.query(`UPDATE killswitch_subscriptions SET backoff_until = NULL WHERE id = 's1'`);
      expect(await enqueueEvents(db, [{ event: event('e3'), subscriptionIds: ['s1'] }])).toEqual(['s1']);
      await outbound.close();
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

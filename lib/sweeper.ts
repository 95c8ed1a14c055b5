/**
 * Housekeeping the worker process runs hourly: sealed evidence past its TTL, and delivery-ledger
 * entries older than the replay window (30 days: longer than any sender's redelivery horizon). It
 * also reports deliveries claimed and never answered for over ten minutes: their ingress died
 * mid-way and their sender has not re-sent them (GitHub, for one, never redelivers by itself), so a
 * human should ask the sender to redeliver them. Their bodies are not kept (they hold secrets). (An
 * ingress that died in the moment between sending its 2xx and storing it leaves such a row too:
 * its run exists, and a redelivery only names it again.)
 */
import type { Db } from './db';
import type { EvidenceStore } from './evidence';
import type { Logger } from './logger';

export const DELIVERY_RETENTION_DAYS = 30;

export const ABANDONED_AFTER_MINUTES = 10;

export interface SweepResult {
  evidence: number;
  deliveries: number;
  /** Deliveries claimed, never answered and not re-sent since (newest first, at most 50). */
  abandoned: Array<{ source: string; deliveryId: string; receivedAt: string }>;
}

export async function sweepOnce(db: Db, evidence: EvidenceStore): Promise<SweepResult> {
  const purged = await evidence.purgeExpired();
  const r = await db.query<{ delivery_id: string }>(
    `DELETE FROM killswitch_deliveries WHERE received_at < now() - make_interval(days => $1::int) RETURNING delivery_id`,
    [DELIVERY_RETENTION_DAYS],
  );
  const a = await db.query<{ source: string; delivery_id: string; received_at: Date }>(
    `SELECT source, delivery_id, received_at FROM killswitch_deliveries
      WHERE status IS NULL AND received_at < now() - make_interval(mins => $1::int)
      ORDER BY received_at DESC LIMIT 50`,
    [ABANDONED_AFTER_MINUTES],
  );
  const abandoned = a.rows.map((x) => ({ source: x.source, deliveryId: x.delivery_id, receivedAt: new Date(x.received_at).toISOString() }));
  return { evidence: purged, deliveries: r.rows.length, abandoned };
}

export function startSweeper(db: Db, evidence: EvidenceStore, logger: Logger, everyMs = 3_600_000): () => void {
  const run = () => {
    sweepOnce(db, evidence)
      .then((n) => {
        if (n.evidence || n.deliveries) logger.info({ purged: { evidence: n.evidence, deliveries: n.deliveries } }, 'sweep');
        if (n.abandoned.length > 0) {
          logger.warn(
            { abandoned: n.abandoned },
            `${n.abandoned.length} deliveries were claimed but never answered and not re-sent: their sender most likely got no 2xx; ask it to redeliver them (a redelivery is idempotent)`,
          );
        }
      })
      .catch((err) => logger.warn({ err }, 'sweep failed'));
  };
  run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

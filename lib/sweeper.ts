/**
 * Housekeeping the worker process runs hourly: sealed evidence past its TTL, and delivery-ledger
 * entries older than the replay window (30 days: longer than any sender's redelivery horizon).
 */
import type { Db } from './db';
import type { EvidenceStore } from './evidence';
import type { Logger } from './logger';

export const DELIVERY_RETENTION_DAYS = 30;

export async function sweepOnce(db: Db, evidence: EvidenceStore): Promise<{ evidence: number; deliveries: number }> {
  const purged = await evidence.purgeExpired();
  const r = await db.query<{ delivery_id: string }>(
    `DELETE FROM killswitch_deliveries WHERE received_at < now() - make_interval(days => $1::int) RETURNING delivery_id`,
    [DELIVERY_RETENTION_DAYS],
  );
  return { evidence: purged, deliveries: r.rows.length };
}

export function startSweeper(db: Db, evidence: EvidenceStore, logger: Logger, everyMs = 3_600_000): () => void {
  const run = () => {
    sweepOnce(db, evidence)
      .then((n) => (n.evidence || n.deliveries ? logger.info({ purged: n }, 'sweep') : undefined))
      .catch((err) => logger.warn({ err }, 'sweep failed'));
  };
  run();
  const timer = setInterval(run, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

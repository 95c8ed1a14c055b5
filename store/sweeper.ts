/**
 * Housekeeping the worker process runs hourly: sealed evidence past its TTL, and delivery-ledger
 * entries older than the replay window (30 days: longer than any sender's redelivery horizon). It
 * also reports deliveries claimed and never answered for over ten minutes: their ingress died
 * mid-way and their sender has not re-sent them (GitHub, for one, never redelivers by itself), so a
 * human should ask the sender to redeliver them. Their bodies are not kept (they hold secrets). (An
 * ingress that died in the moment between sending its 2xx and storing it leaves such a row too:
 * its run exists, and a redelivery only names it again.)
 */
import type { Db } from '../lib/db';
import type { EvidenceStore } from '../lib/evidence';
import type { Logger } from '../lib/logger';
import { deleteDeliveriesOlderThan, unansweredDeliveries } from './deliveries';
import { deleteOutboundOlderThan } from './outbound';

export const DELIVERY_RETENTION_DAYS = 30;

export const ABANDONED_AFTER_MINUTES = 10;

export interface SweepResult {
  evidence: number;
  deliveries: number;
  /** Outbound delivery attempts and delivered events past their retention (outbound.deliveryRetention). */
  outbound: { attempts: number; events: number };
  /** Deliveries claimed, never answered and not re-sent since (newest first, at most 50). */
  abandoned: Array<{ source: string; deliveryId: string; receivedAt: string }>;
}

export async function sweepOnce(
  db: Pick<Db, 'query'>,
  evidence: EvidenceStore,
  outboundRetentionMs = 30 * 86_400_000,
): Promise<SweepResult> {
  const purged = await evidence.purgeExpired();
  const deliveries = await deleteDeliveriesOlderThan(db, DELIVERY_RETENTION_DAYS);
  const abandoned = await unansweredDeliveries(db, ABANDONED_AFTER_MINUTES);
  const outbound = await deleteOutboundOlderThan(db, outboundRetentionMs);
  return { evidence: purged, deliveries, abandoned, outbound };
}

export function startSweeper(
  db: Db,
  evidence: EvidenceStore,
  logger: Logger,
  everyMs = 3_600_000,
  outboundRetentionMs?: number,
): () => void {
  const run = () => {
    sweepOnce(db, evidence, outboundRetentionMs)
      .then((n) => {
        if (n.evidence || n.deliveries || n.outbound.attempts || n.outbound.events)
          logger.info(
            { purged: { evidence: n.evidence, deliveries: n.deliveries, outbound: n.outbound } },
            'sweep',
          );
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

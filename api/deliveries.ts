/**
 * Delivery-id dedupe that survives a restart, with no crash window. The first request with a
 * (source, delivery id) claims it; once its runs are started (or joined) the answer is stored and a
 * re-delivery gets it back. A claim with no stored answer is *unfinished*: its first request may
 * still be running, or the process died somewhere between the claim and the answer (a SIGKILL
 * throws nothing). Either way a re-delivery processes it again, idempotently (the dispatcher joins
 * the credential's run, or answers the finished run that already holds the detection), so every
 * delivery answered 2xx has its run, and a re-send after any crash ends in exactly one run.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../lib/db';

export type Claim =
  /** First sight of this delivery id. */
  | { kind: 'new' }
  /** Claimed before and never answered (in flight elsewhere, or its process died): process it again, idempotently. */
  | { kind: 'unfinished'; receivedAt: Date }
  /** Answered before: the stored answer. */
  | { kind: 'answered'; status: number; response: unknown };

export interface DeliveryLedger {
  claim(source: string, deliveryId: string): Promise<Claim>;
  /** Stores the answer; the first answer stored wins (a concurrent re-delivery answers the same runs). */
  complete(source: string, deliveryId: string, status: number, response: unknown): Promise<void>;
  release(source: string, deliveryId: string): Promise<void>;
}

/**
 * The ledger's key for a delivery id. Ids derived from a body (GitGuardian's action, a custom
 * sender's dedupe path) are the sender's strings: one carrying U+0000, which PostgreSQL text cannot
 * hold, or an unreasonably long one is keyed by its SHA-256 instead, so it still dedupes.
 */
export function ledgerKey(deliveryId: string): string {
  return deliveryId.includes('\u0000') || deliveryId.length > 512 ? `sha256:${createHash('sha256').update(deliveryId).digest('hex')}` : deliveryId;
}

export function createDeliveryLedger(db: Db): DeliveryLedger {
  return {
    async claim(source, rawId) {
      const deliveryId = ledgerKey(rawId);
      // Two statements, so a row released (deleted) between them is simply claimed on the next turn.
      for (;;) {
        const inserted = await db.query(
          `INSERT INTO killswitch_deliveries (source, delivery_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING delivery_id`,
          [source, deliveryId],
        );
        if (inserted.rows.length === 1) return { kind: 'new' };
        const r = await db.query<{ status: number | null; response: unknown; received_at: Date }>(
          'SELECT status, response, received_at FROM killswitch_deliveries WHERE source = $1 AND delivery_id = $2',
          [source, deliveryId],
        );
        const row = r.rows[0];
        if (!row) continue;
        if (row.status === null) return { kind: 'unfinished', receivedAt: new Date(row.received_at) };
        return { kind: 'answered', status: row.status, response: row.response ?? null };
      }
    },
    async complete(source, rawId, status, response) {
      const deliveryId = ledgerKey(rawId);
      await db.query('UPDATE killswitch_deliveries SET status = $3, response = $4::jsonb WHERE source = $1 AND delivery_id = $2 AND status IS NULL', [
        source,
        deliveryId,
        status,
        // jsonb cannot hold U+0000; an answer may echo a sender's string that carries one.
        JSON.stringify(response ?? null).replace(/\\u0000/g, '\\ufffd'),
      ]);
    },
    async release(source, rawId) {
      await db.query('DELETE FROM killswitch_deliveries WHERE source = $1 AND delivery_id = $2 AND status IS NULL', [source, ledgerKey(rawId)]);
    },
  };
}

/** Runtime on/off switches for sources, persisted so they survive restarts; cached briefly. */
export interface SourceSwitches {
  enabled(source: string, configured: boolean): Promise<boolean>;
  set(source: string, enabled: boolean, by: string): Promise<void>;
  list(): Promise<Array<{ source: string; enabled: boolean; changedBy: string; changedAt: string }>>;
}

export function createSourceSwitches(db: Db, ttlMs = 5000): SourceSwitches {
  let cache: { at: number; map: Map<string, boolean> } | undefined;
  const load = async () => {
    if (cache && Date.now() - cache.at < ttlMs) return cache.map;
    const r = await db.query<{ source: string; enabled: boolean }>('SELECT source, enabled FROM killswitch_source_state');
    cache = { at: Date.now(), map: new Map(r.rows.map((x) => [x.source, x.enabled])) };
    return cache.map;
  };
  return {
    async enabled(source, configured) {
      const override = (await load()).get(source);
      return override ?? configured;
    },
    async set(source, enabled, by) {
      await db.query(
        `INSERT INTO killswitch_source_state (source, enabled, changed_by, changed_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (source) DO UPDATE SET enabled = EXCLUDED.enabled, changed_by = EXCLUDED.changed_by, changed_at = now()`,
        [source, enabled, by],
      );
      cache = undefined;
    },
    async list() {
      const r = await db.query<{ source: string; enabled: boolean; changed_by: string; changed_at: Date }>(
        'SELECT source, enabled, changed_by, changed_at FROM killswitch_source_state ORDER BY source',
      );
      return r.rows.map((x) => ({ source: x.source, enabled: x.enabled, changedBy: x.changed_by, changedAt: new Date(x.changed_at).toISOString() }));
    },
  };
}

/**
 * Delivery-id dedupe that survives a restart: the first request with a (source, delivery id)
 * claims it; a re-delivery gets the stored answer back instead of being processed again. A claim
 * whose processing failed is released, so the sender's retry is processed.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../lib/db';

export type Claim = { kind: 'new' } | { kind: 'seen'; status: number | null; response: unknown };

export interface DeliveryLedger {
  claim(source: string, deliveryId: string): Promise<Claim>;
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
      const inserted = await db.query(
        `INSERT INTO killswitch_deliveries (source, delivery_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING delivery_id`,
        [source, deliveryId],
      );
      if (inserted.rows.length === 1) return { kind: 'new' };
      const r = await db.query<{ status: number | null; response: unknown }>(
        'SELECT status, response FROM killswitch_deliveries WHERE source = $1 AND delivery_id = $2',
        [source, deliveryId],
      );
      return { kind: 'seen', status: r.rows[0]?.status ?? null, response: r.rows[0]?.response ?? null };
    },
    async complete(source, rawId, status, response) {
      const deliveryId = ledgerKey(rawId);
      await db.query('UPDATE killswitch_deliveries SET status = $3, response = $4::jsonb WHERE source = $1 AND delivery_id = $2', [
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

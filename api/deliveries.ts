/**
 * Delivery-id dedupe that survives a restart, with no crash window. The first request with a
 * (source, delivery id) claims it, and the same statement writes what the delivery's runs need
 * before they are signalled (sealed evidence, sighting rows): one round trip, one transaction, so
 * a claim never exists without its writes. Once its runs are started (or joined) the ingress
 * answers, then stores the answer, which a re-delivery gets back. A claim with no stored answer is
 * *unfinished*: its first request may still be running, or the process died somewhere between the
 * claim and storing the answer (a SIGKILL throws nothing; the sender may or may not have had its
 * 2xx). Either way a re-delivery processes it again, idempotently (the dispatcher joins the
 * credential's run, or answers the finished run that already holds the detection), so every
 * delivery answered 2xx has its run, and a re-send after any crash ends in exactly one run.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../lib/db';
import type { DeliveryWrites } from '../lib/dispatch';

export type Claim =
  /** First sight of this delivery id; its writes are committed with the claim. */
  | {
      kind: 'new';
      /** Workflow ids whose evidence this claim stored (a run already holding a value keeps its own). */
      sealed: string[];
    }
  /** Claimed before and never answered (in flight elsewhere, or its process died): process it again, idempotently. */
  | { kind: 'unfinished'; receivedAt: Date }
  /** Answered before: the stored answer. */
  | { kind: 'answered'; status: number; response: unknown };

export interface DeliveryLedger {
  /** Claims the delivery id; when the claim is new, the writes are made in the same statement (none otherwise). */
  claim(source: string, deliveryId: string, writes?: DeliveryWrites): Promise<Claim>;
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
    async claim(source, rawId, writes) {
      const deliveryId = ledgerKey(rawId);
      const evidence = (writes?.evidence ?? []).map((e) => ({ workflow_id: e.workflowId, fingerprint: e.fingerprint, sealed: e.sealed.toString('base64'), ttl_hours: e.ttlHours }));
      const sightings = (writes?.sightings ?? []).map((r) => ({
        workflow_id: r.workflowId,
        detection_id: r.detectionId,
        source: r.source,
        scanner: r.scanner,
        location: r.location,
        validity: r.validity,
        received_at: r.receivedAt,
      }));
      // One statement: the claim, and only if it is new, the evidence and the sightings. `prior` reads
      // the statement's snapshot, so it sees a row committed before it and never the one it inserts.
      // A row committed (or released) by a concurrent request while this one waited on it is seen by
      // neither: the next turn of the loop reads it. Rows are inserted in key order (claim, evidence,
      // sightings, each sorted), so two deliveries naming the same credentials in another order wait
      // on each other instead of deadlocking.
      for (;;) {
        const r = await db.query<{ claimed: boolean; sealed: string[]; status: number | null; response: unknown; received_at: Date | null }>(
          `WITH claim AS (
             INSERT INTO killswitch_deliveries (source, delivery_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING delivery_id
           ), prior AS (
             SELECT status, response, received_at FROM killswitch_deliveries WHERE source = $1 AND delivery_id = $2
           ), evidence AS (
             INSERT INTO killswitch_evidence (workflow_id, fingerprint, sealed, expires_at)
             SELECT e.workflow_id, e.fingerprint, decode(e.sealed, 'base64'), now() + make_interval(hours => e.ttl_hours)
               FROM jsonb_to_recordset($3::jsonb) AS e(workflow_id text, fingerprint text, sealed text, ttl_hours int)
              WHERE EXISTS (SELECT FROM claim)
              ORDER BY e.workflow_id
             ON CONFLICT (workflow_id) DO NOTHING
             RETURNING workflow_id
           ), sightings AS (
             INSERT INTO killswitch_sightings (workflow_id, detection_id, source, scanner, location, validity, received_at)
             SELECT s.workflow_id, s.detection_id, s.source, s.scanner, s.location, s.validity, s.received_at
               FROM jsonb_to_recordset($4::jsonb) AS s(workflow_id text, detection_id text, source text, scanner text, location jsonb, validity text, received_at timestamptz)
              WHERE EXISTS (SELECT FROM claim)
              ORDER BY s.workflow_id, s.detection_id
             ON CONFLICT DO NOTHING
           )
           SELECT EXISTS (SELECT FROM claim) AS claimed,
                  ARRAY(SELECT workflow_id FROM evidence) AS sealed,
                  prior.status, prior.response, prior.received_at
             FROM (VALUES (1)) AS one LEFT JOIN prior ON true`,
          [source, deliveryId, JSON.stringify(evidence), JSON.stringify(sightings)],
        );
        const row = r.rows[0]!;
        if (row.claimed) return { kind: 'new', sealed: row.sealed };
        if (row.received_at === null) continue;
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

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
import {
  claimDelivery,
  completeDelivery,
  listSourceStates,
  releaseDelivery,
  setSourceState,
  sourceOverrides,
} from '../store/deliveries';

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
  return deliveryId.includes('\u0000') || deliveryId.length > 512
    ? `sha256:${createHash('sha256').update(deliveryId).digest('hex')}`
    : deliveryId;
}

export function createDeliveryLedger(db: Db): DeliveryLedger {
  return {
    async claim(source, rawId, writes) {
      const deliveryId = ledgerKey(rawId);
      // One statement: the claim, and only if it is new, the evidence and the sightings
      // (store/deliveries.ts). A row committed (or released) by a concurrent request while this one
      // waited on it is seen by neither half of the statement: the next turn of the loop reads it.
      for (;;) {
        const row = await claimDelivery(db, source, deliveryId, writes);
        if (row.claimed) return { kind: 'new', sealed: row.sealed };
        if (row.received_at === null) continue;
        if (row.status === null) return { kind: 'unfinished', receivedAt: new Date(row.received_at) };
        return { kind: 'answered', status: row.status, response: row.response ?? null };
      }
    },
    async complete(source, rawId, status, response) {
      // jsonb cannot hold U+0000; an answer may echo a sender's string that carries one.
      await completeDelivery(
        db,
        source,
        ledgerKey(rawId),
        status,
        JSON.stringify(response ?? null).replace(/\\u0000/g, '\\ufffd'),
      );
    },
    async release(source, rawId) {
      await releaseDelivery(db, source, ledgerKey(rawId));
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
    const map = await sourceOverrides(db);
    cache = { at: Date.now(), map };
    return cache.map;
  };
  return {
    async enabled(source, configured) {
      const override = (await load()).get(source);
      return override ?? configured;
    },
    async set(source, enabled, by) {
      await setSourceState(db, source, enabled, by);
      cache = undefined;
    },
    list: () => listSourceStates(db),
  };
}

/**
 * killswitch_deliveries (the delivery ledger) and killswitch_source_state (the runtime source
 * switches). The claim is one statement: the claim and, only when it is new, the sealed evidence
 * and the sighting rows of the delivery (api/deliveries.ts says why).
 */
import type { Db } from '../lib/db';
import type { DeliveryWrites } from '../lib/dispatch';

/** The answer of one claim statement. */
export interface ClaimRow {
  claimed: boolean;
  /** Workflow ids whose evidence this claim stored. */
  sealed: string[];
  status: number | null;
  response: unknown;
  received_at: Date | null;
}

/**
 * Claims (source, delivery id) and, only if the claim is new, writes the evidence and the sightings,
 * in one statement. `prior` reads the statement's snapshot, so it sees a row committed before it and
 * never the one it inserts; a row committed (or released) by a concurrent request while this one
 * waited on it is seen by neither (received_at null): the caller asks again. Rows are inserted in
 * key order (claim, evidence, sightings, each sorted), so two deliveries naming the same credentials
 * in another order wait on each other instead of deadlocking.
 */
export async function claimDelivery(
  db: Pick<Db, 'query'>,
  source: string,
  deliveryId: string,
  writes?: DeliveryWrites,
): Promise<ClaimRow> {
  const evidence = (writes?.evidence ?? []).map((e) => ({
    workflow_id: e.workflowId,
    fingerprint: e.fingerprint,
    sealed: e.sealed.toString('base64'),
    ttl_hours: e.ttlHours,
  }));
  const sightings = (writes?.sightings ?? []).map((r) => ({
    workflow_id: r.workflowId,
    detection_id: r.detectionId,
    source: r.source,
    scanner: r.scanner,
    location: r.location,
    validity: r.validity,
    received_at: r.receivedAt,
  }));
  const r = await db.query<ClaimRow>(
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
  return r.rows[0]!;
}

/** Stores a claimed delivery's answer; the first answer stored wins. `response` is JSON text. */
export async function completeDelivery(
  db: Pick<Db, 'query'>,
  source: string,
  deliveryId: string,
  status: number,
  response: string,
): Promise<void> {
  await db.query(
    'UPDATE killswitch_deliveries SET status = $3, response = $4::jsonb WHERE source = $1 AND delivery_id = $2 AND status IS NULL',
    [source, deliveryId, status, response],
  );
}

/** Frees a claim that has no answer. */
export async function releaseDelivery(
  db: Pick<Db, 'query'>,
  source: string,
  deliveryId: string,
): Promise<void> {
  await db.query(
    'DELETE FROM killswitch_deliveries WHERE source = $1 AND delivery_id = $2 AND status IS NULL',
    [source, deliveryId],
  );
}

/** Deletes ledger rows received more than `days` ago; returns how many. */
export async function deleteDeliveriesOlderThan(db: Pick<Db, 'query'>, days: number): Promise<number> {
  const r = await db.query<{ delivery_id: string }>(
    `DELETE FROM killswitch_deliveries WHERE received_at < now() - make_interval(days => $1::int) RETURNING delivery_id`,
    [days],
  );
  return r.rows.length;
}

/** Claims never answered for over `minutes`, newest first, at most 50. */
export async function unansweredDeliveries(
  db: Pick<Db, 'query'>,
  minutes: number,
): Promise<Array<{ source: string; deliveryId: string; receivedAt: string }>> {
  const a = await db.query<{ source: string; delivery_id: string; received_at: Date }>(
    `SELECT source, delivery_id, received_at FROM killswitch_deliveries
      WHERE status IS NULL AND received_at < now() - make_interval(mins => $1::int)
      ORDER BY received_at DESC LIMIT 50`,
    [minutes],
  );
  return a.rows.map((x) => ({
    source: x.source,
    deliveryId: x.delivery_id,
    receivedAt: new Date(x.received_at).toISOString(),
  }));
}

/** The runtime source switches that override the config file, by source. */
export async function sourceOverrides(db: Pick<Db, 'query'>): Promise<Map<string, boolean>> {
  const r = await db.query<{ source: string; enabled: boolean }>(
    'SELECT source, enabled FROM killswitch_source_state',
  );
  return new Map(r.rows.map((x) => [x.source, x.enabled]));
}

export async function setSourceState(
  db: Pick<Db, 'query'>,
  source: string,
  enabled: boolean,
  by: string,
): Promise<void> {
  await db.query(
    `INSERT INTO killswitch_source_state (source, enabled, changed_by, changed_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (source) DO UPDATE SET enabled = EXCLUDED.enabled, changed_by = EXCLUDED.changed_by, changed_at = now()`,
    [source, enabled, by],
  );
}

export async function listSourceStates(
  db: Pick<Db, 'query'>,
): Promise<Array<{ source: string; enabled: boolean; changedBy: string; changedAt: string }>> {
  const r = await db.query<{ source: string; enabled: boolean; changed_by: string; changed_at: Date }>(
    'SELECT source, enabled, changed_by, changed_at FROM killswitch_source_state ORDER BY source',
  );
  return r.rows.map((x) => ({
    source: x.source,
    enabled: x.enabled,
    changedBy: x.changed_by,
    changedAt: new Date(x.changed_at).toISOString(),
  }));
}

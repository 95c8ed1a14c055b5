/**
 * killswitch_sightings: every sighting a run took (one row per workflow id and detection id), and
 * the lookups from what a person holds (a detection id, a workflow id, a fingerprint) to a run,
 * across the sightings and the audit.
 */
import type { Db } from '../lib/db';
import type { SightingLedger, SightingRow } from '../lib/dispatch';
import { finishedRunHolding } from './audit';

/** Records one sighting; a sighting recorded before is left as it is. */
export async function insertSighting(db: Pick<Db, 'query'>, row: SightingRow): Promise<void> {
  await db.query(
    `INSERT INTO killswitch_sightings (workflow_id, detection_id, source, scanner, location, validity, received_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) ON CONFLICT DO NOTHING`,
    [
      row.workflowId,
      row.detectionId,
      row.source,
      row.scanner,
      JSON.stringify(row.location),
      row.validity,
      row.receivedAt,
    ],
  );
}

/** The sightings the read API shows for one workflow id, oldest first (no secret column exists). */
export async function sightingsOf(
  db: Pick<Db, 'query'>,
  workflowId: string,
): Promise<
  Array<{
    detection_id: unknown;
    source: unknown;
    scanner: unknown;
    location: unknown;
    validity: unknown;
    received_at: unknown;
  }>
> {
  const r = await db.query<{
    detection_id: unknown;
    source: unknown;
    scanner: unknown;
    location: unknown;
    validity: unknown;
    received_at: unknown;
  }>(
    'SELECT detection_id, source, scanner, location, validity, received_at FROM killswitch_sightings WHERE workflow_id = $1 ORDER BY received_at',
    [workflowId],
  );
  return r.rows;
}

/** Every workflow id a workflow id or detection id names (audit and sightings), the newest activity first. */
export async function workflowIdsNamed(
  db: Pick<Db, 'query'>,
  id: string,
): Promise<Array<{ workflow_id: string; last: Date | string }>> {
  const found = await db.query<{ workflow_id: string; last: Date | string }>(
    `SELECT workflow_id, max(at) AS last FROM (
         SELECT workflow_id, recorded_at AS at FROM killswitch_audit WHERE workflow_id = $1 OR detection_id = $1
         UNION ALL
         SELECT workflow_id, received_at AS at FROM killswitch_sightings WHERE workflow_id = $1 OR detection_id = $1
       ) x GROUP BY workflow_id ORDER BY last DESC`,
    [id],
  );
  return found.rows;
}

/** A workflow id whose id matches `like` (sightings or audit), or whose audit row holds this fingerprint. */
export async function workflowIdByFingerprint(
  db: Pick<Db, 'query'>,
  like: string,
  fingerprint: string,
): Promise<string | undefined> {
  const r = await db.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM killswitch_sightings WHERE workflow_id LIKE $1
         UNION SELECT workflow_id FROM killswitch_audit WHERE workflow_id LIKE $1 OR fingerprint = $2 LIMIT 1`,
    [like, fingerprint],
  );
  return r.rows[0]?.workflow_id;
}

/** The workflow id of a detection id (sightings or audit). */
export async function workflowIdByDetection(
  db: Pick<Db, 'query'>,
  detectionId: string,
): Promise<string | undefined> {
  const r = await db.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM killswitch_sightings WHERE detection_id = $1
       UNION SELECT workflow_id FROM killswitch_audit WHERE detection_id = $1 LIMIT 1`,
    [detectionId],
  );
  return r.rows[0]?.workflow_id;
}

/** The dispatcher's SightingLedger over the database. */
export function sightingLedger(db: Pick<Db, 'query'>): SightingLedger {
  return {
    record: (row) => insertSighting(db, row),
    finishedRunHolding: (workflowId, detectionId) => finishedRunHolding(db, workflowId, detectionId),
  };
}

/**
 * killswitch_audit: one row per run outcome, insert-only (a retried insert is a no-op), and the
 * reads over it: a prior containment, a run's first outcome, the finished run that took a
 * detection, the read API's list and detail, Slack's `/killswitch recent|status`.
 */
import type { Db } from '../lib/db';
import type { Outcome, RunSummary } from '../contracts/run';

/** The note of a run that did not rotate itself: an early escalation contained by its credential's run. */
function handOverNote(s: RunSummary): string | null {
  const e = s.enrichedRun;
  return e ? `finding fetched late; run ${e.workflowId}/${e.runId} of its credential: ${e.outcome}` : null;
}

/** Inserts the run's audit row; `summary` must be well formed already (activities/boundary.ts). */
export async function insertAuditRow(db: Pick<Db, 'query'>, s: RunSummary): Promise<{ inserted: boolean }> {
  const d = s.detection;
  const r = await db.query(
    `INSERT INTO killswitch_audit (
       workflow_id, run_id, detection_id, source, scanner, credential_type, credential_ref, fingerprint,
       owning_system, outcome, failure_step, failure_type, failure_message, new_value_delivered, rotation_note,
       sessions_terminated, verification_method, pagerduty_dedup_key, pagerduty_status, location,
       received_at, rotated_at, sessions_expired_at, verified_dead_at,
       policy_action, policy_rule, dry_run, validity, publicly_leaked, prior_run_id, decided_by, sightings, loop_closed,
       kill_mode, revoked_at, replacement_issued_at, sink_ref, user_sessions_expired, held_by_breaker,
       acknowledged_by, retried_by, false_positive_by, incident_resolved)
     VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20::jsonb,$21,$22,$23,$24,
             $25,$26,$27,$28,$29,$30,$31,$32::jsonb,$33,$34,$35,$36,$37,$38,$39,$40,$41,$42,$43)
     ON CONFLICT (workflow_id, run_id, outcome) DO NOTHING
     RETURNING id`,
    [
      s.workflowId,
      s.runId,
      d.id,
      d.source,
      d.scanner ?? null,
      d.credentialType,
      JSON.stringify(d.credentialRef),
      d.fingerprint ?? null,
      s.owner?.system ?? null,
      s.outcome,
      s.failure?.step ?? null,
      s.failure?.type ?? null,
      s.failure?.message ?? null,
      s.rotation?.newValueDelivered ?? false,
      s.rotation?.note ?? handOverNote(s),
      s.sessions?.terminated ?? null,
      s.verification?.method ?? null,
      s.pagerduty?.dedupKey ?? null,
      s.pagerduty?.status ?? null,
      JSON.stringify(d.location),
      s.timeline.receivedAt,
      s.timeline.rotatedAt ?? null,
      s.timeline.sessionsExpiredAt ?? null,
      s.timeline.verifiedDeadAt ?? null,
      s.policy?.action ?? null,
      s.policy?.rule ?? null,
      s.policy?.dryRun ?? false,
      d.validity ?? null,
      d.publiclyLeaked ?? null,
      s.priorRunId ?? null,
      s.decidedBy ?? null,
      JSON.stringify(s.sightings ?? []),
      s.loopClosed?.length ? s.loopClosed.join('\n') : null,
      s.rotation?.mode ?? null,
      s.timeline.revokedAt ?? null,
      s.timeline.replacementIssuedAt ?? null,
      s.rotation?.sinkRef ?? null,
      s.userSessions?.expired ?? null,
      s.heldByBreaker ?? false,
      s.acknowledgedBy ?? null,
      s.retriedBy?.length ? s.retriedBy.join(', ') : null,
      s.falsePositiveBy ?? null,
      s.resolvedIncident ?? false,
    ],
  );
  return { inserted: r.rows.length === 1 };
}

/** The run id of the first finished containment of this credential by another run, if any. */
export async function priorContainmentRunId(
  db: Pick<Db, 'query'>,
  workflowId: string,
  runId: string,
): Promise<string | undefined> {
  const r = await db.query<{ run_id: string }>(
    `SELECT run_id FROM killswitch_audit
          WHERE workflow_id = $1 AND run_id <> $2 AND outcome IN ('contained', 'already_contained')
          ORDER BY recorded_at ASC LIMIT 1`,
    [workflowId, runId],
  );
  return r.rows[0]?.run_id;
}

/** The first recorded outcome of a run; undefined while it has none. */
/** The owning system a run's audit rows name (its escalation's PagerDuty routing follows it). */
export async function owningSystemOf(db: Pick<Db, 'query'>, workflowId: string): Promise<string | undefined> {
  const r = await db.query<{ owning_system: string }>(
    `SELECT owning_system FROM killswitch_audit
      WHERE workflow_id = $1 AND owning_system IS NOT NULL ORDER BY recorded_at DESC, id DESC LIMIT 1`,
    [workflowId],
  );
  return r.rows[0]?.owning_system;
}

export async function firstOutcome(
  db: Pick<Db, 'query'>,
  workflowId: string,
  runId: string,
): Promise<Outcome | undefined> {
  const r = await db.query<{ outcome: Outcome }>(
    `SELECT outcome FROM killswitch_audit WHERE workflow_id = $1 AND run_id = $2 ORDER BY recorded_at ASC, id ASC LIMIT 1`,
    [workflowId, runId],
  );
  return r.rows[0]?.outcome;
}

/** The newest finished run of this workflow id whose audit row lists the detection among its sightings. */
export async function finishedRunHolding(
  db: Pick<Db, 'query'>,
  workflowId: string,
  detectionId: string,
): Promise<string | undefined> {
  const done = await db.query<{ run_id: string }>(
    `SELECT run_id FROM killswitch_audit WHERE workflow_id = $1 AND sightings @> $2::jsonb ORDER BY recorded_at DESC LIMIT 1`,
    [workflowId, JSON.stringify([{ detectionId }])],
  );
  return done.rows[0]?.run_id;
}

/** Non-secret columns of killswitch_audit the read API returns (fingerprints and evidence stay inside). */
export const AUDIT_API_COLUMNS = [
  'id',
  'workflow_id',
  'run_id',
  'detection_id',
  'source',
  'scanner',
  'credential_type',
  'credential_ref',
  'owning_system',
  'outcome',
  'failure_step',
  'failure_type',
  'failure_message',
  'kill_mode',
  'policy_action',
  'policy_rule',
  'dry_run',
  'held_by_breaker',
  'new_value_delivered',
  'sink_ref',
  'sessions_terminated',
  'user_sessions_expired',
  'verification_method',
  'pagerduty_status',
  'decided_by',
  'acknowledged_by',
  'retried_by',
  'false_positive_by',
  'incident_resolved',
  'validity',
  'location',
  'received_at',
  'revoked_at',
  'rotated_at',
  'sessions_expired_at',
  'verified_dead_at',
  'recorded_at',
] as const;

export type AuditApiRow = Record<(typeof AUDIT_API_COLUMNS)[number], unknown>;

const API_COLS = AUDIT_API_COLUMNS.join(', ');

export interface AuditFilter {
  outcome?: string;
  /** An owning system, or `none` for runs without one. */
  system?: string;
  source?: string;
  /** ISO 8601 date-time: rows recorded at or after it. */
  since?: string;
  /** Keyset position: the exact recorded_at (PostgreSQL text) and the row id of the last row seen. */
  cursor?: { t: string; i: string };
  /** Rows asked for (the read API asks one more to know whether a next page exists). */
  limit: number;
}

/** Audit rows newest first, filtered; each with `recorded_key`, its recorded_at as PostgreSQL text (for a cursor). */
export async function listAuditRows(
  db: Pick<Db, 'query'>,
  q: AuditFilter,
): Promise<Array<AuditApiRow & { recorded_key: string }>> {
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  if (q.outcome) where.push(`outcome = ${p(q.outcome)}`);
  if (q.system === 'none') where.push('owning_system IS NULL');
  else if (q.system) where.push(`owning_system = ${p(q.system)}`);
  if (q.source) where.push(`source = ${p(q.source)}`);
  if (q.since) where.push(`recorded_at >= ${p(q.since)}::timestamptz`);
  if (q.cursor) where.push(`(recorded_at, id) < (${p(q.cursor.t)}::timestamptz, ${p(q.cursor.i)}::bigint)`);
  const r = await db.query<AuditApiRow & { recorded_key: string }>(
    `SELECT ${API_COLS}, recorded_at::text AS recorded_key FROM killswitch_audit
        ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY recorded_at DESC, id DESC LIMIT ${p(q.limit)}`,
    params,
  );
  return r.rows;
}

/** Every audit row of one workflow id, oldest first. */
export async function auditRowsOf(db: Pick<Db, 'query'>, workflowId: string): Promise<AuditApiRow[]> {
  const r = await db.query<AuditApiRow>(
    `SELECT ${API_COLS} FROM killswitch_audit WHERE workflow_id = $1 ORDER BY recorded_at, id`,
    [workflowId],
  );
  return r.rows;
}

/** The few columns of an audit row Slack's `/killswitch` shows. */
export interface AuditLine {
  workflow_id: string;
  run_id: string;
  outcome: string;
  credential_type: string;
  credential_ref: Record<string, unknown>;
  owning_system: string | null;
  failure_type: string | null;
  recorded_at: Date;
}
const LINE_COLUMNS =
  'workflow_id, run_id, outcome, credential_type, credential_ref, owning_system, failure_type, recorded_at';

/** The ten newest audit rows. */
export async function recentAuditLines(db: Pick<Db, 'query'>): Promise<AuditLine[]> {
  return (
    await db.query<AuditLine>(
      `SELECT ${LINE_COLUMNS} FROM killswitch_audit ORDER BY recorded_at DESC, id DESC LIMIT 10`,
    )
  ).rows;
}

/** The five newest audit rows of one workflow id. */
export async function auditLinesOf(db: Pick<Db, 'query'>, workflowId: string): Promise<AuditLine[]> {
  return (
    await db.query<AuditLine>(
      `SELECT ${LINE_COLUMNS} FROM killswitch_audit WHERE workflow_id = $1 ORDER BY recorded_at DESC, id DESC LIMIT 5`,
      [workflowId],
    )
  ).rows;
}

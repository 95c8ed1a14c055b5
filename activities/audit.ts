/** Audit rows in PostgreSQL: one per run, insert-only, a retried insert is a no-op. */
import type { Db } from '../lib/db';
import type { RunSummary } from '../contracts/run';
import { wellFormed } from './boundary';

/** The note of a run that did not rotate itself: an early escalation contained by its credential's run. */
function handOverNote(s: RunSummary): string | null {
  const e = s.enrichedRun;
  return e ? `finding fetched late; run ${e.workflowId}/${e.runId} of its credential: ${e.outcome}` : null;
}

export async function insertAuditRow(db: Db, summary: RunSummary): Promise<{ inserted: boolean }> {
  // Scanner text is stored in text and jsonb columns: no lone surrogate, no U+0000 (see boundary.ts).
  const s = wellFormed(summary);
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

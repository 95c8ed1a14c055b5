/**
 * The events a run's summary evidences, built from the summary alone (it never holds a secret
 * value). Ids are derived from the run and the event type, so emitting at a wait and again at the
 * end stores each event once, and a receiver can dedupe redeliveries on `id` / `webhook-id`.
 */
import { createHash } from 'node:crypto';
import {
  EVENT_VERSION,
  eventEnvelopeSchema,
  type EventData,
  type EventType,
  type KillSwitchEvent,
} from '../../contracts/events';
import type { Outcome } from '../../contracts/outcomes';
import type { RunSummary } from '../../contracts/run';

/** A stable, opaque event id (also a valid e-mail Message-ID local part and webhook-id). */
export function eventId(...parts: string[]): string {
  return `evt_${createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 32)}`;
}

const OUTCOME_EVENT: Record<Outcome, EventType> = {
  contained: 'run.contained',
  escalated: 'run.escalated',
  false_positive: 'run.false_positive',
  dry_run: 'run.dry_run',
  already_contained: 'run.ended',
  notified: 'run.ended',
  ignored: 'run.ended',
  denied: 'run.ended',
};

function dataOf(s: RunSummary): EventData {
  const d = s.detection;
  const location = Object.fromEntries(
    Object.entries({
      repository: d.location.repository,
      file: d.location.file,
      line: d.location.line,
      commit: d.location.commit,
      url: d.location.url,
    }).filter(([, v]) => v !== undefined),
  );
  return {
    credential: {
      type: d.credentialType,
      ...(d.fingerprint ? { fingerprint: d.fingerprint } : {}),
      ref: { ...d.credentialRef },
    },
    detection: {
      id: d.id,
      source: d.source,
      ...(d.scanner ? { scanner: d.scanner } : {}),
      severity: d.severity,
      location,
      ...(d.validity ? { validity: d.validity } : {}),
    },
    owner: s.owner
      ? { system: s.owner.system, kind: s.owner.kind, ...(s.owner.team ? { team: s.owner.team } : {}) }
      : null,
    ...(s.policy
      ? { policy: { action: s.policy.action, rule: s.policy.rule, dryRun: s.policy.dryRun } }
      : {}),
    ...(s.step ? { step: s.step } : {}),
    timeline: Object.fromEntries(
      Object.entries(s.timeline).filter(([, v]) => typeof v === 'string'),
    ) as Record<string, string>,
  };
}

function describe(s: RunSummary): string {
  const ref = Object.entries(s.detection.credentialRef)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `${s.detection.credentialType}${ref ? ` (${ref})` : ''}${s.owner ? ` in ${s.owner.system}` : ''}`;
}

const SUMMARIES: Record<EventType, (s: RunSummary) => string> = {
  'detection.received': (s) =>
    `Leak reported by ${s.detection.scanner ?? s.detection.source}: ${describe(s)}`,
  'run.started': (s) => `Containment run started: ${describe(s)}`,
  'approval.requested': (s) => `Approval requested to rotate ${describe(s)}`,
  'approval.decided': (s) => `Rotation of ${describe(s)}: ${s.decidedBy ?? 'decided'}`,
  'breaker.tripped': (s) => `Mass-leak breaker holds ${describe(s)}`,
  'credential.revoked': (s) => `Revoked ${describe(s)}`,
  'replacement.issued': (s) => `Replacement issued for ${describe(s)}`,
  'sessions.expired': (s) => `Sessions expired for ${describe(s)}`,
  'credential.verified_dead': (s) => `Verified dead: ${describe(s)}`,
  'run.contained': (s) => `Contained: ${describe(s)}`,
  'run.escalated': (s) =>
    `Escalated: ${describe(s)}${s.failure ? ` (${s.failure.type} at ${s.failure.step})` : ''}`,
  'run.acknowledged': (s) => `Acknowledged by ${s.acknowledgedBy ?? 'a human'}: ${describe(s)}`,
  'run.false_positive': (s) => `False positive (${s.falsePositiveBy ?? 'a human'}): ${describe(s)}`,
  'run.dry_run': (s) => `Dry run ended: ${describe(s)}`,
  'run.ended': (s) => `Run ended ${s.outcome}: ${describe(s)}`,
  'subscription.disabled': () => 'Subscription disabled',
  'delivery.test': () => 'Test event',
};

export interface EventLinks {
  /** The run in the Temporal UI. */
  runUrl?: string;
}

/**
 * Events of a run: at a wait (`final: false`) the ones that happened so far; at the end also the
 * outcome. `now` stamps events whose moment the summary does not record.
 */
export function eventsOfRun(s: RunSummary, links: EventLinks, final: boolean, now: Date): KillSwitchEvent[] {
  const data = dataOf(s);
  const make = (type: EventType, occurredAt: string, extra: Partial<EventData> = {}): KillSwitchEvent =>
    eventEnvelopeSchema.parse({
      id: eventId(s.workflowId, s.runId, type),
      type,
      version: EVENT_VERSION,
      occurredAt,
      source: 'secret-kill-switch',
      run: { workflowId: s.workflowId, runId: s.runId, ...(links.runUrl ? { url: links.runUrl } : {}) },
      summary: SUMMARIES[type](s).slice(0, 1024),
      data: { ...data, ...extra },
    });
  const at = now.toISOString();
  const t = s.timeline;
  const out: KillSwitchEvent[] = [
    make('detection.received', t.receivedAt),
    make('run.started', t.receivedAt),
  ];
  if (s.policy?.action === 'require_approval') out.push(make('approval.requested', t.receivedAt));
  if (s.decidedBy) {
    const decision = /^(approve|deny|timed? ?out)/i.exec(s.decidedBy)?.[1]?.toLowerCase() ?? 'decided';
    out.push(make('approval.decided', at, { by: s.decidedBy.slice(0, 1024), decision }));
  }
  if (s.heldByBreaker && s.owner) {
    out.push(
      make('breaker.tripped', at, {
        breaker: { system: s.owner.system, count: 0, window: s.owner.breaker.window },
      }),
    );
  }
  if (t.revokedAt) out.push(make('credential.revoked', t.revokedAt));
  if (t.replacementIssuedAt) out.push(make('replacement.issued', t.replacementIssuedAt));
  if (t.sessionsExpiredAt) out.push(make('sessions.expired', t.sessionsExpiredAt));
  if (t.verifiedDeadAt) out.push(make('credential.verified_dead', t.verifiedDeadAt));
  if (s.acknowledgedBy) out.push(make('run.acknowledged', at, { by: s.acknowledgedBy.slice(0, 1024) }));
  if (final) {
    out.push(
      make(OUTCOME_EVENT[s.outcome], at, {
        outcome: s.outcome,
        ...(s.failure
          ? {
              failure: {
                step: s.failure.step,
                type: s.failure.type,
                message: s.failure.message.slice(0, 2000),
              },
            }
          : {}),
        ...(s.falsePositiveBy ? { by: s.falsePositiveBy.slice(0, 1024) } : {}),
      }),
    );
  }
  return out;
}

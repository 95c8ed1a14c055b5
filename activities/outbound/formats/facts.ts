/**
 * What the chat formats (Slack, Teams) show of an event: a short title per type, a colour per level
 * and an ordered list of facts. Built from envelope fields only, so nothing outside the event
 * contract (and never a secret value) can reach a channel. Strings are raw here: each format
 * escapes them for its own markup.
 */
import {
  EVENT_LEVELS,
  type EventLevel,
  type EventType,
  type KillSwitchEvent,
} from '../../../contracts/events';

/** A short human title per event type (Slack attachment title, Teams card title, CEF Name). */
export const EVENT_TITLES: Record<EventType, string> = {
  'detection.received': 'Leaked credential detected',
  'run.started': 'Containment run started',
  'approval.requested': 'Approval requested',
  'approval.decided': 'Approval decided',
  'breaker.tripped': 'Mass-leak breaker tripped',
  'credential.revoked': 'Credential revoked',
  'replacement.issued': 'Replacement issued',
  'sessions.expired': 'Sessions expired',
  'credential.verified_dead': 'Credential verified dead',
  'run.contained': 'Run contained',
  'run.escalated': 'Run escalated',
  'run.acknowledged': 'Run acknowledged',
  'run.false_positive': 'Marked false positive',
  'run.dry_run': 'Dry run ended',
  'run.ended': 'Run ended',
  'subscription.disabled': 'Subscription disabled',
  'delivery.test': 'Test event',
};

/** Colour per level, as 6-digit hex without `#` (Slack prefixes it, Teams themeColor takes it bare). */
export const LEVEL_COLORS: Record<EventLevel, string> = {
  failure: 'D62828', // red
  warning: 'F77F00', // orange
  success: '2B9348', // green
  info: '1F6FEB', // blue
};

export function levelOf(event: KillSwitchEvent): EventLevel {
  return EVENT_LEVELS[event.type];
}

export interface Fact {
  label: string;
  value: string;
  /** Short enough to sit beside another fact (Slack `short`). */
  short: boolean;
}

/** The run's link when it is an http(s) URL; anything else is not offered as a link. */
export function runLink(event: KillSwitchEvent): string | undefined {
  const url = event.run?.url;
  if (!url) return undefined;
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : undefined;
  } catch {
    return undefined;
  }
}

/** The facts worth a responder's glance, in reading order; absent fields are left out. */
export function eventFacts(event: KillSwitchEvent): Fact[] {
  const d = event.data;
  const facts: Fact[] = [];
  const add = (label: string, value: string | undefined, short = true) => {
    if (value !== undefined && value !== '') facts.push({ label, value, short });
  };
  add('Credential type', d.credential?.type);
  const ref = Object.entries(d.credential?.ref ?? {});
  add('Identifiers', ref.length ? ref.map(([k, v]) => `${k}=${v}`).join(', ') : undefined, false);
  const system = d.owner?.system ?? d.breaker?.system;
  add('Owning system', system && d.owner?.team ? `${system} (team ${d.owner.team})` : system);
  const det = d.detection;
  add('Source', det ? (det.scanner ? `${det.source} (${det.scanner})` : det.source) : undefined);
  add('Severity', det?.severity);
  const loc = det?.location;
  const file = loc?.file ? (loc.line !== undefined ? `${loc.file}:${loc.line}` : loc.file) : undefined;
  add('Location', [loc?.repository, file].filter(Boolean).join(' ') || undefined, false);
  add('Outcome', d.outcome);
  add('Step', d.step);
  if (d.failure) add('Failure', `${d.failure.type} at ${d.failure.step}: ${d.failure.message}`, false);
  add('Decision', d.decision ? (d.by ? `${d.decision} by ${d.by}` : d.decision) : undefined);
  if (!d.decision) add('By', d.by);
  if (d.breaker) add('Breaker', `${d.breaker.count} leaks in ${d.breaker.window}`);
  add('Subscription', d.subscription?.name);
  add('Workflow', event.run?.workflowId, false);
  add('Occurred at', event.occurredAt);
  return facts;
}

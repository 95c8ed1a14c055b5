/**
 * Outbound events: what the kill switch tells the tools teams already watch (webhooks, Slack and
 * Teams channels, SIEMs, Jira, e-mail). Each event type has a stable name, a version, a description
 * and a JSON schema of its envelope (`eventSchemas`, served by `GET /api/events/types`).
 *
 * Metadata only: fingerprints (a keyed hash), non-secret identifiers, the step, the outcome, times
 * and links. A secret value never enters an event: the envelope is built from the run summary,
 * which never holds one. Pure code.
 */
import { defineSignal } from '@temporalio/workflow';
import { z } from 'zod';
import { CREDENTIAL_TYPES, SEVERITIES } from './detection';
import { OUTCOMES } from './outcomes';

export const EVENT_VERSION = 1;

/** Every event type, with what it means. Order: the life of a run. */
export const EVENT_TYPES = {
  'detection.received': 'A scanner reported a leaked credential and the ingress accepted it.',
  'run.started': 'A containment run started for a credential.',
  'approval.requested': 'The policy asks a human to approve the rotation before anything changes.',
  'approval.decided': 'A human approved or denied a rotation (or nobody did in time).',
  'breaker.tripped': 'The mass-leak breaker held runs of an owning system for a human.',
  'credential.revoked': 'The leaked credential was revoked (or quarantined) in its owning system.',
  'replacement.issued': 'A replacement credential was issued to the secret sink.',
  'sessions.expired': 'The sessions opened with the credential (and its users) were ended.',
  'credential.verified_dead': 'A login with the leaked value was refused: the credential is dead.',
  'run.contained': 'The run ended contained: revoked, sessions expired, verified dead.',
  'run.escalated': 'Containment failed or could not start: a human was paged.',
  'run.acknowledged': 'A human acknowledged an escalated run.',
  'run.false_positive': 'A human marked the detection a false positive.',
  'run.dry_run': 'A dry run ended: every provider was only asked what it would do.',
  'run.ended': 'A run ended without containment work (already contained, notified, ignored, denied).',
  'subscription.disabled':
    'A subscription was switched off by its circuit breaker after repeated failed deliveries.',
  'delivery.test': 'A test event sent on request to check a subscription.',
} as const;

export type EventType = keyof typeof EVENT_TYPES;
export const EVENT_TYPE_NAMES = Object.keys(EVENT_TYPES) as EventType[];

/** What a subscription gets when it names no event types: the outcomes and escalation signals. */
export const DEFAULT_EVENT_TYPES: readonly EventType[] = [
  'run.contained',
  'run.escalated',
  'run.false_positive',
  'breaker.tripped',
  'approval.requested',
];

/** `*`, an exact type, or a prefix pattern such as `run.*`. */
export function eventTypeMatches(pattern: string, type: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return type.startsWith(pattern.slice(0, -1));
  return pattern === type;
}

/** Whether a pattern can match any known type (used to refuse typos with a 422). */
export function isKnownEventPattern(pattern: string): boolean {
  return EVENT_TYPE_NAMES.some((t) => eventTypeMatches(pattern, t));
}

/** How bad an event is, for formats that colour or grade (Slack, Teams, CEF severity). */
export type EventLevel = 'failure' | 'warning' | 'success' | 'info';

export const EVENT_LEVELS: Record<EventType, EventLevel> = {
  'detection.received': 'info',
  'run.started': 'info',
  'approval.requested': 'warning',
  'approval.decided': 'info',
  'breaker.tripped': 'failure',
  'credential.revoked': 'success',
  'replacement.issued': 'info',
  'sessions.expired': 'success',
  'credential.verified_dead': 'success',
  'run.contained': 'success',
  'run.escalated': 'failure',
  'run.acknowledged': 'info',
  'run.false_positive': 'info',
  'run.dry_run': 'info',
  'run.ended': 'info',
  'subscription.disabled': 'warning',
  'delivery.test': 'info',
};

const ident = z.string().max(1024);
const time = z.string().max(64);

const credentialSchema = z.object({
  type: z.enum(CREDENTIAL_TYPES),
  /** Keyed hash of the value (`hmac-sha256:<hex>`), never the value. */
  fingerprint: ident.optional(),
  /** Non-secret identifiers: role, host, key id, user. */
  ref: z.record(z.string(), ident),
});

const locationSchema = z.object({
  repository: ident.optional(),
  file: ident.optional(),
  line: z.number().int().optional(),
  commit: ident.optional(),
  url: ident.optional(),
});

export const eventDataSchema = z.object({
  credential: credentialSchema.optional(),
  detection: z
    .object({
      id: ident,
      source: ident,
      scanner: ident.optional(),
      severity: z.enum(SEVERITIES),
      location: locationSchema,
      validity: ident.optional(),
    })
    .optional(),
  owner: z.object({ system: ident, kind: ident, team: ident.optional() }).nullable().optional(),
  policy: z.object({ action: ident, rule: ident, dryRun: z.boolean() }).optional(),
  /** The run's step when the event happened. */
  step: ident.optional(),
  outcome: z.enum(OUTCOMES).optional(),
  failure: z.object({ step: ident, type: ident, message: z.string().max(2000) }).optional(),
  timeline: z.record(z.string(), time).optional(),
  /** Who acted (approval.decided, run.acknowledged, run.false_positive). */
  by: ident.optional(),
  decision: ident.optional(),
  /** breaker.tripped: the system and how many leaks in its window. */
  breaker: z.object({ system: ident, count: z.number().int().optional(), window: ident }).optional(),
  /** subscription.disabled and delivery.test: which subscription. */
  subscription: z.object({ id: ident, name: ident }).optional(),
  message: z.string().max(2000).optional(),
});
export type EventData = z.infer<typeof eventDataSchema>;

export const eventEnvelopeSchema = z.object({
  /** Unique and stable: a redelivery of one event carries the same id (receivers dedupe on it). */
  id: ident,
  type: z.enum(EVENT_TYPE_NAMES as [EventType, ...EventType[]]),
  version: z.literal(EVENT_VERSION),
  occurredAt: time,
  source: z.literal('secret-kill-switch'),
  run: z
    .object({
      workflowId: ident,
      runId: ident.optional(),
      /** The run in the Temporal UI. */
      url: ident.optional(),
      /** The detection in the read API. */
      apiUrl: ident.optional(),
    })
    .optional(),
  summary: z.string().max(1024),
  data: eventDataSchema,
});
export type KillSwitchEvent = z.infer<typeof eventEnvelopeSchema>;

/** The JSON schema of the envelope (draft 2020-12), the same for every type (`type` narrows `data`). */
export function eventJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(eventEnvelopeSchema, { target: 'draft-2020-12' }) as Record<string, unknown>;
}

/** Output formats a subscription may use. */
export const EVENT_FORMATS = [
  'json',
  'slack',
  'teams',
  'teams_adaptive',
  'cef',
  'splunk_hec',
  'syslog',
  'email',
  'jira',
] as const;
export type EventFormat = (typeof EVENT_FORMATS)[number];

/** Filters a subscription may set; every one that is set must match (any of its values). */
export interface EventFilters {
  owningSystems?: string[];
  teams?: string[];
  credentialTypes?: string[];
  sources?: string[];
  severities?: string[];
  outcomes?: string[];
}

export function filtersMatch(f: EventFilters, e: KillSwitchEvent): boolean {
  const has = (list: string[] | undefined, value: string | undefined) =>
    !list || list.length === 0 || (value !== undefined && list.includes(value));
  return (
    has(f.owningSystems, e.data.owner?.system) &&
    has(f.teams, e.data.owner?.team) &&
    has(f.credentialTypes, e.data.credential?.type) &&
    has(f.sources, e.data.detection?.source) &&
    has(f.severities, e.data.detection?.severity) &&
    // An outcome filter concerns events that have one; the others pass it.
    (e.data.outcome === undefined || has(f.outcomes, e.data.outcome))
  );
}

/** Input of the delivery run of one subscription (workflows/deliver.ts). */
export interface DeliverEventsInput {
  subscriptionId: string;
}

/** One delivery run per subscription: a slow or dead destination holds back only its own events. */
export function deliveryWorkflowId(subscriptionId: string): string {
  return `deliver-${subscriptionId}`;
}

/** New events are queued for the subscription: deliver them now (no payload: the queue is the truth). */
export const wakeSignal = defineSignal<[]>('wake');

/**
 * The killSwitch run's contract, shared by the ingress, the worker, the workflow and the tests: its
 * input and result, steps and outcomes, the run summary, message handles (query, signals, updates),
 * search attribute keys and the workflow-id helper. Pure code only: bundled into the workflow sandbox.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { CloseLoopRef, CredentialType, Detection, DetectionLocation, Validity } from './detection';
import type { EnrichedRun } from './enrichment';
import type { KillMode } from './kill-modes';
import type { Outcome } from './outcomes';

export const DEFAULT_TASK_QUEUE = 'kill-switch';

export type Step =
  | 'received'
  /** The lookups in one step: prior containment, owner, policy, breaker. */
  | 'assessing'
  | 'checking_prior'
  | 'resolving_owner'
  | 'deciding'
  | 'awaiting_approval'
  | 'held_by_breaker'
  | 'approved'
  | 'revoking'
  | 'issuing_replacement'
  | 'overlap'
  | 'expiring_sessions'
  | 'expiring_user_sessions'
  | 'verifying'
  | 'closing_loop'
  | 'escalating'
  | 'auditing'
  | 'notifying'
  | 'awaiting_retry'
  | 'done';

export { OUTCOMES, type Outcome } from './outcomes';

export type PolicyActionName = 'rotate' | 'require_approval' | 'notify_only' | 'ignore';

export interface PolicyDecision {
  action: PolicyActionName;
  /** Name (or index) of the rule that matched; `default` when none did. */
  rule: string;
  dryRun: boolean;
  /** require_approval only. */
  approvalTimeout?: string;
  onTimeout?: 'escalate' | 'rotate' | 'quarantine';
  /** Who may decide (Slack user ids or e-mails); empty: anyone who reaches the controls. */
  approvers: string[];
  /** After an escalation, how long the run waits for a retry. */
  retryWindow: string;
}

/** One sighting of the credential: the first detection, and every later one delivered by signal. */
export interface SightingInfo {
  detectionId: string;
  source: string;
  scanner?: string;
  location: DetectionLocation;
  validity?: Validity;
  receivedAt: string;
  closeLoop?: CloseLoopRef;
}

/** A human acting on a run from Slack, the CLI or the Temporal UI. */
export interface HumanAction {
  /** Who (Slack user id, e-mail). */
  by: string;
  reason?: string;
}

export interface HumanDecision {
  decision: 'approve' | 'deny';
  /** Who decided (Slack user, email). */
  by: string;
  reason?: string;
}

export interface KillSwitchInput {
  detection: Detection;
  /** When the ingress accepted the detection (ISO 8601). */
  receivedAt: string;
}

export interface OwnerRef {
  system: string;
  kind: string;
  /** The team the inventory says owns the system (events, filters and rules match on it). */
  team?: string;
  /** How the inventory says to kill credentials of this system (see lib/systems/common.ts). */
  mode: KillMode;
  /** graceful only: how long both values stay valid. */
  overlap: string;
  /** Reversible quarantine instead of deletion. */
  quarantine: boolean;
  /** Whether the owner has a reversible quarantine (a policy's onTimeout: quarantine needs it). */
  canQuarantine: boolean;
  /** Kind of the secret sink (`none`: a pure kill). */
  sink: string;
  /** True when a replacement is issued (a sink and a provider that can issue one). */
  replacement: boolean;
  /** Number of user-session targets tied to the credential. */
  userSessionTargets: number;
  breaker: { threshold: number; window: string; holdTimeout: string };
}

export interface Timeline {
  receivedAt: string;
  /** When a replacement became usable. */
  replacementIssuedAt?: string;
  /** The exact moment the leaked credential stopped working. */
  revokedAt?: string;
  /** When the rotation (revoke and replacement) was complete. */
  rotatedAt?: string;
  sessionsExpiredAt?: string;
  verifiedDeadAt?: string;
}

export interface FailureInfo {
  /** Step that failed. */
  step: Step;
  /** ErrorType, or 'NoOwner', or the failure class name for unclassified failures. */
  type: string;
  message: string;
}

export interface KillSwitchResult {
  outcome: Outcome;
  owner: OwnerRef | null;
  timeline: Timeline;
  failure?: FailureInfo;
  rotation?: { mode: KillMode | 'quarantine'; newValueDelivered: boolean; note: string; sinkRef?: string };
  policy?: PolicyDecision;
  priorRunId?: string;
  decidedBy?: string;
  sightings?: SightingInfo[];
  loopClosed?: string[];
  sessions?: { terminated: number };
  userSessions?: { expired: number };
  /** The mass-leak breaker held this run for a human. */
  heldByBreaker?: boolean;
  /** Who acknowledged the escalation, who retried it, who called it a false positive. */
  acknowledgedBy?: string;
  retriedBy?: string[];
  falsePositiveBy?: string;
  /** The run escalated first and a later retry contained it: the PagerDuty incident was resolved. */
  resolvedIncident?: boolean;
  /** An early escalation of a finding fetched late: the run of its credential and that run's outcome. */
  enrichedRun?: EnrichedRun;
  verification?: { method: string };
  pagerduty?: { status: 'sent' | 'logged' | 'failed'; dedupKey: string };
  slack?: { status: 'sent' | 'logged' | 'failed' | 'skipped' };
  /** `error`: the row could not be written (a permanent store failure); the run still notified. */
  audit: { inserted: boolean; error?: string };
}

export interface StepStatus {
  step: Step;
  policy?: PolicyDecision;
  sightings: SightingInfo[];
  owner: OwnerRef | null;
  timeline: Timeline;
  outcome?: Outcome;
  failure?: FailureInfo;
}

/** Everything audit, Slack and PagerDuty need to describe one run. No secret values by construction. */
export interface RunSummary {
  /** The step the run is in when this summary was taken. */
  step?: Step;
  workflowId: string;
  runId: string;
  detection: Detection;
  owner: OwnerRef | null;
  outcome: Outcome;
  timeline: Timeline;
  failure?: FailureInfo;
  rotation?: KillSwitchResult['rotation'];
  sessions?: KillSwitchResult['sessions'];
  userSessions?: KillSwitchResult['userSessions'];
  heldByBreaker?: boolean;
  acknowledgedBy?: string;
  retriedBy?: string[];
  falsePositiveBy?: string;
  resolvedIncident?: boolean;
  enrichedRun?: EnrichedRun;
  /** The audit row was refused for good (KillSwitchResult.audit.error): the message says so. */
  auditError?: string;
  verification?: KillSwitchResult['verification'];
  pagerduty?: KillSwitchResult['pagerduty'];
  policy?: PolicyDecision;
  priorRunId?: string;
  decidedBy?: string;
  sightings?: SightingInfo[];
  loopClosed?: string[];
}

export const currentStepQuery = defineQuery<StepStatus>('currentStep');
/** Another sighting of the same credential (another scanner, file or commit). */
export const sightingSignal = defineSignal<[SightingInfo]>('sighting');
/**
 * A human approves or denies a run waiting for approval (policy or mass-leak breaker); accepted
 * only while it waits and only from the policy's approvers, rejected with the reason otherwise.
 */
export const decideUpdate = defineUpdate<
  { accepted: true; decision: HumanDecision['decision'] },
  [HumanDecision]
>('decide');
/** After an escalation, a human who fixed the cause asks the run to try again. */
export const retryUpdate = defineUpdate<{ accepted: true }, [HumanAction]>('retry');
/** A human says this is no leak: the run ends without rotation and records who decided. */
export const falsePositiveUpdate = defineUpdate<{ accepted: true }, [HumanAction]>('markFalsePositive');
/** A human has seen the escalation and is on it (PagerDuty acknowledge). */
export const acknowledgeSignal = defineSignal<[HumanAction]>('acknowledge');

export function sightingOf(d: Detection, receivedAt: string): SightingInfo {
  return {
    detectionId: d.id,
    source: d.source,
    ...(d.scanner ? { scanner: d.scanner } : {}),
    location: d.location,
    ...(d.validity ? { validity: d.validity } : {}),
    receivedAt,
    ...(d.closeLoop ? { closeLoop: d.closeLoop } : {}),
  };
}

export const SearchAttributes = {
  credentialType: defineSearchAttributeKey('KillSwitchCredentialType', SearchAttributeType.KEYWORD),
  owningSystem: defineSearchAttributeKey('KillSwitchOwningSystem', SearchAttributeType.KEYWORD),
  source: defineSearchAttributeKey('KillSwitchSource', SearchAttributeType.KEYWORD),
  outcome: defineSearchAttributeKey('KillSwitchOutcome', SearchAttributeType.KEYWORD),
  policyAction: defineSearchAttributeKey('KillSwitchPolicyAction', SearchAttributeType.KEYWORD),
} as const;

/** Name=Type pairs for `temporal server start-dev --search-attribute` and operator registration. */
export const SEARCH_ATTRIBUTE_DEFINITIONS: ReadonlyArray<{ name: string; type: 'Keyword' }> = Object.values(
  SearchAttributes,
).map((k) => ({ name: k.name, type: 'Keyword' as const }));

/**
 * Workflow id from the credential, never from the delivery: every sighting of one leaked value
 * (any scanner, any re-delivery) maps to one id. `credentialKey` is already a keyed hash
 * (fingerprint or reference hash), so the id carries nothing secret.
 */
export function killSwitchWorkflowId(credentialType: CredentialType, credentialKey: string): string {
  const hex = credentialKey.replace(/^hmac-sha256:/, '');
  if (!/^[0-9a-f]{32,}$/.test(hex)) throw new Error('credentialKey must be a hex keyed hash');
  return `killswitch-${credentialType}-${hex.slice(0, 32)}`;
}

/** The run a sighting (or a delivery) was dispatched to: started, signalled or already finished. */
export interface Dispatched {
  workflowId: string;
  runId: string;
  temporalUiUrl: string;
}

/**
 * One killSwitch run's state and what every part of the workflow does with it: the step it is in,
 * the handlers humans and other runs reach it through, the summary every notification and the
 * audit row are built from, the search attributes and the Slack progress. Workflow code:
 * deterministic, no I/O.
 */
import { log, setCurrentDetails, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import {
  SearchAttributes,
  acknowledgeSignal,
  currentStepQuery,
  decideUpdate,
  falsePositiveUpdate,
  retryUpdate,
  sightingOf,
  sightingSignal,
  type FailureInfo,
  type HumanAction,
  type HumanDecision,
  type KillSwitchInput,
  type KillSwitchResult,
  type Outcome,
  type OwnerRef,
  type PolicyDecision,
  type RunSummary,
  type SightingInfo,
  type Step,
  type Timeline,
} from '../contracts/run';
import { enrichedSignal, type EnrichedRun } from '../contracts/enrichment';
import type { Detection } from '../contracts/detection';
import { notify } from './steps';

export class Run {
  readonly detection: Detection;
  readonly timeline: Timeline;
  readonly sightings: SightingInfo[] = [];
  step: Step = 'received';
  owner: OwnerRef | null = null;
  failure: FailureInfo | undefined;
  outcome: Outcome | undefined;
  policy: PolicyDecision | undefined;
  prior: { runId: string } | null = null;
  /** What humans asked for, through the updates and signals below. */
  human: HumanDecision | undefined;
  retryAsked: HumanAction | undefined;
  falsePositive: HumanAction | undefined;
  acknowledged: HumanAction | undefined;
  enriched: EnrichedRun | undefined;
  readonly result: Partial<KillSwitchResult> = {};
  /** The sealed value(s) of this run were purged (once is enough). */
  evidencePurged = false;
  private progressSeq = 0;
  private readonly published: Partial<Record<'owningSystem' | 'policyAction' | 'outcome', string>> = {};

  constructor(
    input: KillSwitchInput,
    readonly workflowId: string,
    readonly runId: string,
  ) {
    this.detection = input.detection;
    this.timeline = { receivedAt: input.receivedAt };
    this.addSighting(sightingOf(input.detection, input.receivedAt));
    this.installHandlers();
  }

  private addSighting(s: SightingInfo): void {
    if (!this.sightings.some((x) => x.detectionId === s.detectionId)) this.sightings.push(s);
  }

  /** Handlers first, before any await, so no early signal, update or query is missed. */
  private installHandlers(): void {
    setHandler(currentStepQuery, () => ({
      step: this.step,
      owner: this.owner,
      timeline: this.timeline,
      outcome: this.outcome,
      failure: this.failure,
      policy: this.policy,
      sightings: this.sightings,
    }));
    setHandler(sightingSignal, (s) => {
      this.addSighting(s);
      // Every run gets its first sighting this way (signal-with-start): only later ones are news.
      if (this.sightings.length > 1)
        log.info('sighting joined the run', {
          detectionId: s.detectionId,
          source: s.source,
          sightings: this.sightings.length,
        });
    });
    const requireHuman = (a: { by?: unknown }) => {
      if (typeof a?.by !== 'string' || a.by.trim() === '') throw new Error('by: who decides is required');
      if (this.policy && this.policy.approvers.length > 0 && !this.policy.approvers.includes(a.by))
        throw new Error(`${a.by} is not an approver`);
    };
    const waitingForDecision = () =>
      (this.step === 'awaiting_approval' || this.step === 'held_by_breaker') &&
      !this.human &&
      !this.falsePositive;
    setHandler(
      decideUpdate,
      (d) => {
        this.human = d;
        return { accepted: true as const, decision: d.decision };
      },
      {
        validator: (d) => {
          if (!waitingForDecision()) throw new Error(`not waiting for a decision (step: ${this.step})`);
          if (d.decision !== 'approve' && d.decision !== 'deny')
            throw new Error('decision must be approve or deny');
          requireHuman(d);
        },
      },
    );
    setHandler(
      retryUpdate,
      (a) => {
        this.retryAsked = a;
        return { accepted: true as const };
      },
      {
        validator: (a) => {
          if (this.step !== 'awaiting_retry' || this.retryAsked || this.falsePositive)
            throw new Error(`not waiting for a retry (step: ${this.step})`);
          requireHuman(a);
        },
      },
    );
    setHandler(
      falsePositiveUpdate,
      (a) => {
        this.falsePositive = a;
        return { accepted: true as const };
      },
      {
        validator: (a) => {
          if (
            !(waitingForDecision() || (this.step === 'awaiting_retry' && !this.retryAsked)) ||
            this.falsePositive
          ) {
            throw new Error(
              `only a run waiting for a human can be marked a false positive (step: ${this.step})`,
            );
          }
          requireHuman(a);
        },
      },
    );
    setHandler(acknowledgeSignal, (a) => {
      if (typeof a?.by === 'string' && a.by.trim() && !this.acknowledged) this.acknowledged = a;
    });
    // An early escalation of a finding fetched late (workflows/enrich.ts): its credential's run ended.
    setHandler(enrichedSignal, (e) => {
      if (!this.enriched && typeof e?.workflowId === 'string' && typeof e.outcome === 'string')
        this.enriched = e;
    });
  }

  /** The step shown by the currentStep query and the UI's current details. */
  enter(next: Step): void {
    this.step = next;
    log.debug('step', { step: next });
    setCurrentDetails(
      `**${next.replace(/_/g, ' ')}**${this.owner ? ` · ${this.owner.system}` : ''}${this.failure ? ` · ${this.failure.type}` : ''}`,
    );
  }

  /**
   * Keeps the run's Slack message current without ever waiting on Slack. Only where the run is about
   * to wait (a durable timer, a human): the fast path's one message is its outcome.
   */
  progress(): void {
    const seq = ++this.progressSeq;
    notify
      .slackProgress({ summary: this.summary(), seq })
      .catch((err: unknown) => log.warn('Slack progress failed', { message: (err as Error).message }));
  }

  /**
   * Search attributes, upserted only when they changed and only where a run waits or ends: the fast
   * path sets its owner, policy and outcome in one upsert.
   */
  publish(): void {
    const want = {
      owningSystem: this.owner?.system,
      policyAction: this.policy?.action,
      outcome: this.outcome,
    };
    const changed = (Object.keys(want) as Array<keyof typeof want>).filter(
      (k) => want[k] !== undefined && want[k] !== this.published[k],
    );
    if (!changed.length) return;
    upsertSearchAttributes(
      changed.map((k) => ({ key: SearchAttributes[k], value: (this.published[k] = want[k]!) })),
    );
  }

  /** What Slack, PagerDuty and the audit row are told, as of now. */
  summary(): RunSummary {
    const { result, human } = this;
    return {
      step: this.step,
      workflowId: this.workflowId,
      runId: this.runId,
      detection: this.detection,
      owner: this.owner,
      outcome: this.outcome ?? (this.failure ? 'escalated' : 'contained'),
      timeline: this.timeline,
      failure: this.failure,
      rotation: result.rotation,
      sessions: result.sessions,
      ...(result.userSessions ? { userSessions: result.userSessions } : {}),
      ...(result.heldByBreaker ? { heldByBreaker: true } : {}),
      ...(result.acknowledgedBy ? { acknowledgedBy: result.acknowledgedBy } : {}),
      ...(result.retriedBy?.length ? { retriedBy: [...result.retriedBy] } : {}),
      ...(result.falsePositiveBy ? { falsePositiveBy: result.falsePositiveBy } : {}),
      ...(result.resolvedIncident ? { resolvedIncident: true } : {}),
      ...(result.enrichedRun ? { enrichedRun: result.enrichedRun } : {}),
      ...(result.audit?.error ? { auditError: result.audit.error } : {}),
      verification: result.verification,
      pagerduty: result.pagerduty,
      policy: this.policy,
      ...(this.prior ? { priorRunId: this.prior.runId } : {}),
      ...(human
        ? { decidedBy: `${human.decision} by ${human.by}${human.reason ? `: ${human.reason}` : ''}` }
        : {}),
      sightings: [...this.sightings],
      ...(result.loopClosed ? { loopClosed: result.loopClosed } : {}),
    };
  }
}

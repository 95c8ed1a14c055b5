/**
 * Every activity of the kill switch, built from injected dependencies (the worker is the
 * composition root). Inputs and results carry references, never secret values.
 */
import { ApplicationFailure } from '@temporalio/common';
import { Context, log } from '@temporalio/activity';
import { temporalUiRunUrl } from '../lib/config';
import type { Db } from '../lib/db';
import type { CloseLoopRef, Detection } from '../contracts/detection';
import type { Dispatcher } from '../lib/dispatch';
import type { ServerKeys } from '../contracts/keys';
import { evaluatePolicy } from '../lib/policy';
import { dryRunOverrides } from '../store/dry-run';
import { reduceFinding, type RawFinding } from '../contracts/finding';
import type { UpstreamClients } from './upstream';
import type { EvidenceStore } from '../lib/evidence';
import { matchOwner, type Inventory } from '../lib/inventory';
import { kindOf } from '../lib/systems';
import { ErrorType } from '../contracts/errors';
import { type EnrichInput } from '../contracts/enrichment';
import {
  type Dispatched,
  type Outcome,
  type OwnerRef,
  type PolicyDecision,
  type RunSummary,
} from '../contracts/run';
import { insertAuditRow } from './audit';
import { atBoundary, classifyFailure, permanentSqlState, wellFormed } from './boundary';
import { breakerDedupKey, checkBreaker } from '../store/breaker';
import { breakerTrips, recordRunMetrics } from '../lib/metrics';
import { firstOutcome, owningSystemOf, priorContainmentRunId } from '../store/audit';
import { buildRunMessage, type MessageKind, type SlackSender, type SlackSummary } from './slack';
import { upsertRunMessage } from './slack-message';
import { buildDigestLine, needsOwnMessage, type DigestSettings } from './slack-digest';
import type { PagerDutySender } from './pagerduty';
import type { ProviderRegistry } from './providers';
import type { ExpireResult, IssueResult, RevokeResult, VerifyResult } from '../lib/systems/provider';
import { durationMs } from '../lib/systems/common';
import { type KillMode } from '../contracts/kill-modes';
import type { Outbound } from './outbound';
import type { RouteTable } from '../lib/routing';

export interface ActivityDeps {
  inventory: Inventory;
  keys: ServerKeys;
  dispatcher: Dispatcher;
  upstream: UpstreamClients;
  providers: ProviderRegistry;
  db: Db;
  evidence: EvidenceStore;
  slack: SlackSender;
  pagerduty: PagerDutySender;
  temporalUi: { uiUrl: string; namespace: string };
  /** Burst digests in the configured channel (SLACK_DIGEST_*); unset: every run gets its own message. */
  slackDigest?: { settings: DigestSettings; channel: string };
  /** Outbound events (subscriptions); unset: none are emitted. */
  outbound?: Outbound;
  /** Per owning system: its team's Slack channel, PagerDuty service and subscriptions (lib/routing.ts). */
  routes?: RouteTable;
}

/** The lookups of a run (`assess`): prior containment, or owner, policy and breaker. */
export interface Assessment {
  prior: { runId: string } | null;
  owner: OwnerRef | null;
  /** Why no owner matched. */
  reason?: string;
  /** Absent when a prior containment makes the policy moot. */
  policy?: PolicyDecision;
  /** Counted only for an automatic rotation (not a dry run, not a human decision). */
  breaker?: { tripped: boolean; newlyTripped: boolean; count: number };
}

export interface ContainmentRequest {
  workflowId: string;
  system: string;
  detection: Detection;
  dryRun?: boolean;
  mode?: KillMode;
  quarantine?: boolean;
}

export function createActivities(deps: ActivityDeps) {
  const runtime = (system: string) => {
    const p = deps.providers.get(system);
    if (!p) {
      throw ApplicationFailure.create({
        type: ErrorType.MISCONFIGURED,
        message: `no provider is configured for system ${system}`,
        nonRetryable: true,
      });
    }
    return p;
  };
  const routeOf = (system: string | undefined) => (system ? deps.routes?.get(system) : undefined);
  const runUrl = (s: { workflowId: string; runId: string }) =>
    temporalUiRunUrl(deps.temporalUi.uiUrl, deps.temporalUi.namespace, s.workflowId, s.runId);

  // Every activity: well-formed input in, classified failure out (./boundary.ts).
  const acts = atBoundary({
    async resolveOwner(detection: Detection): Promise<{ owner: OwnerRef | null; reason?: string }> {
      const m = matchOwner(deps.inventory, detection);
      if (m.kind === 'owned') {
        const s = m.system;
        const can = kindOf(s).supports;
        return {
          owner: {
            system: s.name,
            kind: s.kind,
            ...(s.team ? { team: s.team } : {}),
            mode: s.mode,
            overlap: s.overlap,
            quarantine: s.quarantine,
            canQuarantine: can.quarantine,
            sink: s.sink.kind,
            replacement: s.sink.kind !== 'none' && !s.quarantine && can.replacement,
            userSessionTargets: s.sessions.length,
            breaker: s.breaker,
          },
        };
      }
      log.warn('no owning system', { credentialType: detection.credentialType, reason: m.reason });
      return { owner: null, reason: m.reason };
    },

    async decidePolicy(req: { detection: Detection; owner: OwnerRef | null }): Promise<PolicyDecision> {
      // The admin API's runtime dry-run switches (global, this source) override the config file.
      const runtime = await dryRunOverrides(deps.db, req.detection.source);
      const decision = evaluatePolicy(
        deps.inventory.policy,
        deps.inventory.sources,
        req.detection,
        req.owner,
        runtime,
      );
      log.debug('policy decision', {
        action: decision.action,
        rule: decision.rule,
        dryRun: decision.dryRun,
        runtimeDryRun: runtime,
      });
      return decision;
    },

    /** A finished containment of this credential, by any earlier run (the audit outlives Temporal's retention). */
    async priorContainment(req: { workflowId: string; runId: string }): Promise<{ runId: string } | null> {
      const runId = await priorContainmentRunId(deps.db, req.workflowId, req.runId);
      return runId ? { runId } : null;
    },

    /**
     * The run's lookups in one step (one marker in history, no server round trip between them): a
     * prior containment of this credential; else its owner, the policy, and for an automatic
     * rotation the mass-leak breaker. Each part is the activity of the same name below.
     */
    async assess(req: { workflowId: string; runId: string; detection: Detection }): Promise<Assessment> {
      const prior = await acts.priorContainment({ workflowId: req.workflowId, runId: req.runId });
      const { owner, reason } = await acts.resolveOwner(req.detection);
      if (prior) return { prior, owner };
      const policy = await acts.decidePolicy({ detection: req.detection, owner });
      const breaker =
        owner && policy.action === 'rotate' && !policy.dryRun
          ? await acts.checkBreaker({
              system: owner.system,
              workflowId: req.workflowId,
              threshold: owner.breaker.threshold,
              window: owner.breaker.window,
            })
          : undefined;
      return { prior: null, owner, ...(reason ? { reason } : {}), policy, ...(breaker ? { breaker } : {}) };
    },

    /** Makes the leaked credential stop working (or quarantines it, reversibly). */
    async revokeCredential(req: ContainmentRequest): Promise<RevokeResult> {
      const leakedValue =
        req.detection.hasEvidence && !req.dryRun ? await deps.evidence.take(req.workflowId) : undefined;
      const r = await runtime(req.system).provider.revoke({
        leakedValue,
        workflowId: req.workflowId,
        credentialRef: req.detection.credentialRef,
        dryRun: req.dryRun,
        mode: req.mode ?? 'emergency',
        quarantine: req.quarantine,
      });
      log.debug(
        req.dryRun
          ? 'dry run: revocation checked'
          : req.quarantine
            ? 'credential quarantined'
            : 'credential revoked',
        {
          system: req.system,
          credentialRef: req.detection.credentialRef,
        },
      );
      return r;
    },

    /** Issues the replacement and hands it straight to the system's sink; returns references only. */
    async issueReplacement(req: ContainmentRequest): Promise<IssueResult> {
      const rt = runtime(req.system);
      const r = await rt.provider.issueReplacement(
        {
          workflowId: req.workflowId,
          credentialRef: req.detection.credentialRef,
          dryRun: req.dryRun,
          mode: req.mode ?? 'emergency',
        },
        rt.sink,
      );
      log.debug(req.dryRun ? 'dry run: replacement checked' : 'replacement issued', {
        system: req.system,
        delivered: r.delivered,
        sinkRef: r.sinkRef,
      });
      return r;
    },

    async expireSessions(req: ContainmentRequest): Promise<ExpireResult> {
      const r = await runtime(req.system).provider.expireSessions({
        workflowId: req.workflowId,
        credentialRef: req.detection.credentialRef,
        dryRun: req.dryRun,
      });
      log.debug(req.dryRun ? 'dry run: sessions counted' : 'sessions expired', {
        system: req.system,
        terminated: r.terminated,
        wouldTerminate: r.wouldTerminate,
      });
      return r;
    },

    /** Ends the application sessions (session stores, IdP) of the users the inventory ties to the credential. */
    async expireUserSessions(
      req: ContainmentRequest,
    ): Promise<{ expired: number; expiredAt: string | null }> {
      let expired = 0;
      for (const target of runtime(req.system).sessions) {
        const r = await target.expire({ dryRun: req.dryRun });
        expired += req.dryRun ? (r.wouldExpire ?? 0) : r.expired;
        log.debug(req.dryRun ? 'dry run: user sessions counted' : 'user sessions expired', {
          system: req.system,
          target: target.kind,
          expired: r.expired,
          wouldExpire: r.wouldExpire,
        });
      }
      return { expired, expiredAt: req.dryRun ? null : new Date().toISOString() };
    },

    async verifyDead(req: ContainmentRequest): Promise<VerifyResult> {
      const leaked =
        req.detection.hasEvidence && !req.dryRun ? await deps.evidence.take(req.workflowId) : undefined;
      const r = await runtime(req.system).provider.verifyDead(
        { workflowId: req.workflowId, credentialRef: req.detection.credentialRef, dryRun: req.dryRun },
        leaked,
      );
      log.debug('verification', { system: req.system, method: r.method });
      return r;
    },

    /**
     * The mass-leak breaker: counts this run against its system's window (once per workflow, so a
     * retry counts nothing twice) and trips when the count passes the threshold. The first run to
     * trip it pages; every run while it is tripped is held for a human.
     */
    async checkBreaker(req: {
      system: string;
      workflowId: string;
      threshold: number;
      window: string;
    }): Promise<{ tripped: boolean; newlyTripped: boolean; count: number }> {
      const r = await checkBreaker(deps.db, { ...req, windowMs: durationMs(req.window) });
      if (r.newlyTripped) breakerTrips.inc({ system: req.system });
      return r;
    },

    async pageBreaker(req: {
      system: string;
      count: number;
      window: string;
      workflowId: string;
      runId: string;
    }): Promise<{ status: 'sent' | 'logged'; dedupKey: string }> {
      return deps.pagerduty.event({
        routingKey: routeOf(req.system)?.pagerdutyRoutingKey,
        dedupKey: breakerDedupKey(req.system),
        summary: `Mass leak: more than ${req.count - 1} detections for ${req.system} within ${req.window}; automatic rotation paused, runs held for a decision`,
        source: req.system,
        severity: 'critical',
        class: 'mass_leak_breaker',
        details: {
          system: req.system,
          detections_in_window: req.count,
          window: req.window,
          first_held_run: req.workflowId,
        },
        link: runUrl(req),
      });
    },

    /** Tells the scanner the credential is dead (resolve the GitHub alert, the GitGuardian incident). */
    async closeLoop(req: { ref: CloseLoopRef; workflowId: string; runId: string }): Promise<string> {
      let done: boolean;
      try {
        done = await deps.upstream.closeLoop(req.ref, runUrl(req));
      } catch (err) {
        throw classifyFailure(err, `close ${req.ref.kind}`);
      }
      const what =
        req.ref.kind === 'github_alert'
          ? `github_alert ${req.ref.url}`
          : `gitguardian_incident ${req.ref.incidentId}`;
      return done ? `resolved ${what}` : `not resolved (not configured) ${what}`;
    },

    /**
     * A finding that could not be fetched (or not yet: `error` says which) is dispatched without its
     * value; its run escalates to a human.
     */
    async dispatchUnenriched(input: EnrichInput & { error: string }): Promise<Dispatched> {
      const r = input.request;
      const sighting = reduceFinding(
        {
          source: input.source,
          scanner: r.kind === 'github_alert' ? 'github-secret-scanning' : input.source,
          findingId: `${r.repository}#${r.alertNumber}`,
          credentialType: 'generic',
          credentialRef: {
            alert: `${r.repository}#${r.alertNumber}`,
            enrichmentError: input.error.slice(0, 240),
          },
          location: { repository: r.repository, ...(r.alertUrl ? { url: r.alertUrl } : {}) },
          severity: 'high',
        },
        deps.keys,
        new Date(input.receivedAt),
      );
      // A retry may follow an attempt that dispatched and then died: join, never start twice.
      return deps.dispatcher.dispatch(sighting, new Date(input.receivedAt), {
        redelivery: Context.current().info.attempt > 1,
      });
    },

    /**
     * The first recorded outcome of a run (its audit row), for the enrichment run that escalated
     * early and must tell that escalation how the credential's own run ended. Not recorded yet: a
     * retryable failure, so the profile's retry policy is the polling loop.
     */
    async runOutcome(req: { workflowId: string; runId: string }): Promise<{ outcome: Outcome }> {
      const outcome = await firstOutcome(deps.db, req.workflowId, req.runId);
      if (!outcome)
        throw ApplicationFailure.create({
          type: 'RunInProgress',
          message: `${req.workflowId} has no outcome yet`,
        });
      return { outcome };
    },

    /**
     * Fetches a finding a webhook only named, reduces it at once (the value is sealed, never
     * returned) and dispatches it to the run of its credential. A finding our own rules refuse
     * (reduceFinding's 422) fails non-retryable: refetching it changes nothing.
     */
    async enrichAndDispatch(input: EnrichInput): Promise<Dispatched & { detectionId: string }> {
      let fetched: RawFinding;
      try {
        fetched = await deps.upstream.enrich(input.request);
      } catch (err) {
        throw classifyFailure(err, `fetch ${input.request.kind}`);
      }
      // The scanner's fields are stored and shown: made well formed like every activity input. The
      // value itself is only fingerprinted and sealed, so it stays as found.
      const { secret, ...fields } = fetched;
      const finding: RawFinding = { ...wellFormed(fields), ...(secret !== undefined ? { secret } : {}) };
      const sighting = reduceFinding(finding, deps.keys, new Date(input.receivedAt));
      const dispatched = await deps.dispatcher.dispatch(sighting, new Date(input.receivedAt), {
        redelivery: Context.current().info.attempt > 1,
      });
      return { ...dispatched, detectionId: sighting.detection.id };
    },

    async purgeEvidence(req: { workflowId: string }): Promise<void> {
      await deps.evidence.purge(req.workflowId);
    },

    async triggerPagerDuty(summary: RunSummary): Promise<{ status: 'sent' | 'logged'; dedupKey: string }> {
      return deps.pagerduty.trigger(
        summary,
        runUrl(summary),
        routeOf(summary.owner?.system)?.pagerdutyRoutingKey,
      );
    },

    /** Resolves (a retry contained the credential, or it was a false positive) or acknowledges the run's incident. */
    async followUpPagerDuty(req: {
      dedupKey: string;
      action: 'acknowledge' | 'resolve';
      /** The run's owning system (its trigger went to that system's service); unset: read from the audit. */
      system?: string;
    }): Promise<{ status: 'sent' | 'logged'; dedupKey: string }> {
      const system =
        req.system ?? (deps.routes?.size ? await owningSystemOf(deps.db, req.dedupKey) : undefined);
      return deps.pagerduty.followUp(req.dedupKey, req.action, routeOf(system)?.pagerdutyRoutingKey);
    },

    async recordAudit(summary: RunSummary): Promise<{ inserted: boolean }> {
      const r = await insertAuditRow(deps.db, summary);
      // Once per run: a retried audit finds its row and counts nothing twice.
      if (r.inserted) recordRunMetrics(summary);
      // The run's events, with its outcome, queued for the subscriptions that want them (idempotent:
      // a retried audit queues nothing twice). Nothing is sent here: delivery runs do that. A
      // transient failure retries the step (the row is already in); a statement PostgreSQL refuses
      // for good must not turn a recorded outcome into a failed audit: it is logged instead.
      try {
        await deps.outbound?.emitRun(summary, runUrl(summary), true);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code !== 'string' || !permanentSqlState(code)) throw err;
        log.error("the run's outbound events could not be queued (PostgreSQL refused them)", {
          sqlState: code,
        });
      }
      return r;
    },

    /** One delivery round of a subscription's outbound queue (workflows/deliver.ts). */
    async deliverDue(req: {
      subscriptionId: string;
    }): Promise<{ active: boolean; delivered: number; nextDueInMs: number | null }> {
      if (!deps.outbound) return { active: false, delivered: 0, nextDueInMs: null };
      const ctx = Context.current();
      return deps.outbound.deliverDue(req.subscriptionId, () => ctx.heartbeat());
    },

    /** Shows the run's one Slack message as waiting for a decision, with Approve / Deny buttons. */
    async requestApproval(summary: RunSummary): Promise<{ status: 'sent' | 'logged' }> {
      await emitAtWait(summary);
      const r = await upsertMessage(summary, 'approval', 0);
      return { status: r.status === 'logged' ? 'logged' : 'sent' };
    },

    /**
     * Keeps the run's one Slack message current as the run moves (received → approved → rotated →
     * sessions expired → verified dead → audited). Started without waiting by the workflow:
     * containment never waits on Slack. A stale update (an older state arriving late) is skipped.
     */
    async slackProgress(req: {
      summary: RunSummary;
      seq: number;
    }): Promise<{ status: 'sent' | 'logged' | 'skipped' }> {
      await emitAtWait(req.summary);
      return { status: (await upsertMessage(req.summary, 'progress', req.seq)).status };
    },

    /** The outcome: the run's one message shows it (posted if no milestone was shown before). */
    async notifySlack(summary: RunSummary): Promise<{ status: 'sent' | 'logged' }> {
      const r = await upsertMessage(summary, 'outcome', Number.MAX_SAFE_INTEGER);
      return { status: r.status === 'logged' ? 'logged' : 'sent' };
    },
  });
  return acts;

  /** At a wait, the events so far go out (a failure here never holds back the Slack message). */
  async function emitAtWait(summary: RunSummary): Promise<void> {
    await deps.outbound?.emitRun(summary, runUrl(summary), false).catch((err: Error) => {
      Context.current().log.warn("could not queue the run's events at a wait; the audit will", {
        error: err.message,
      });
    });
  }

  /**
   * Upserts the run's one message. Its order is the activity's sequence number in the run (the
   * default activity id), so states land in the order the workflow produced them; `fallback`
   * orders calls made outside a workflow (tests).
   */
  function upsertMessage(summary: SlackSummary, kind: MessageKind, fallback: number) {
    const id = Number(Context.current().info.activityId);
    const order = Number.isSafeInteger(id) ? id : fallback;
    const url = runUrl(summary);
    const channel = routeOf(summary.owner?.system)?.slackChannel;
    return upsertRunMessage(deps, summary, order, () => buildRunMessage(summary, kind, url), {
      logWhenUnconfigured: kind !== 'progress',
      ...(channel ? { channel } : {}),
      ...(deps.slackDigest
        ? {
            digest: {
              ...deps.slackDigest,
              // Digests are per channel: a routed system's burst is summed up in its own channel.
              ...(channel ? { channel } : {}),
              ownMessage: needsOwnMessage(summary, kind),
              line: () => buildDigestLine(summary, kind, url),
              runsUrl: (since: Date, until: Date) =>
                `${deps.temporalUi.uiUrl}/namespaces/${encodeURIComponent(deps.temporalUi.namespace)}/workflows?query=${encodeURIComponent(
                  `WorkflowType = 'killSwitch' AND StartTime BETWEEN '${since.toISOString()}' AND '${until.toISOString()}'`,
                )}`,
            },
          }
        : {}),
    });
  }
}

export type KillSwitchActivities = ReturnType<typeof createActivities>;

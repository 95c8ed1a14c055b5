/**
 * killSwitch: one durable run per leaked credential; every sighting of it joins this run.
 *
 *   prior containment? -> re-verify dead -> audit (already_contained)
 *   resolve owner -> policy
 *     ignore           -> audit (ignored)
 *     notify_only      -> audit (notified) -> Slack
 *     require_approval -> Slack -> wait for a human (update) -> deny: audit (denied) | approve: as rotate
 *     rotate           -> mass-leak breaker (tripped: page once, hold for a human)
 *                         emergency:  revoke -> issue replacement -> expire sessions -> user sessions -> verify dead
 *                         graceful:   issue replacement -> overlap (durable timer) -> revoke -> expire -> ... -> verify
 *                         quarantine: reversible quarantine -> expire sessions -> user sessions -> verify dead
 *                         (dry run: every provider is only asked)
 *       success            -> close the loop with the scanners -> audit (contained | dry_run) -> Slack
 *       failure / no owner -> PagerDuty trigger -> audit (escalated) -> Slack failure message
 *                             -> wait for a human (retryWindow): retry -> contain again -> success:
 *                                resolve the PagerDuty incident -> audit (contained); mark false
 *                                positive -> resolve -> audit (false_positive); acknowledge -> PagerDuty ack
 *   A human may also end a run waiting for approval as a false positive.
 *
 * Containment never waits on notification; notification failures never undo containment.
 *
 * Speed: from the first workflow task to "verified dead" nothing waits on the server. The lookups
 * (one `assess` step), the containment steps and the audit row run as local activities inside the
 * workflow task (each one a marker in history with its summary and result, retried with the same
 * profiles as before); Slack, PagerDuty and the scanners stay regular activities (rate-limited or
 * slow), as do the human waits and the graceful overlap (a durable timer). A contained run is two
 * workflow tasks: everything up to the audit row and the Slack message, then the end.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  log,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  TimeoutFailure,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { KillSwitchActivities } from '../activities';
import { ActivityProfiles, LocalActivityProfiles } from './profiles';
import {
  ErrorType,
  SearchAttributes,
  currentStepQuery,
  acknowledgeSignal,
  decideUpdate,
  durationToMs,
  enrichedSignal,
  falsePositiveUpdate,
  retryUpdate,
  sightingOf,
  sightingSignal,
  type EnrichedRun,
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
} from './shared';

export { ActivityProfiles };

// Local: fast database and provider calls that run inside the workflow task (markers in history).
const lookup = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.lookup);
const critical = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.critical);
const verify = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.verify);
const audit = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.audit);
const cleanup = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.cleanup);
// Regular: rate-limited or slow services, retried by the server for as long as they need.
const escalate = proxyActivities<KillSwitchActivities>(ActivityProfiles.escalate);
const notify = proxyActivities<KillSwitchActivities>(ActivityProfiles.notify);
const closing = proxyActivities<KillSwitchActivities>(ActivityProfiles.closeLoop);

/**
 * What an activity's failure tells a human. A regular activity fails with an ActivityFailure around
 * its cause; a local activity with the cause itself (an ApplicationFailure, or a TimeoutFailure).
 * Anything else (a bug, a cancellation) is not a step's failure and is rethrown.
 */
function failureFrom(err: unknown, step: Step): FailureInfo {
  const cause = err instanceof ActivityFailure ? err.cause : err instanceof ApplicationFailure || err instanceof TimeoutFailure ? err : undefined;
  if (err instanceof ActivityFailure || cause) {
    const type = cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : (cause?.name ?? 'ActivityFailure');
    return { step, type, message: cause?.message ?? (err as Error).message };
  }
  throw err;
}

export async function killSwitch(input: KillSwitchInput): Promise<KillSwitchResult> {
  const { detection } = input;
  const { workflowId, runId } = workflowInfo();
  const timeline: Timeline = { receivedAt: input.receivedAt };
  const sightings: SightingInfo[] = [];
  let step: Step = 'received';
  let owner: OwnerRef | null = null;
  let failure: FailureInfo | undefined;
  let outcome: Outcome | undefined;
  let policy: PolicyDecision | undefined;
  let human: HumanDecision | undefined;
  let retryAsked: HumanAction | undefined;
  let falsePositive: HumanAction | undefined;
  let acknowledged: HumanAction | undefined;
  let enriched: EnrichedRun | undefined;
  let progressSeq = 0;
  const result: Partial<KillSwitchResult> = {};

  // Handlers first, before any await, so no early signal, update or query is missed.
  const addSighting = (s: SightingInfo) => {
    if (!sightings.some((x) => x.detectionId === s.detectionId)) sightings.push(s);
  };
  addSighting(sightingOf(detection, input.receivedAt));
  setHandler(currentStepQuery, () => ({ step, owner, timeline, outcome, failure, policy, sightings }));
  setHandler(sightingSignal, (s) => {
    addSighting(s);
    // Every run gets its first sighting this way (signal-with-start): only later ones are news.
    if (sightings.length > 1) log.info('sighting joined the run', { detectionId: s.detectionId, source: s.source, sightings: sightings.length });
  });
  const requireHuman = (a: { by?: unknown }) => {
    if (typeof a?.by !== 'string' || a.by.trim() === '') throw new Error('by: who decides is required');
    if (policy && policy.approvers.length > 0 && !policy.approvers.includes(a.by)) throw new Error(`${a.by} is not an approver`);
  };
  const waitingForDecision = () => (step === 'awaiting_approval' || step === 'held_by_breaker') && !human && !falsePositive;
  setHandler(
    decideUpdate,
    (d) => {
      human = d;
      return { accepted: true as const, decision: d.decision };
    },
    {
      validator: (d) => {
        if (!waitingForDecision()) throw new Error(`not waiting for a decision (step: ${step})`);
        if (d.decision !== 'approve' && d.decision !== 'deny') throw new Error('decision must be approve or deny');
        requireHuman(d);
      },
    },
  );
  setHandler(
    retryUpdate,
    (a) => {
      retryAsked = a;
      return { accepted: true as const };
    },
    {
      validator: (a) => {
        if (step !== 'awaiting_retry' || retryAsked || falsePositive) throw new Error(`not waiting for a retry (step: ${step})`);
        requireHuman(a);
      },
    },
  );
  setHandler(
    falsePositiveUpdate,
    (a) => {
      falsePositive = a;
      return { accepted: true as const };
    },
    {
      validator: (a) => {
        if (!(waitingForDecision() || (step === 'awaiting_retry' && !retryAsked)) || falsePositive) {
          throw new Error(`only a run waiting for a human can be marked a false positive (step: ${step})`);
        }
        requireHuman(a);
      },
    },
  );
  setHandler(acknowledgeSignal, (a) => {
    if (typeof a?.by === 'string' && a.by.trim() && !acknowledged) acknowledged = a;
  });
  // An early escalation of a finding fetched late (workflows/enrich.ts): its credential's run ended.
  setHandler(enrichedSignal, (e) => {
    if (!enriched && typeof e?.workflowId === 'string' && typeof e.outcome === 'string') enriched = e;
  });

  const enter = (next: Step) => {
    step = next;
    log.debug('step', { step });
    setCurrentDetails(`**${next.replace(/_/g, ' ')}**${owner ? ` · ${owner.system}` : ''}${failure ? ` · ${failure.type}` : ''}`);
  };
  /**
   * Keeps the run's Slack message current without ever waiting on Slack. Only where the run is about
   * to wait (a durable timer, a human): the fast path's one message is its outcome.
   */
  const progress = () => {
    const seq = ++progressSeq;
    notify.slackProgress({ summary: summaryNow(), seq }).catch((err: unknown) => log.warn('Slack progress failed', { message: (err as Error).message }));
  };
  /**
   * Search attributes, upserted only when they changed and only where a run waits or ends: the fast
   * path sets its owner, policy and outcome in one upsert.
   */
  const published: Partial<Record<'owningSystem' | 'policyAction' | 'outcome', string>> = {};
  const publish = () => {
    const want = { owningSystem: owner?.system, policyAction: policy?.action, outcome };
    const changed = (Object.keys(want) as Array<keyof typeof want>).filter((k) => want[k] !== undefined && want[k] !== published[k]);
    if (!changed.length) return;
    upsertSearchAttributes(changed.map((k) => ({ key: SearchAttributes[k], value: (published[k] = want[k]!) })));
  };

  let prior: { runId: string } | null = null;
  try {
    // One step for the lookups: prior containment, owner, policy and (for an automatic rotation) the breaker.
    enter('assessing');
    const assessed = await lookup.assess.executeWithOptions({ ...LocalActivityProfiles.lookup, summary: 'Look up prior containment, owner, policy and breaker' }, [
      { workflowId, runId, detection },
    ]);
    prior = assessed.prior;
    owner = assessed.owner;

    if (prior) {
      // Already contained by an earlier run: prove it is still dead, record the sighting, done.
      if (owner && detection.hasEvidence) {
        enter('verifying');
        const verified = await verify.verifyDead({ workflowId, system: owner.system, detection });
        if (verified.verifiedDeadAt) timeline.verifiedDeadAt = verified.verifiedDeadAt;
        result.verification = { method: verified.method };
      }
      outcome = 'already_contained';
    } else {
      policy = assessed.policy!;

      if (policy.action === 'ignore') outcome = 'ignored';
      else if (policy.action === 'notify_only') outcome = 'notified';
      else if (!owner) failure = { step: 'resolving_owner', type: 'NoOwner', message: assessed.reason ?? 'no owning system matched' };
      else {
        let go = true;
        let quarantineInstead = false;
        if (policy.action === 'require_approval') {
          enter('awaiting_approval');
          publish();
          await notify.requestApproval(summaryNow());
          const decided = await condition(() => human !== undefined || falsePositive !== undefined, (policy.approvalTimeout ?? '30m') as Duration);
          if (falsePositive) {
            outcome = 'false_positive';
            go = false;
          } else if (decided && human!.decision === 'deny') {
            outcome = 'denied';
            go = false;
          } else if (!decided) {
            if (policy.onTimeout === 'rotate') log.warn('nobody decided in time: rotating as the policy says');
            else if (policy.onTimeout === 'quarantine' && owner.canQuarantine) quarantineInstead = true;
            else {
              failure = { step, type: ErrorType.APPROVAL_TIMEOUT, message: `nobody decided within ${policy.approvalTimeout}` };
              go = false;
            }
          }
          if (go) {
            enter('approved');
            // The message loses its buttons at once (a human is looking at it).
            progress();
          }
        }
        if (go && !policy.dryRun && !human) {
          // Many leaks for one system at once: stop rotating automatically and let a human decide.
          // (An automatic rotation's breaker was counted by `assess`; a timed-out approval's is counted now.)
          const b =
            assessed.breaker ??
            (await lookup.checkBreaker.executeWithOptions({ ...LocalActivityProfiles.lookup, summary: `Count this run against the mass-leak breaker of ${owner.system}` }, [
              { system: owner.system, workflowId, threshold: owner.breaker.threshold, window: owner.breaker.window },
            ]));
          if (b.tripped) {
            result.heldByBreaker = true;
            if (b.newlyTripped) {
              try {
                await escalate.pageBreaker({ system: owner.system, count: b.count, window: owner.breaker.window, workflowId, runId });
              } catch (err) {
                log.error('breaker page failed', { message: failureFrom(err, step).message });
              }
            }
            enter('held_by_breaker');
            publish();
            await notify.requestApproval(summaryNow());
            const decided = await condition(() => human !== undefined || falsePositive !== undefined, owner.breaker.holdTimeout as Duration);
            if (falsePositive) {
              outcome = 'false_positive';
              go = false;
            } else if (decided && human!.decision === 'deny') {
              outcome = 'denied';
              go = false;
            } else if (!decided) {
              failure = { step, type: ErrorType.MASS_LEAK_HOLD, message: `held by the mass-leak breaker of ${owner.system}; nobody decided within ${owner.breaker.holdTimeout}` };
              go = false;
            }
          }
        }
        if (go) await contain(owner, policy.dryRun, quarantineInstead);
        if (go && !failure) outcome = policy.dryRun ? 'dry_run' : 'contained';
      }
    }
  } catch (err) {
    failure = failureFrom(err, step);
  }

  async function contain(o: OwnerRef, dryRun: boolean, quarantineInstead = false) {
    const quarantine = o.quarantine || quarantineInstead;
    const req = { workflowId, system: o.system, detection, dryRun, mode: o.mode, quarantine };
    const graceful = o.mode === 'graceful' && o.replacement && !quarantine;
    const rotation: NonNullable<KillSwitchResult['rotation']> = { mode: quarantine ? 'quarantine' : o.mode, newValueDelivered: false, note: '' };
    result.rotation = rotation;
    const notes: string[] = [];

    const issue = async () => {
      enter('issuing_replacement');
      const issued = await critical.issueReplacement.executeWithOptions({ ...LocalActivityProfiles.critical, summary: `Issue a replacement for ${o.system} (${o.sink})` }, [req]);
      if (issued.issuedAt) timeline.replacementIssuedAt = issued.issuedAt;
      rotation.newValueDelivered = issued.delivered;
      if (issued.sinkRef) rotation.sinkRef = issued.sinkRef;
      notes.push(issued.note);
    };
    const revoke = async () => {
      enter('revoking');
      const what = quarantine ? 'Quarantine' : 'Revoke';
      const revoked = await critical.revokeCredential.executeWithOptions({ ...LocalActivityProfiles.critical, summary: `${what} the leaked ${detection.credentialType} in ${o.system}` }, [req]);
      if (revoked.revokedAt) timeline.revokedAt = revoked.revokedAt;
      notes.push(revoked.note);
    };

    if (graceful) {
      await issue();
      // Both values work while the applications pick up the replacement; the timer is durable.
      enter('overlap');
      if (!dryRun) {
        progress();
        await sleep(o.overlap as Duration);
      }
      await revoke();
    } else {
      await revoke();
      if (o.replacement && !quarantine) await issue();
    }
    rotation.note = notes.join('; ');
    const done = [timeline.revokedAt, timeline.replacementIssuedAt].filter((t): t is string => !!t).sort();
    if (done.length) timeline.rotatedAt = done[done.length - 1];

    enter('expiring_sessions');
    const sessions = await critical.expireSessions.executeWithOptions({ ...LocalActivityProfiles.critical, summary: `End the sessions of the credential in ${o.system}` }, [req]);
    if (sessions.sessionsExpiredAt) timeline.sessionsExpiredAt = sessions.sessionsExpiredAt;
    result.sessions = { terminated: dryRun ? (sessions.wouldTerminate ?? 0) : sessions.terminated };

    if (o.userSessionTargets > 0) {
      enter('expiring_user_sessions');
      const users = await critical.expireUserSessions.executeWithOptions({ ...LocalActivityProfiles.critical, summary: `End the app sessions of the users tied to it (${o.userSessionTargets} target(s))` }, [req]);
      result.userSessions = { expired: users.expired };
    }

    enter('verifying');
    const verified = await verify.verifyDead.executeWithOptions({ ...LocalActivityProfiles.verify, summary: `Prove the leaked value is dead in ${o.system}` }, [req]);
    if (verified.verifiedDeadAt) timeline.verifiedDeadAt = verified.verifiedDeadAt;
    result.verification = { method: verified.method };
  }

  function summaryNow(): RunSummary {
    return {
      step,
      workflowId,
      runId,
      detection,
      owner,
      outcome: outcome ?? (failure ? 'escalated' : 'contained'),
      timeline,
      failure,
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
      policy,
      ...(prior ? { priorRunId: prior.runId } : {}),
      ...(human ? { decidedBy: `${human.decision} by ${human.by}${human.reason ? `: ${human.reason}` : ''}` } : {}),
      sightings: [...sightings],
      ...(result.loopClosed ? { loopClosed: result.loopClosed } : {}),
    };
  }

  let purged = false;
  async function purgeEvidence(): Promise<void> {
    if (purged || !(detection.hasEvidence || sightings.length > 1)) return;
    purged = true;
    try {
      await cleanup.purgeEvidence.executeWithOptions({ ...LocalActivityProfiles.cleanup, summary: 'Purge the sealed leaked value' }, [{ workflowId }]);
    } catch (err) {
      // Sealed evidence also expires on its own; a failed purge must not fail the run.
      log.warn('evidence purge failed', { message: failureFrom(err, step).message });
    }
  }

  /** PagerDuty (escalated), the scanners (contained), the audit row, the Slack message. */
  async function record(): Promise<void> {
    if (outcome === 'escalated') {
      enter('escalating');
      try {
        result.pagerduty = await escalate.triggerPagerDuty.executeWithOptions({ ...ActivityProfiles.escalate, summary: `Page PagerDuty: ${failure?.type ?? 'escalated'} at ${failure?.step ?? step}` }, [summaryNow()]);
      } catch (err) {
        const f = failureFrom(err, step);
        log.error('PagerDuty trigger failed', { type: f.type, message: f.message });
        result.pagerduty = { status: 'failed', dedupKey: workflowId };
      }
    }
    if (result.pagerduty && result.pagerduty.status !== 'failed' && (outcome === 'contained' || outcome === 'false_positive')) {
      // The incident of an earlier escalation is over: resolve it (same dedup_key).
      try {
        await escalate.followUpPagerDuty({ dedupKey: result.pagerduty.dedupKey, action: 'resolve' });
        result.resolvedIncident = true;
      } catch (err) {
        log.error('PagerDuty resolve failed', { message: failureFrom(err, step).message });
      }
    }

    if (outcome === 'contained') {
      // Report back to every scanner that can be told (GitHub alert, GitGuardian incident).
      const refs = sightings.filter((s) => s.closeLoop).map((s) => s.closeLoop!);
      if (refs.length) {
        enter('closing_loop');
        result.loopClosed = [];
        for (const ref of refs) {
          try {
            result.loopClosed.push(await closing.closeLoop({ ref, workflowId, runId }));
          } catch (err) {
            const f = failureFrom(err, step);
            log.warn('closing the loop failed', { kind: ref.kind, type: f.type, message: f.message });
          }
        }
      }
    }

    enter('auditing');
    try {
      result.audit = await audit.recordAudit.executeWithOptions({ ...LocalActivityProfiles.audit, summary: `Record the outcome (${outcome}) in the audit table` }, [summaryNow()]);
    } catch (err) {
      // Transient store faults are retried until the database is back; what ends here is permanent
      // (StoreRejected): the run still tells Slack instead of dying on its record.
      const f = failureFrom(err, step);
      log.error('audit row refused', { type: f.type, message: f.message });
      result.audit = { inserted: false, error: `${f.type}: ${f.message}` };
    }
    // Nothing waits for the sealed value any more (only an escalation's retry would): gone before Slack.
    if (outcome !== 'escalated') await purgeEvidence();

    if (outcome !== 'ignored' && outcome !== 'already_contained') {
      enter('notifying');
      try {
        result.slack = await notify.notifySlack.executeWithOptions({ ...ActivityProfiles.notify, summary: `Show the outcome (${outcome}) in Slack` }, [summaryNow()]);
      } catch (err) {
        const f = failureFrom(err, step);
        log.error('Slack notification failed', { type: f.type, message: f.message });
        result.slack = { status: 'failed' };
      }
    } else result.slack = { status: 'skipped' };
  }

  // A dry run never pages: it reports what would have failed.
  if (failure && policy?.dryRun) outcome = 'dry_run';
  outcome ??= failure ? 'escalated' : 'contained';
  if (outcome === 'false_positive' && falsePositive) result.falsePositiveBy = falsePositive.by;
  publish();

  // Record and tell. Nothing below may be cancelled half-way: the audit and the page must happen.
  return CancellationScope.nonCancellable(async () => {
    await record();

    // After an escalation a human may fix the cause and retry, call it a false positive, or acknowledge.
    const windowMs = policy && !policy.dryRun && outcome === 'escalated' ? durationToMs(policy.retryWindow) : 0;
    const until = Date.now() + windowMs;
    let waits = 0;
    while (outcome === 'escalated' && Date.now() < until) {
      enter('awaiting_retry');
      // The first wait follows the escalation's own message; later ones show what changed.
      if (waits++ > 0) progress();
      const handedOver = () => enriched !== undefined && !result.enrichedRun;
      const woke = await condition(
        () => retryAsked !== undefined || falsePositive !== undefined || (acknowledged !== undefined && !result.acknowledgedBy) || handedOver(),
        until - Date.now(),
      );
      if (!woke) {
        // Nobody acted in time: the message loses its Retry button, the run ends escalated.
        enter('done');
        try {
          result.slack = await notify.notifySlack(summaryNow());
        } catch (err) {
          log.warn('Slack notification failed', { message: failureFrom(err, step).message });
        }
        break;
      }
      if (acknowledged && !result.acknowledgedBy) {
        result.acknowledgedBy = acknowledged.by;
        try {
          await escalate.followUpPagerDuty({ dedupKey: result.pagerduty?.dedupKey ?? workflowId, action: 'acknowledge' });
        } catch (err) {
          log.warn('PagerDuty acknowledge failed', { message: failureFrom(err, step).message });
        }
        continue;
      }
      if (handedOver()) {
        result.enrichedRun = enriched;
        if (enriched!.outcome !== 'contained' && enriched!.outcome !== 'already_contained') {
          // The credential's run decided otherwise (it escalated itself, a policy, a human): the
          // message says where to look, and this run keeps waiting.
          try {
            result.slack = await notify.notifySlack(summaryNow());
          } catch (err) {
            log.warn('Slack notification failed', { message: failureFrom(err, step).message });
          }
          continue;
        }
        // Contained by the credential's own run: this escalation is over.
        outcome = 'contained';
        failure = undefined;
      } else if (falsePositive) {
        outcome = 'false_positive';
        result.falsePositiveBy = falsePositive.by;
      } else if (retryAsked) {
        (result.retriedBy ??= []).push(retryAsked.by);
        retryAsked = undefined;
        const before = failure;
        failure = undefined;
        try {
          enter('resolving_owner');
          owner = (await lookup.resolveOwner(detection)).owner;
          if (!owner) failure = { step: 'resolving_owner', type: 'NoOwner', message: 'still no owning system' };
          else await contain(owner, false);
        } catch (err) {
          failure = failureFrom(err, step);
        }
        if (!failure) outcome = 'contained';
        else {
          log.warn('retry failed', { before: before?.type, after: failure.type });
          // Same dedup_key: PagerDuty updates the open incident, Slack shows the new failure.
          try {
            result.pagerduty = await escalate.triggerPagerDuty(summaryNow());
          } catch (err) {
            log.error('PagerDuty trigger failed', { message: failureFrom(err, step).message });
          }
          continue;
        }
      }
      publish();
      await record();
    }

    await purgeEvidence();

    enter('done');
    const { workflowId: _w, runId: _r, detection: _d, step: _s, ...outcomeFields } = summaryNow();
    return { ...outcomeFields, slack: result.slack ?? { status: 'skipped' }, audit: result.audit ?? { inserted: false } };
  });
}

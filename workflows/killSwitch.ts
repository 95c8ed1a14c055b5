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
 * The parts: ./run.ts (the run's state, handlers, summary), ./decide.ts (the human waits and the
 * breaker), ./contain.ts (the containment steps), ./record.ts (page, scanners, audit, Slack, and the
 * wait after an escalation), ./steps.ts (the activities by profile).
 *
 * Speed: from the first workflow task to "verified dead" nothing waits on the server. The lookups
 * (one `assess` step), the containment steps and the audit row run as local activities inside the
 * workflow task (each one a marker in history with its summary and result, retried with the same
 * profiles as before); Slack, PagerDuty and the scanners stay regular activities (rate-limited or
 * slow), as do the human waits and the graceful overlap (a durable timer). A contained run is two
 * workflow tasks: everything up to the audit row and the Slack message, then the end.
 */
import { CancellationScope, log, workflowInfo } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { contain, reverify } from './contain';
import { awaitDecision, breakerHold, type Decision } from './decide';
import { ActivityProfiles, LocalActivityProfiles } from './profiles';
import { awaitHumanAfterEscalation, purgeEvidence, record } from './record';
import { Run } from './run';
import { ErrorType } from '../contracts/errors';
import { type KillSwitchInput, type KillSwitchResult } from '../contracts/run';
import { failureFrom, lookup } from './steps';

export { ActivityProfiles };

export async function killSwitch(input: KillSwitchInput): Promise<KillSwitchResult> {
  const { workflowId, runId } = workflowInfo();
  const run = new Run(input, workflowId, runId);
  const { detection } = run;

  try {
    // One step for the lookups: prior containment, owner, policy and (for an automatic rotation) the breaker.
    run.enter('assessing');
    const assessed = await lookup.assess.executeWithOptions(
      { ...LocalActivityProfiles.lookup, summary: 'Look up prior containment, owner, policy and breaker' },
      [{ workflowId, runId, detection }],
    );
    run.prior = assessed.prior;
    run.owner = assessed.owner;
    const owner = run.owner;

    if (run.prior) {
      // Already contained by an earlier run: prove it is still dead, record the sighting, done.
      if (owner && detection.hasEvidence) await reverify(run, owner);
      run.outcome = 'already_contained';
    } else {
      const policy = (run.policy = assessed.policy!);
      if (policy.action === 'ignore') run.outcome = 'ignored';
      else if (policy.action === 'notify_only') run.outcome = 'notified';
      else if (!owner)
        run.failure = {
          step: 'resolving_owner',
          type: 'NoOwner',
          message: assessed.reason ?? 'no owning system matched',
        };
      else {
        let decision: Decision | undefined;
        let quarantineInstead = false;
        if (policy.action === 'require_approval') {
          const approvalTimeout = policy.approvalTimeout ?? '30m';
          decision = await awaitDecision(run, 'awaiting_approval', approvalTimeout as Duration);
          if (decision === 'timed_out') {
            if (policy.onTimeout === 'rotate')
              log.warn('nobody decided in time: rotating as the policy says');
            else if (policy.onTimeout === 'quarantine' && owner.canQuarantine) quarantineInstead = true;
            else
              run.failure = {
                step: run.step,
                type: ErrorType.APPROVAL_TIMEOUT,
                message: `nobody decided within ${approvalTimeout}`,
              };
          }
        }
        let go =
          decision === undefined || decision === 'approved' || (decision === 'timed_out' && !run.failure);
        if (go && decision !== undefined) {
          run.enter('approved');
          // The message loses its buttons at once (a human is looking at it).
          run.progress();
        }
        // A human's approval overrides the breaker; an automatic rotation (or a timed-out approval) meets it.
        if (go && !policy.dryRun && !run.human) {
          const held = await breakerHold(run, owner, assessed.breaker);
          if (held === 'timed_out') {
            run.failure = {
              step: run.step,
              type: ErrorType.MASS_LEAK_HOLD,
              message: `held by the mass-leak breaker of ${owner.system}; nobody decided within ${owner.breaker.holdTimeout}`,
            };
          }
          if (held !== undefined) decision = held;
          go = held === undefined || held === 'approved';
        }
        if (decision === 'false_positive') run.outcome = 'false_positive';
        else if (decision === 'denied') run.outcome = 'denied';
        if (go) await contain(run, owner, policy.dryRun, quarantineInstead);
        if (go && !run.failure) run.outcome = policy.dryRun ? 'dry_run' : 'contained';
      }
    }
  } catch (err) {
    run.failure = failureFrom(err, run.step);
  }

  // A dry run never pages: it reports what would have failed.
  if (run.failure && run.policy?.dryRun) run.outcome = 'dry_run';
  run.outcome ??= run.failure ? 'escalated' : 'contained';
  if (run.outcome === 'false_positive' && run.falsePositive)
    run.result.falsePositiveBy = run.falsePositive.by;
  run.publish();

  // Record and tell. Nothing below may be cancelled half-way: the audit and the page must happen.
  return CancellationScope.nonCancellable(async () => {
    await record(run);
    await awaitHumanAfterEscalation(run);
    await purgeEvidence(run);

    run.enter('done');
    const { workflowId: _w, runId: _r, detection: _d, step: _s, ...outcomeFields } = run.summary();
    return {
      ...outcomeFields,
      slack: run.result.slack ?? { status: 'skipped' },
      audit: run.result.audit ?? { inserted: false },
    };
  });
}

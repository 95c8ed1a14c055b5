/**
 * Recording and telling: PagerDuty (escalated), the scanners (contained), the audit row, the purge
 * of the sealed value, the Slack message; and, after an escalation, the wait for a human (retry,
 * false positive, acknowledge) or for the credential's own run (an early-escalated enrichment).
 * Notification failures are recorded, never undo containment, never fail the run.
 */
import { condition, log } from '@temporalio/workflow';
import { contain } from './contain';
import { ActivityProfiles, LocalActivityProfiles } from './profiles';
import type { Run } from './run';
import { durationToMs } from '../contracts/durations';
import { audit, cleanup, closing, escalate, failureFrom, lookup, notify } from './steps';

/** PagerDuty (escalated), the scanners (contained), the audit row, the Slack message. */
export async function record(run: Run): Promise<void> {
  const { result, workflowId, runId } = run;
  if (run.outcome === 'escalated') {
    run.enter('escalating');
    try {
      result.pagerduty = await escalate.triggerPagerDuty.executeWithOptions(
        {
          ...ActivityProfiles.escalate,
          summary: `Page PagerDuty: ${run.failure?.type ?? 'escalated'} at ${run.failure?.step ?? run.step}`,
        },
        [run.summary()],
      );
    } catch (err) {
      const f = failureFrom(err, run.step);
      log.error('PagerDuty trigger failed', { type: f.type, message: f.message });
      result.pagerduty = { status: 'failed', dedupKey: workflowId };
    }
  }
  if (
    result.pagerduty &&
    result.pagerduty.status !== 'failed' &&
    (run.outcome === 'contained' || run.outcome === 'false_positive')
  ) {
    // The incident of an earlier escalation is over: resolve it (same dedup_key).
    try {
      await escalate.followUpPagerDuty({
        dedupKey: result.pagerduty.dedupKey,
        action: 'resolve',
        ...(run.owner ? { system: run.owner.system } : {}),
      });
      result.resolvedIncident = true;
    } catch (err) {
      log.error('PagerDuty resolve failed', { message: failureFrom(err, run.step).message });
    }
  }

  if (run.outcome === 'contained') {
    // Report back to every scanner that can be told (GitHub alert, GitGuardian incident).
    const refs = run.sightings.filter((s) => s.closeLoop).map((s) => s.closeLoop!);
    if (refs.length) {
      run.enter('closing_loop');
      result.loopClosed = [];
      for (const ref of refs) {
        try {
          result.loopClosed.push(await closing.closeLoop({ ref, workflowId, runId }));
        } catch (err) {
          const f = failureFrom(err, run.step);
          log.warn('closing the loop failed', { kind: ref.kind, type: f.type, message: f.message });
        }
      }
    }
  }

  run.enter('auditing');
  try {
    result.audit = await audit.recordAudit.executeWithOptions(
      { ...LocalActivityProfiles.audit, summary: `Record the outcome (${run.outcome}) in the audit table` },
      [run.summary()],
    );
  } catch (err) {
    // Transient store faults are retried until the database is back; what ends here is permanent
    // (StoreRejected): the run still tells Slack instead of dying on its record.
    const f = failureFrom(err, run.step);
    log.error('audit row refused', { type: f.type, message: f.message });
    result.audit = { inserted: false, error: `${f.type}: ${f.message}` };
  }
  // Nothing waits for the sealed value any more (only an escalation's retry would): gone before Slack.
  if (run.outcome !== 'escalated') await purgeEvidence(run);

  if (run.outcome !== 'ignored' && run.outcome !== 'already_contained') {
    run.enter('notifying');
    try {
      result.slack = await notify.notifySlack.executeWithOptions(
        { ...ActivityProfiles.notify, summary: `Show the outcome (${run.outcome}) in Slack` },
        [run.summary()],
      );
    } catch (err) {
      const f = failureFrom(err, run.step);
      log.error('Slack notification failed', { type: f.type, message: f.message });
      result.slack = { status: 'failed' };
    }
  } else result.slack = { status: 'skipped' };
}

/** Removes the sealed leaked value(s) of this run once; a failure is logged (they also expire). */
export async function purgeEvidence(run: Run): Promise<void> {
  if (run.evidencePurged || !(run.detection.hasEvidence || run.sightings.length > 1)) return;
  run.evidencePurged = true;
  try {
    await cleanup.purgeEvidence.executeWithOptions(
      { ...LocalActivityProfiles.cleanup, summary: 'Purge the sealed leaked value' },
      [{ workflowId: run.workflowId }],
    );
  } catch (err) {
    // Sealed evidence also expires on its own; a failed purge must not fail the run.
    log.warn('evidence purge failed', { message: failureFrom(err, run.step).message });
  }
}

/** Tells Slack the current state; a failure is logged. */
async function tellSlack(run: Run): Promise<void> {
  try {
    run.result.slack = await notify.notifySlack(run.summary());
  } catch (err) {
    log.warn('Slack notification failed', { message: failureFrom(err, run.step).message });
  }
}

/**
 * After an escalation a human may fix the cause and retry, call it a false positive, or
 * acknowledge, within the policy's retry window; the credential's own run may also contain it.
 */
export async function awaitHumanAfterEscalation(run: Run): Promise<void> {
  const { result, policy } = run;
  const windowMs =
    policy && !policy.dryRun && run.outcome === 'escalated' ? durationToMs(policy.retryWindow) : 0;
  const until = Date.now() + windowMs;
  let waits = 0;
  while (run.outcome === 'escalated' && Date.now() < until) {
    run.enter('awaiting_retry');
    // The first wait follows the escalation's own message; later ones show what changed.
    if (waits++ > 0) run.progress();
    const handedOver = () => run.enriched !== undefined && !result.enrichedRun;
    const woke = await condition(
      () =>
        run.retryAsked !== undefined ||
        run.falsePositive !== undefined ||
        (run.acknowledged !== undefined && !result.acknowledgedBy) ||
        handedOver(),
      until - Date.now(),
    );
    if (!woke) {
      // Nobody acted in time: the message loses its Retry button, the run ends escalated.
      run.enter('done');
      await tellSlack(run);
      break;
    }
    if (run.acknowledged && !result.acknowledgedBy) {
      result.acknowledgedBy = run.acknowledged.by;
      try {
        await escalate.followUpPagerDuty({
          dedupKey: result.pagerduty?.dedupKey ?? run.workflowId,
          action: 'acknowledge',
          ...(run.owner ? { system: run.owner.system } : {}),
        });
      } catch (err) {
        log.warn('PagerDuty acknowledge failed', { message: failureFrom(err, run.step).message });
      }
      continue;
    }
    if (handedOver()) {
      result.enrichedRun = run.enriched;
      if (run.enriched!.outcome !== 'contained' && run.enriched!.outcome !== 'already_contained') {
        // The credential's run decided otherwise (it escalated itself, a policy, a human): the
        // message says where to look, and this run keeps waiting.
        await tellSlack(run);
        continue;
      }
      // Contained by the credential's own run: this escalation is over.
      run.outcome = 'contained';
      run.failure = undefined;
    } else if (run.falsePositive) {
      run.outcome = 'false_positive';
      result.falsePositiveBy = run.falsePositive.by;
    } else if (run.retryAsked) {
      (result.retriedBy ??= []).push(run.retryAsked.by);
      run.retryAsked = undefined;
      const before = run.failure;
      run.failure = undefined;
      try {
        run.enter('resolving_owner');
        run.owner = (await lookup.resolveOwner(run.detection)).owner;
        if (!run.owner)
          run.failure = { step: 'resolving_owner', type: 'NoOwner', message: 'still no owning system' };
        else await contain(run, run.owner, false);
      } catch (err) {
        run.failure = failureFrom(err, run.step);
      }
      if (!run.failure) run.outcome = 'contained';
      else {
        log.warn('retry failed', { before: before?.type, after: run.failure.type });
        // Same dedup_key: PagerDuty updates the open incident, Slack shows the new failure.
        try {
          result.pagerduty = await escalate.triggerPagerDuty(run.summary());
        } catch (err) {
          log.error('PagerDuty trigger failed', { message: failureFrom(err, run.step).message });
        }
        continue;
      }
    }
    run.publish();
    await record(run);
  }
}

/**
 * The human decisions of a run: one wait for the approval a policy asks for and for the hold of a
 * tripped mass-leak breaker (the `decide` and `markFalsePositive` updates), and the breaker itself.
 */
import { condition, log } from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { LocalActivityProfiles } from './profiles';
import type { Run } from './run';
import type { OwnerRef } from '../contracts/run';
import { escalate, failureFrom, lookup, notify } from './steps';

export type Decision = 'approved' | 'denied' | 'false_positive' | 'timed_out';

/**
 * Shows the run's message with its buttons and waits for a human, at most `timeout`: approve,
 * deny, or a false positive. The caller decides what a timeout means.
 */
export async function awaitDecision(
  run: Run,
  step: 'awaiting_approval' | 'held_by_breaker',
  timeout: Duration,
): Promise<Decision> {
  run.enter(step);
  run.publish();
  await notify.requestApproval(run.summary());
  const decided = await condition(() => run.human !== undefined || run.falsePositive !== undefined, timeout);
  if (run.falsePositive) return 'false_positive';
  if (!decided) return 'timed_out';
  return run.human!.decision === 'deny' ? 'denied' : 'approved';
}

/**
 * Many leaks for one system at once: the run counts against the system's window (counted by
 * `assess` for an automatic rotation, here after an approval that timed out into one); when the
 * breaker is tripped, the first run pages and every run waits for a human.
 */
export async function breakerHold(
  run: Run,
  owner: OwnerRef,
  counted?: { tripped: boolean; newlyTripped: boolean; count: number },
): Promise<Decision | undefined> {
  const b =
    counted ??
    (await lookup.checkBreaker.executeWithOptions(
      {
        ...LocalActivityProfiles.lookup,
        summary: `Count this run against the mass-leak breaker of ${owner.system}`,
      },
      [
        {
          system: owner.system,
          workflowId: run.workflowId,
          threshold: owner.breaker.threshold,
          window: owner.breaker.window,
        },
      ],
    ));
  if (!b.tripped) return undefined;
  run.result.heldByBreaker = true;
  if (b.newlyTripped) {
    try {
      await escalate.pageBreaker({
        system: owner.system,
        count: b.count,
        window: owner.breaker.window,
        workflowId: run.workflowId,
        runId: run.runId,
      });
    } catch (err) {
      log.error('breaker page failed', { message: failureFrom(err, run.step).message });
    }
  }
  return awaitDecision(run, 'held_by_breaker', owner.breaker.holdTimeout as Duration);
}

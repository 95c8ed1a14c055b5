/**
 * The activities a killSwitch run calls, by profile. Local: fast database and provider calls that
 * run inside the workflow task (markers in history). Regular: rate-limited or slow services,
 * retried by the server for as long as they need.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  proxyActivities,
  proxyLocalActivities,
  TimeoutFailure,
} from '@temporalio/workflow';
import type { KillSwitchActivities } from '../activities';
import { ActivityProfiles, LocalActivityProfiles } from './profiles';
import type { FailureInfo, Step } from '../contracts/run';

export const lookup = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.lookup);
export const critical = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.critical);
export const verify = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.verify);
export const audit = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.audit);
export const cleanup = proxyLocalActivities<KillSwitchActivities>(LocalActivityProfiles.cleanup);
export const escalate = proxyActivities<KillSwitchActivities>(ActivityProfiles.escalate);
export const notify = proxyActivities<KillSwitchActivities>(ActivityProfiles.notify);
export const closing = proxyActivities<KillSwitchActivities>(ActivityProfiles.closeLoop);

/**
 * What an activity's failure tells a human. A regular activity fails with an ActivityFailure around
 * its cause; a local activity with the cause itself (an ApplicationFailure, or a TimeoutFailure).
 * Anything else (a bug, a cancellation) is not a step's failure and is rethrown.
 */
export function failureFrom(err: unknown, step: Step): FailureInfo {
  const cause =
    err instanceof ActivityFailure
      ? err.cause
      : err instanceof ApplicationFailure || err instanceof TimeoutFailure
        ? err
        : undefined;
  if (err instanceof ActivityFailure || cause) {
    const type =
      cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : (cause?.name ?? 'ActivityFailure');
    return { step, type, message: cause?.message ?? (err as Error).message };
  }
  throw err;
}

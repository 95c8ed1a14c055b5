/**
 * deliverEvents: the delivery run of one subscription. It delivers what the subscription's queue
 * (killswitch_event_queue) holds, then sleeps until the next row is due or a `wake` signal says new
 * events were queued. The queue in PostgreSQL is the truth: a signal carries nothing, a lost signal
 * is caught up by the worker's sweep, and a destination that is down keeps its rows pending (retried
 * with the subscription's backoff) without holding back any other subscription's run.
 *
 *   loop: deliverDue (activity) -> switched off? end
 *         -> wait for `wake` or the next due row (at most IDLE_CHECK) -> after MAX_ROUNDS: continue-as-new
 *   an idle run with nothing pending ends; the next queued event starts it again (signal-with-start).
 */
import { condition, continueAsNew, proxyActivities, setHandler } from '@temporalio/workflow';
import type { KillSwitchActivities } from '../activities';
import { wakeSignal, type DeliverEventsInput } from '../contracts/events';
import { ActivityProfiles } from './profiles';

const { deliverDue } = proxyActivities<Pick<KillSwitchActivities, 'deliverDue'>>(ActivityProfiles.deliver);

/** Rounds before the run continues as new (keeps its history short). */
const MAX_ROUNDS = 200;
/** How long an idle run with nothing pending waits for a wake before it ends. */
const IDLE_END_MS = 60_000;

export async function deliverEvents(input: DeliverEventsInput): Promise<{ rounds: number; ended: string }> {
  let woken = false;
  setHandler(wakeSignal, () => {
    woken = true;
  });
  for (let round = 1; round <= MAX_ROUNDS; round++) {
    woken = false;
    const r = await deliverDue({ subscriptionId: input.subscriptionId });
    if (!r.active) return { rounds: round, ended: 'subscription inactive' };
    if (r.nextDueInMs === 0) continue;
    const waitMs = r.nextDueInMs ?? IDLE_END_MS;
    const wokenUp = await condition(() => woken, waitMs);
    if (!wokenUp && r.nextDueInMs === null) return { rounds: round, ended: 'idle' };
  }
  return continueAsNew<typeof deliverEvents>(input);
}

/**
 * enrichDetection: the durable intake of a webhook that names a finding without its value (GitHub's
 * secret_scanning_alert). The ingress acknowledges the delivery once this run has started; the
 * activity fetches the finding from the scanner's API, reduces it (the value is sealed, never
 * returned) and dispatches it to the killSwitch run of its credential. A finding that cannot be
 * fetched is still a leak: it is dispatched without its value, and that run escalates to a human.
 */
import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { KillSwitchActivities } from '../activities';
import { ActivityProfiles } from './profiles';
import type { EnrichInput } from './shared';

const enrich = proxyActivities<KillSwitchActivities>(ActivityProfiles.enrich);
const lookup = proxyActivities<KillSwitchActivities>(ActivityProfiles.lookup);

export async function enrichDetection(input: EnrichInput): Promise<{ workflowId: string; runId: string; enriched: boolean }> {
  try {
    const r = await enrich.enrichAndDispatch(input);
    return { workflowId: r.workflowId, runId: r.runId, enriched: true };
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    const cause = err.cause;
    const why = `${cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : (cause?.name ?? 'Error')}: ${cause?.message ?? err.message}`;
    const r = await lookup.dispatchUnenriched({ ...input, error: why });
    return { workflowId: r.workflowId, runId: r.runId, enriched: false };
  }
}

/**
 * enrichDetection: the durable intake of a webhook that names a finding without its value (GitHub's
 * secret_scanning_alert). The ingress acknowledges the delivery once this run has started; the
 * activity fetches the finding from the scanner's API, reduces it (the value is sealed, never
 * returned) and dispatches it to the killSwitch run of its credential.
 *
 *   fetch (retried under `enrich`, ~an hour) ─ succeeds in time ─────────────> credential's run
 *     └ still failing after `escalateAfter` (2m) -> escalate without the value (that run pages a
 *       human) and keep fetching -> succeeds: credential's run contains it; its outcome is told to
 *       the escalated run (contained: the incident is resolved, Slack and the audit say by which run)
 *   fetch fails for good (404, a refused finding) -> escalate without the value
 */
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import type { KillSwitchActivities } from '../activities';
import type { Dispatched } from '../contracts/run';
import { ActivityProfiles, ENRICH_ESCALATE_AFTER } from './profiles';
import { enrichedSignal, type EnrichedRun, type EnrichInput } from '../contracts/enrichment';
import { ErrorType } from '../contracts/errors';

const enrich = proxyActivities<KillSwitchActivities>(ActivityProfiles.enrich);
const handOff = proxyActivities<KillSwitchActivities>(ActivityProfiles.handOff);
const outcomes = proxyActivities<KillSwitchActivities>(ActivityProfiles.awaitOutcome);
const escalate = proxyActivities<KillSwitchActivities>(ActivityProfiles.escalate);

export interface EnrichResult {
  /** The run the finding went to: its credential's (enriched) or the escalation's. */
  workflowId: string;
  runId: string;
  enriched: boolean;
  /** The run that escalated the finding while its fetch kept failing. */
  escalated?: { workflowId: string; runId: string };
}

type Fetched =
  | { ok: true; r: Awaited<ReturnType<KillSwitchActivities['enrichAndDispatch']>> }
  | { ok: false; err: unknown };

export async function enrichDetection(input: EnrichInput): Promise<EnrichResult> {
  const after = input.escalateAfter ?? ENRICH_ESCALATE_AFTER;
  let fetched: Fetched | undefined;
  // Settles into `fetched` (never an unhandled rejection) while the timer below runs.
  const fetching = enrich.enrichAndDispatch(input).then(
    (r) => void (fetched = { ok: true, r }),
    (err: unknown) => void (fetched = { ok: false, err }),
  );

  let early: Dispatched | undefined;
  if (!(await condition(() => fetched !== undefined, after as Duration))) {
    // A leak reaches a human within minutes even while the scanner's API is down.
    log.warn('finding not fetched in time: escalating without its value, still fetching', { after });
    early = await handOff.dispatchUnenriched({
      ...input,
      error: `${ErrorType.ENRICHMENT_DELAYED}: the finding could not be fetched within ${after}; still trying`,
    });
    await fetching;
  }
  const f = fetched!;

  if (!f.ok) {
    if (!(f.err instanceof ActivityFailure)) throw f.err;
    if (early)
      return { workflowId: early.workflowId, runId: early.runId, enriched: false, escalated: runOf(early) };
    const cause = f.err.cause;
    const why = `${cause instanceof ApplicationFailure ? (cause.type ?? 'Error') : (cause?.name ?? 'Error')}: ${cause?.message ?? f.err.message}`;
    const r = await handOff.dispatchUnenriched({ ...input, error: why });
    return { workflowId: r.workflowId, runId: r.runId, enriched: false };
  }
  if (early) await handOver(early, f.r);
  return {
    workflowId: f.r.workflowId,
    runId: f.r.runId,
    enriched: true,
    ...(early ? { escalated: runOf(early) } : {}),
  };
}

const runOf = (d: Dispatched) => ({ workflowId: d.workflowId, runId: d.runId });

/** Tells the early escalation how the credential's own run ended. */
async function handOver(early: Dispatched, joined: Dispatched): Promise<void> {
  let outcome: EnrichedRun['outcome'];
  try {
    ({ outcome } = await outcomes.runOutcome(runOf(joined)));
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    log.warn('the credential run recorded no outcome in time; the escalation stays open', {
      workflowId: joined.workflowId,
    });
    return;
  }
  const enrichedRun: EnrichedRun = { ...runOf(joined), temporalUiUrl: joined.temporalUiUrl, outcome };
  try {
    await getExternalWorkflowHandle(early.workflowId, early.runId).signal(enrichedSignal, enrichedRun);
  } catch (err) {
    // The escalated run has ended (its retry window is over): at least close its incident.
    log.warn('the escalated run has ended', {
      workflowId: early.workflowId,
      message: (err as Error).message,
    });
    if (outcome === 'contained' || outcome === 'already_contained') {
      try {
        await escalate.followUpPagerDuty({ dedupKey: early.workflowId, action: 'resolve' });
      } catch (e) {
        log.error('PagerDuty resolve failed', { message: (e as Error).message });
      }
    }
  }
}

/**
 * The enrichDetection workflow's branches on a local Temporal server with fake activities
 * (test/helpers/workflow-env.ts): a finding fetched in time, refused for good, fetched late (the
 * finding is escalated first, then the escalation is told how the credential's own run ended),
 * fetched late and then refused, a credential run with no outcome in time, an escalation that
 * already ended. Where the early escalation must receive the hand-over, it is a real killSwitch run
 * on the same worker, started by the fake dispatcher the way the real one starts it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Detection } from '../../contracts/detection';
import type { EnrichInput } from '../../contracts/enrichment';
import { ErrorType } from '../../contracts/errors';
import {
  falsePositiveUpdate,
  killSwitchWorkflowId,
  sightingOf,
  sightingSignal,
  type Outcome,
  type SightingInfo,
} from '../../contracts/run';
import type { Dispatched } from '../../contracts/run';
import type { EnrichResult, enrichDetection } from '../../workflows/enrich';
import type { killSwitch } from '../../workflows/killSwitch';
import {
  FakeActivities,
  startWorkflowEnv,
  until,
  waitForStep,
  type Scripts,
  type WorkflowEnv,
} from '../helpers/workflow-env';

let w: WorkflowEnv;
beforeAll(async () => {
  w = await startWorkflowEnv();
});
afterAll(async () => {
  await w?.teardown();
});

const RECEIVED_AT = '2025-03-01T10:00:00.000Z';
const hex = (bytes: number) => randomBytes(bytes).toString('hex');

function input(over: Partial<EnrichInput> = {}): EnrichInput {
  const alertNumber = parseInt(hex(2), 16);
  return {
    source: 'github',
    deliveryId: `delivery-${hex(4)}`,
    request: {
      kind: 'github_alert',
      repository: 'acme/orders',
      alertNumber,
      action: 'created',
      alertUrl: `https://api.github.com/repos/acme/orders/secret-scanning/alerts/${alertNumber}`,
    },
    receivedAt: RECEIVED_AT,
    escalateAfter: '1s',
    ...over,
  };
}

/** The run the fetched finding went to (its credential's): only an id here, its outcome is scripted. */
const credentialRun = (): Dispatched => {
  const workflowId = killSwitchWorkflowId('github_token', hex(16));
  return { workflowId, runId: randomUUID(), temporalUiUrl: `http://ui/${workflowId}` };
};

const refuse = (type: string, message: string, nonRetryable = false): never => {
  throw ApplicationFailure.create({ type, message, nonRetryable });
};

/** A gate an activity waits on until the test opens it. */
interface Gate {
  wait: Promise<void>;
  open: () => void;
}
function gate(): Gate {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/**
 * The unenriched finding's own run, as the real dispatcher starts it (signal-with-start on the
 * worker's task queue): a real killSwitch run, which escalates (no system owns a finding without
 * its value) and waits for a human or for the hand-over.
 */
async function startEscalation(req: EnrichInput & { error: string }): Promise<Dispatched> {
  const r = req.request;
  const d: Detection = {
    id: `${req.source}:${r.repository}#${r.alertNumber}`,
    source: req.source,
    scanner: 'github-secret-scanning',
    credentialType: 'generic',
    credentialRef: { alert: `${r.repository}#${r.alertNumber}`, enrichmentError: req.error },
    fingerprint: `hmac-sha256:${hex(32)}`,
    location: { repository: r.repository },
    severity: 'high',
    detectedAt: req.receivedAt,
    hasEvidence: false,
  };
  const h = await w.env.client.workflow.signalWithStart<typeof killSwitch, [SightingInfo]>('killSwitch', {
    taskQueue: Context.current().info.taskQueue,
    workflowId: killSwitchWorkflowId(d.credentialType, d.fingerprint!),
    args: [{ detection: d, receivedAt: req.receivedAt }],
    signal: sightingSignal,
    signalArgs: [sightingOf(d, req.receivedAt)],
  });
  return { workflowId: h.workflowId, runId: h.signaledRunId, temporalUiUrl: `http://ui/${h.workflowId}` };
}

/** The early escalation's activities: no owner, paged, audited, told, waiting up to 30 s. */
const escalationRun: Scripts = {
  assess: () => ({
    prior: null,
    owner: null,
    reason: 'no system handles generic',
    policy: { action: 'rotate', rule: 'default', dryRun: false, approvers: [], retryWindow: '30s' },
  }),
  triggerPagerDuty: (s) => ({ status: 'sent', dedupKey: s.workflowId }),
  followUpPagerDuty: (req) => ({ status: 'sent', dedupKey: req.dedupKey }),
  recordAudit: () => ({ inserted: true }),
  notifySlack: () => ({ status: 'sent' }),
  slackProgress: () => ({ status: 'sent' }),
};

interface EnrichRun<T> {
  /** The fetch the fakes hold back; opened in any case when the test ends, so a failure never hangs the worker. */
  fetch?: Gate;
  /** While the enrichment runs; `startedAt`: just before it was started. */
  during?: (h: WorkflowHandle<typeof enrichDetection>, startedAt: number) => Promise<void>;
  /** After it ended, while the worker still runs (the early escalation may still be running). */
  after?: (result: EnrichResult) => Promise<T>;
}

/** One enrichment run, started the way the ingress starts it, on a fresh worker with these fakes. */
async function enrich<T = undefined>(
  fakes: FakeActivities,
  inp: EnrichInput,
  opts: EnrichRun<T> = {},
): Promise<{ result: EnrichResult; after: T }> {
  return w.withWorker(fakes, async (taskQueue) => {
    try {
      const startedAt = Date.now();
      const h = await w.env.client.workflow.start<typeof enrichDetection>('enrichDetection', {
        taskQueue,
        workflowId: `enrich-${inp.source}-${inp.deliveryId}`,
        args: [inp],
      });
      await opts.during?.(h, startedAt);
      opts.fetch?.open();
      const result = await h.result();
      return { result, after: (await opts.after?.(result)) as T };
    } finally {
      opts.fetch?.open();
    }
  });
}

const escalationOf = (result: EnrichResult) =>
  w.env.client.workflow.getHandle<typeof killSwitch>(result.escalated!.workflowId, result.escalated!.runId);
const earlyEscalation = (fakes: FakeActivities) =>
  until('the early escalation', () => fakes.count('dispatchUnenriched') === 1);
const namesOf = (fakes: FakeActivities, names: readonly string[]) =>
  fakes.names().filter((n) => names.includes(n));
const ENRICH_STEPS = ['enrichAndDispatch', 'dispatchUnenriched', 'runOutcome', 'followUpPagerDuty'] as const;

describe.concurrent('enrichDetection', () => {
  it('fetched in time: the finding goes to its credential run, nobody is paged', async () => {
    const joined = credentialRun();
    const inp = input({ escalateAfter: '30s' });
    const fakes = new FakeActivities({
      enrichAndDispatch: () => ({ ...joined, detectionId: 'github:acme/orders#1' }),
    });
    const { result } = await enrich(fakes, inp);
    expect(fakes.names()).toEqual(['enrichAndDispatch']);
    expect(fakes.args('enrichAndDispatch')).toEqual([inp]);
    expect(result).toEqual({ workflowId: joined.workflowId, runId: joined.runId, enriched: true });
  });

  it('refused for good (UpstreamRefused): escalated without its value at once, the reason named', async () => {
    const early = credentialRun();
    const inp = input({ escalateAfter: '30s' });
    const fakes = new FakeActivities({
      // Retryable by its flag, not by the enrich profile: one attempt.
      enrichAndDispatch: () => refuse(ErrorType.UPSTREAM_REFUSED, 'fetch github_alert: GitHub answered 404'),
      dispatchUnenriched: () => early,
    });
    const { result } = await enrich(fakes, inp);
    expect(fakes.names()).toEqual(['enrichAndDispatch', 'dispatchUnenriched']);
    expect(fakes.args('dispatchUnenriched')).toEqual([
      { ...inp, error: `${ErrorType.UPSTREAM_REFUSED}: fetch github_alert: GitHub answered 404` },
    ]);
    expect(result).toEqual({ workflowId: early.workflowId, runId: early.runId, enriched: false });
  });

  it('fetched late: escalated after escalateAfter while the fetch goes on; the credential run contained it, so the escalation ends contained', async () => {
    const joined = credentialRun();
    const inp = input();
    const fetch = gate();
    let dispatched: Dispatched | undefined;
    const fakes = new FakeActivities({
      ...escalationRun,
      enrichAndDispatch: async () => {
        await fetch.wait;
        return { ...joined, detectionId: 'github:acme/orders#1' };
      },
      dispatchUnenriched: async (req) => (dispatched = await startEscalation(req)),
      runOutcome: () => ({ outcome: 'contained' }),
    });
    const { result, after: ended } = await enrich(fakes, inp, {
      fetch,
      during: async (_h, startedAt) => {
        await earlyEscalation(fakes);
        const escalating = fakes.calls.find((c) => c.name === 'dispatchUnenriched')!;
        expect(escalating.at - startedAt).toBeGreaterThanOrEqual(1000);
        expect(escalating.arg).toEqual({
          ...inp,
          error: `${ErrorType.ENRICHMENT_DELAYED}: the finding could not be fetched within 1s; still trying`,
        });
        // The escalation pages a human while the fetch is still failing.
        await until('the page', () => fakes.count('triggerPagerDuty') === 1);
      },
      after: (r) => escalationOf(r).result(),
    });
    const escalation = { workflowId: dispatched!.workflowId, runId: dispatched!.runId };
    expect(result).toEqual({
      workflowId: joined.workflowId,
      runId: joined.runId,
      enriched: true,
      escalated: escalation,
    });
    expect(fakes.args('runOutcome')).toEqual([{ workflowId: joined.workflowId, runId: joined.runId }]);

    // The hand-over reached the escalated run: it ended contained, its incident resolved.
    expect(ended).toMatchObject({
      outcome: 'contained',
      enrichedRun: {
        workflowId: joined.workflowId,
        runId: joined.runId,
        temporalUiUrl: joined.temporalUiUrl,
        outcome: 'contained',
      },
      resolvedIncident: true,
    });
    expect(fakes.args('followUpPagerDuty')).toEqual([{ dedupKey: escalation.workflowId, action: 'resolve' }]);
    expect(fakes.args('recordAudit').map((s) => s.outcome)).toEqual(['escalated', 'contained']);
  });

  it('fetched late and then refused for good: the early escalation stands, no second one', async () => {
    const early = credentialRun();
    const fetch = gate();
    const fakes = new FakeActivities({
      enrichAndDispatch: async () => {
        await fetch.wait;
        return refuse(ErrorType.UPSTREAM_REFUSED, 'fetch github_alert: GitHub answered 404');
      },
      dispatchUnenriched: () => early,
    });
    const { result } = await enrich(fakes, input(), { fetch, during: () => earlyEscalation(fakes) });
    expect(fakes.names()).toEqual(['enrichAndDispatch', 'dispatchUnenriched']);
    expect(result).toEqual({
      workflowId: early.workflowId,
      runId: early.runId,
      enriched: false,
      escalated: { workflowId: early.workflowId, runId: early.runId },
    });
  });

  it('the credential run records no outcome in time: the escalation is not told and stays open', async () => {
    const joined = credentialRun();
    const fetch = gate();
    const fakes = new FakeActivities({
      ...escalationRun,
      enrichAndDispatch: async () => {
        await fetch.wait;
        return { ...joined, detectionId: 'github:acme/orders#1' };
      },
      dispatchUnenriched: (req) => startEscalation(req),
      // The real one is polled for up to 25 h (awaitOutcome); its end is this failure.
      runOutcome: () => refuse('RunInProgress', `${joined.workflowId} has no outcome yet`, true),
    });
    const { result, after: ended } = await enrich(fakes, input(), {
      fetch,
      during: () => earlyEscalation(fakes),
      after: async (r) => {
        // Still waiting for a human; ended here by one.
        const escalation = escalationOf(r);
        await waitForStep(escalation, 'awaiting_retry');
        await escalation.executeUpdate(falsePositiveUpdate, { args: [{ by: 'carol' }] });
        return escalation.result();
      },
    });
    expect(result).toMatchObject({
      workflowId: joined.workflowId,
      enriched: true,
      escalated: { workflowId: expect.stringMatching(/^killswitch-generic-/) },
    });
    expect(fakes.count('runOutcome')).toBe(1);
    expect(ended.enrichedRun).toBeUndefined();
    expect(ended).toMatchObject({ outcome: 'false_positive', falsePositiveBy: 'carol' });
  });

  it.each([
    { outcome: 'contained' as Outcome, resolved: true },
    { outcome: 'already_contained' as Outcome, resolved: true },
    { outcome: 'denied' as Outcome, resolved: false },
  ])(
    'the escalated run has already ended, credential run $outcome: its incident resolved directly: $resolved',
    async ({ outcome, resolved }) => {
      const joined = credentialRun();
      // A run that is not there any more (its retry window is over): the signal cannot reach it.
      const gone = credentialRun();
      const fetch = gate();
      const fakes = new FakeActivities({
        enrichAndDispatch: async () => {
          await fetch.wait;
          return { ...joined, detectionId: 'github:acme/orders#1' };
        },
        dispatchUnenriched: () => gone,
        runOutcome: () => ({ outcome }),
        followUpPagerDuty: (req) => ({ status: 'sent', dedupKey: req.dedupKey }),
      });
      const { result } = await enrich(fakes, input(), { fetch, during: () => earlyEscalation(fakes) });
      expect(namesOf(fakes, ENRICH_STEPS)).toEqual([
        'enrichAndDispatch',
        'dispatchUnenriched',
        'runOutcome',
        ...(resolved ? ['followUpPagerDuty'] : []),
      ]);
      if (resolved)
        expect(fakes.args('followUpPagerDuty')).toEqual([{ dedupKey: gone.workflowId, action: 'resolve' }]);
      expect(result).toEqual({
        workflowId: joined.workflowId,
        runId: joined.runId,
        enriched: true,
        escalated: { workflowId: gone.workflowId, runId: gone.runId },
      });
    },
  );
});

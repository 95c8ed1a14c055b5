/**
 * The killSwitch workflow's branches, one by one, on a local Temporal server with fake activities
 * (test/helpers/workflow-env.ts): each test scripts what the lookups, the providers, the audit and
 * the notifications answer, then checks the run's result, the calls the fakes saw (in order, with
 * their inputs where they matter) and what the currentStep query shows. Humans act through the
 * workflow's own updates and signals. Durations (overlap, approval, hold, retry window) are a
 * second or two, set in the fakes' answers; the tests of a group run concurrently, each with its own
 * worker, task queue and fakes.
 */
import { randomBytes } from 'node:crypto';
import {
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandleWithSignaledRunId,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Assessment } from '../../activities';
import type { Detection } from '../../contracts/detection';
import { enrichedSignal } from '../../contracts/enrichment';
import { ErrorType } from '../../contracts/errors';
import type { killSwitch } from '../../workflows/killSwitch';
import {
  acknowledgeSignal,
  currentStepQuery,
  decideUpdate,
  falsePositiveUpdate,
  killSwitchWorkflowId,
  retryUpdate,
  SearchAttributes,
  sightingOf,
  sightingSignal,
  type KillSwitchResult,
  type OwnerRef,
  type PolicyDecision,
  type SightingInfo,
  type StepStatus,
} from '../../contracts/run';
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
/** A provider's timestamp, `s` seconds after the detection was received. */
const at = (s: number) => new Date(Date.parse(RECEIVED_AT) + s * 1000).toISOString();
const SINK_REF = 'arn:aws:secretsmanager:eu-west-1:000000000000:secret:orders-db#v2';

function detection(over: Partial<Detection> = {}): Detection {
  const id = randomBytes(4).toString('hex');
  return {
    id: `generic:${id}`,
    source: 'generic',
    scanner: 'kingfisher',
    credentialType: 'postgres_password',
    credentialRef: { role: `app_${id}`, host: 'orders-db.internal' },
    fingerprint: `hmac-sha256:${randomBytes(32).toString('hex')}`,
    location: { repository: 'acme/orders', file: 'config/.env', line: 3 },
    severity: 'high',
    detectedAt: RECEIVED_AT,
    hasEvidence: true,
    closeLoop: {
      kind: 'github_alert',
      url: `https://api.github.com/repos/acme/orders/secret-scanning/alerts/${parseInt(id, 16) % 1000}`,
    },
    ...over,
  };
}

function owner(over: Partial<OwnerRef> = {}): OwnerRef {
  return {
    system: 'orders-db',
    kind: 'postgres',
    mode: 'emergency',
    overlap: '1s',
    quarantine: false,
    canQuarantine: true,
    sink: 'aws_secrets_manager',
    replacement: true,
    userSessionTargets: 1,
    breaker: { threshold: 25, window: '5m', holdTimeout: '30s' },
    ...over,
  };
}

function policy(over: Partial<PolicyDecision> = {}): PolicyDecision {
  return { action: 'rotate', rule: 'default', dryRun: false, approvers: [], retryWindow: '1s', ...over };
}

function assessed(over: Partial<Assessment> = {}): Assessment {
  return {
    prior: null,
    owner: owner(),
    policy: policy(),
    breaker: { tripped: false, newlyTripped: false, count: 1 },
    ...over,
  };
}

const refuse = (type: string, message: string, nonRetryable = false): never => {
  throw ApplicationFailure.create({ type, message, nonRetryable });
};

/** A world where everything works: a containable credential, Slack and PagerDuty answering. */
function world(over: Scripts = {}): FakeActivities {
  return new FakeActivities({
    assess: () => assessed(),
    resolveOwner: () => ({ owner: owner() }),
    checkBreaker: () => ({ tripped: false, newlyTripped: false, count: 1 }),
    revokeCredential: (req) => ({ revokedAt: req.dryRun ? null : at(1), note: 'role locked' }),
    issueReplacement: (req) => ({
      issuedAt: req.dryRun ? null : at(2),
      delivered: !req.dryRun,
      sinkRef: SINK_REF,
      note: 'replacement delivered',
    }),
    expireSessions: (req) =>
      req.dryRun
        ? { sessionsExpiredAt: null, terminated: 0, wouldTerminate: 4 }
        : { sessionsExpiredAt: at(3), terminated: 2 },
    expireUserSessions: (req) => ({ expired: req.dryRun ? 5 : 3, expiredAt: req.dryRun ? null : at(4) }),
    verifyDead: (req) => ({
      verifiedDeadAt: req.dryRun ? null : at(5),
      method: req.dryRun ? 'dry_run' : 'login_rejected',
    }),
    closeLoop: (req) => `resolved ${req.ref.kind === 'github_alert' ? req.ref.url : req.ref.incidentId}`,
    recordAudit: () => ({ inserted: true }),
    purgeEvidence: () => undefined,
    notifySlack: () => ({ status: 'sent' }),
    slackProgress: () => ({ status: 'sent' }),
    requestApproval: () => ({ status: 'sent' }),
    pageBreaker: (req) => ({ status: 'sent', dedupKey: `breaker-${req.system}` }),
    triggerPagerDuty: (s) => ({ status: 'sent', dedupKey: s.workflowId }),
    followUpPagerDuty: (req) => ({ status: 'sent', dedupKey: req.dedupKey }),
    ...over,
  });
}

type Handle = WorkflowHandleWithSignaledRunId<typeof killSwitch>;

/** Starts a run the way the ingress does (signal-with-start, its first sighting, its search attributes). */
async function start(taskQueue: string, d: Detection): Promise<Handle> {
  return w.env.client.workflow.signalWithStart<typeof killSwitch, [SightingInfo]>('killSwitch', {
    taskQueue,
    workflowId: killSwitchWorkflowId(d.credentialType, d.fingerprint!),
    args: [{ detection: d, receivedAt: RECEIVED_AT }],
    signal: sightingSignal,
    signalArgs: [sightingOf(d, RECEIVED_AT)],
    typedSearchAttributes: [
      { key: SearchAttributes.credentialType, value: d.credentialType },
      { key: SearchAttributes.source, value: d.source },
    ],
  });
}

interface Ran {
  result: KillSwitchResult;
  handle: Handle;
  workflowId: string;
  /** The currentStep query once the run ended. */
  final: StepStatus;
}

/** One run on a fresh worker with these fakes; `during` acts on it (a human) while it runs. */
async function run(
  fakes: FakeActivities,
  opts: { detection?: Detection; during?: (h: Handle) => Promise<void> } = {},
): Promise<Ran> {
  return w.withWorker(fakes, async (taskQueue) => {
    const handle = await start(taskQueue, opts.detection ?? detection());
    await opts.during?.(handle);
    const result = await handle.result();
    return { result, handle, workflowId: handle.workflowId, final: await handle.query(currentStepQuery) };
  });
}

/** The containment request every provider step gets. */
const containmentReq = (
  workflowId: string,
  d: Detection,
  o: OwnerRef,
  over: { dryRun?: boolean; quarantine?: boolean } = {},
) => ({
  workflowId,
  system: o.system,
  detection: d,
  dryRun: over.dryRun ?? false,
  mode: o.mode,
  quarantine: over.quarantine ?? o.quarantine,
});

const CONTAINMENT = [
  'revokeCredential',
  'issueReplacement',
  'expireSessions',
  'expireUserSessions',
  'verifyDead',
] as const;
const noProgress = { without: ['slackProgress' as const] };

describe.concurrent('killSwitch: prior containment', () => {
  it('re-verifies a credential an earlier run contained, records already_contained and tells nobody', async () => {
    const d = detection();
    const fakes = world({ assess: () => ({ prior: { runId: 'earlier-run' }, owner: owner() }) });
    const { result, workflowId, final } = await run(fakes, { detection: d });

    expect(fakes.names()).toEqual(['assess', 'verifyDead', 'recordAudit', 'purgeEvidence']);
    expect(fakes.args('verifyDead')).toEqual([{ workflowId, system: 'orders-db', detection: d }]);
    expect(result).toMatchObject({
      outcome: 'already_contained',
      priorRunId: 'earlier-run',
      verification: { method: 'login_rejected' },
      slack: { status: 'skipped' },
      audit: { inserted: true },
    });
    expect(result.timeline.verifiedDeadAt).toBe(at(5));
    expect(result.policy).toBeUndefined();
    expect(fakes.args('recordAudit')[0]).toMatchObject({
      outcome: 'already_contained',
      priorRunId: 'earlier-run',
    });
    expect(final).toMatchObject({ step: 'done', outcome: 'already_contained' });
  });

  it('records the sighting without re-verifying when there is no leaked value to try', async () => {
    const fakes = world({ assess: () => ({ prior: { runId: 'earlier-run' }, owner: owner() }) });
    const { result } = await run(fakes, { detection: detection({ hasEvidence: false }) });
    expect(fakes.names()).toEqual(['assess', 'recordAudit']);
    expect(result).toMatchObject({ outcome: 'already_contained', priorRunId: 'earlier-run' });
    expect(result.verification).toBeUndefined();
  });

  it('escalates at once when the re-verification finds the credential alive again', async () => {
    const fakes = world({
      assess: () => ({ prior: { runId: 'earlier-run' }, owner: owner() }),
      // Real providers throw this retryable (the verify profile retries it 5 times): the branch is what counts here.
      verifyDead: () => refuse(ErrorType.CREDENTIAL_STILL_VALID, 'the leaked password still logs in', true),
    });
    const { result, workflowId } = await run(fakes);

    // No policy on this path: no retry window, the run ends after the page.
    expect(fakes.names()).toEqual([
      'assess',
      'verifyDead',
      'triggerPagerDuty',
      'recordAudit',
      'notifySlack',
      'purgeEvidence',
    ]);
    expect(result).toMatchObject({
      outcome: 'escalated',
      failure: { step: 'verifying', type: ErrorType.CREDENTIAL_STILL_VALID },
      pagerduty: { status: 'sent', dedupKey: workflowId },
      priorRunId: 'earlier-run',
      slack: { status: 'sent' },
    });
    expect(fakes.args('triggerPagerDuty')[0]).toMatchObject({
      step: 'escalating',
      outcome: 'escalated',
      failure: { type: ErrorType.CREDENTIAL_STILL_VALID },
    });
    expect(fakes.args('recordAudit')[0]).toMatchObject({
      outcome: 'escalated',
      pagerduty: { status: 'sent' },
    });
  });
});

describe.concurrent('killSwitch: policies that do not rotate', () => {
  it('ignore: records the detection, changes nothing, tells nobody', async () => {
    const fakes = world({
      assess: () =>
        assessed({ policy: policy({ action: 'ignore', rule: 'test-fixtures' }), breaker: undefined }),
    });
    const { result, handle } = await run(fakes);
    expect(fakes.names()).toEqual(['assess', 'recordAudit', 'purgeEvidence']);
    expect(result).toMatchObject({
      outcome: 'ignored',
      slack: { status: 'skipped' },
      audit: { inserted: true },
      policy: { action: 'ignore', rule: 'test-fixtures' },
    });
    expect(fakes.args('recordAudit')[0]).toMatchObject({ outcome: 'ignored' });
    const sa = (await handle.describe()).typedSearchAttributes;
    expect([sa.get(SearchAttributes.outcome), sa.get(SearchAttributes.policyAction)]).toEqual([
      'ignored',
      'ignore',
    ]);
  });

  it('notify_only: records the detection and tells Slack, changes nothing', async () => {
    const fakes = world({
      assess: () => assessed({ policy: policy({ action: 'notify_only' }), breaker: undefined }),
    });
    const { result } = await run(fakes);
    expect(fakes.names()).toEqual(['assess', 'recordAudit', 'purgeEvidence', 'notifySlack']);
    expect(result).toMatchObject({ outcome: 'notified', slack: { status: 'sent' } });
    expect(fakes.args('notifySlack')[0]).toMatchObject({ outcome: 'notified', step: 'notifying' });
  });
});

describe.concurrent('killSwitch: rotate', () => {
  it('emergency: revoke, replacement, sessions, user sessions, verify, close the loop, audit, Slack', async () => {
    const d = detection();
    const fakes = world();
    const { result, handle, workflowId, final } = await run(fakes, { detection: d });

    expect(fakes.names()).toEqual([
      'assess',
      ...CONTAINMENT,
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    const req = containmentReq(workflowId, d, owner());
    for (const step of CONTAINMENT) expect(fakes.args(step), step).toEqual([req]);
    expect(fakes.args('assess')).toEqual([{ workflowId, runId: handle.signaledRunId, detection: d }]);
    expect(fakes.args('closeLoop')).toEqual([{ ref: d.closeLoop, workflowId, runId: handle.signaledRunId }]);
    expect(fakes.args('purgeEvidence')).toEqual([{ workflowId }]);
    expect(result).toEqual({
      outcome: 'contained',
      owner: owner(),
      policy: policy(),
      timeline: {
        receivedAt: RECEIVED_AT,
        revokedAt: at(1),
        replacementIssuedAt: at(2),
        rotatedAt: at(2),
        sessionsExpiredAt: at(3),
        verifiedDeadAt: at(5),
      },
      rotation: {
        mode: 'emergency',
        newValueDelivered: true,
        sinkRef: SINK_REF,
        note: 'role locked; replacement delivered',
      },
      sessions: { terminated: 2 },
      userSessions: { expired: 3 },
      verification: { method: 'login_rejected' },
      sightings: [sightingOf(d, RECEIVED_AT)],
      loopClosed: [`resolved ${d.closeLoop!.kind === 'github_alert' ? d.closeLoop!.url : ''}`],
      audit: { inserted: true },
      slack: { status: 'sent' },
    });
    // The audit row and the Slack message describe the same run; nothing on the fast path waits on Slack.
    expect(fakes.args('recordAudit')[0]).toMatchObject({
      step: 'auditing',
      workflowId,
      runId: handle.signaledRunId,
      outcome: 'contained',
      rotation: result.rotation,
    });
    expect(fakes.args('notifySlack')[0]).toMatchObject({
      step: 'notifying',
      outcome: 'contained',
      loopClosed: result.loopClosed,
    });
    expect(fakes.count('slackProgress')).toBe(0);
    expect(final).toMatchObject({ step: 'done', outcome: 'contained', owner: owner() });
    const sa = (await handle.describe()).typedSearchAttributes;
    expect(
      [
        SearchAttributes.outcome,
        SearchAttributes.owningSystem,
        SearchAttributes.policyAction,
        SearchAttributes.credentialType,
      ].map((k) => sa.get(k)),
    ).toEqual(['contained', 'orders-db', 'rotate', 'postgres_password']);
  });

  it('graceful: replacement first, both values valid for the overlap (a durable timer), then revoke and the rest', async () => {
    const o = owner({ mode: 'graceful', overlap: '2s' });
    const fakes = world({
      assess: () => assessed({ owner: o }),
      revokeCredential: () => ({ revokedAt: at(10), note: 'old password removed' }),
    });
    const { result, workflowId } = await run(fakes, {
      during: async (h) => {
        const s = await waitForStep(h, 'overlap');
        expect(s.timeline.replacementIssuedAt).toBe(at(2));
        expect(s.timeline.revokedAt).toBeUndefined();
      },
    });

    expect(fakes.names(noProgress)).toEqual([
      'assess',
      'issueReplacement',
      'revokeCredential',
      'expireSessions',
      'expireUserSessions',
      'verifyDead',
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    const [issued, revoked] = [
      fakes.calls.find((c) => c.name === 'issueReplacement')!,
      fakes.calls.find((c) => c.name === 'revokeCredential')!,
    ];
    expect(revoked.at - issued.at).toBeGreaterThanOrEqual(2000);
    expect(fakes.args('revokeCredential')[0]).toMatchObject({
      workflowId,
      mode: 'graceful',
      quarantine: false,
      dryRun: false,
    });
    // While it waits, the run's Slack message says so.
    expect(fakes.args('slackProgress')).toEqual([
      { seq: 1, summary: expect.objectContaining({ step: 'overlap', outcome: 'contained' }) },
    ]);
    expect(result).toMatchObject({
      outcome: 'contained',
      rotation: {
        mode: 'graceful',
        newValueDelivered: true,
        note: 'replacement delivered; old password removed',
      },
      timeline: { replacementIssuedAt: at(2), revokedAt: at(10), rotatedAt: at(10) },
    });
  });

  it('quarantine: a reversible quarantine instead of revoke and replacement; no user sessions when none are tied', async () => {
    const d = detection();
    const o = owner({ quarantine: true, replacement: false, userSessionTargets: 0 });
    const fakes = world({
      assess: () => assessed({ owner: o }),
      revokeCredential: () => ({ revokedAt: at(1), note: 'role quarantined (NOLOGIN)' }),
    });
    const { result, workflowId } = await run(fakes, { detection: d });

    expect(fakes.names()).toEqual([
      'assess',
      'revokeCredential',
      'expireSessions',
      'verifyDead',
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(fakes.args('revokeCredential')).toEqual([containmentReq(workflowId, d, o, { quarantine: true })]);
    expect(result).toMatchObject({
      outcome: 'contained',
      rotation: { mode: 'quarantine', newValueDelivered: false, note: 'role quarantined (NOLOGIN)' },
    });
    expect(result.userSessions).toBeUndefined();
  });

  it('dry run: every provider is only asked, no overlap is waited, no breaker, nothing closed; audit and Slack say dry_run', async () => {
    const d = detection();
    // A minute's overlap: the test would time out if a dry run waited it.
    const o = owner({ mode: 'graceful', overlap: '1m' });
    // assess counts no breaker for a dry run; one tripped anyway must not hold it.
    const fakes = world({
      assess: () =>
        assessed({
          owner: o,
          policy: policy({ dryRun: true }),
          breaker: { tripped: true, newlyTripped: true, count: 99 },
        }),
    });
    const { result, workflowId } = await run(fakes, { detection: d });

    expect(fakes.names()).toEqual([
      'assess',
      'issueReplacement',
      'revokeCredential',
      'expireSessions',
      'expireUserSessions',
      'verifyDead',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    for (const step of CONTAINMENT)
      expect(fakes.args(step), step).toEqual([containmentReq(workflowId, d, o, { dryRun: true })]);
    expect(result).toMatchObject({
      outcome: 'dry_run',
      sessions: { terminated: 4 },
      userSessions: { expired: 5 },
      verification: { method: 'dry_run' },
      rotation: { mode: 'graceful', newValueDelivered: false },
    });
    expect(result.heldByBreaker).toBeUndefined();
    expect(result.timeline).toEqual({ receivedAt: RECEIVED_AT });
    expect(fakes.args('recordAudit')[0]).toMatchObject({ outcome: 'dry_run' });
  });

  it('dry run that would fail: reports what would have failed, pages nobody, waits for nobody', async () => {
    const fakes = world({
      assess: () => assessed({ policy: policy({ dryRun: true, retryWindow: '1h' }), breaker: undefined }),
      revokeCredential: () => refuse(ErrorType.PERMISSION_DENIED, 'the admin may not alter this role'),
    });
    const { result } = await run(fakes);
    expect(fakes.names()).toEqual([
      'assess',
      'revokeCredential',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(result).toMatchObject({
      outcome: 'dry_run',
      failure: { step: 'revoking', type: ErrorType.PERMISSION_DENIED },
    });
    expect(result.pagerduty).toBeUndefined();
  });
});

describe.concurrent('killSwitch: require_approval', () => {
  const approval = (over: Partial<PolicyDecision> = {}) =>
    assessed({
      policy: policy({
        action: 'require_approval',
        approvers: ['alice'],
        approvalTimeout: '30s',
        retryWindow: '1s',
        ...over,
      }),
      breaker: undefined,
    });

  it('approve: asks in Slack, accepts only an approver while waiting, then rotates without meeting the breaker', async () => {
    const fakes = world({ assess: () => approval() });
    const { result, handle } = await run(fakes, {
      during: async (h) => {
        const s = await waitForStep(h, 'awaiting_approval');
        expect(s.policy).toMatchObject({ action: 'require_approval' });
        await expect(
          h.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: 'mallory' }] }),
        ).rejects.toThrow(WorkflowUpdateFailedError);
        await expect(h.executeUpdate(retryUpdate, { args: [{ by: 'alice' }] })).rejects.toThrow(
          WorkflowUpdateFailedError,
        );
        // Nothing moves while it waits.
        await until('the approval request', () => fakes.count('requestApproval') === 1);
        expect(fakes.names()).toEqual(['assess', 'requestApproval']);
        expect(
          await h.executeUpdate(decideUpdate, {
            args: [{ decision: 'approve', by: 'alice', reason: 'confirmed with the team' }],
          }),
        ).toEqual({ accepted: true, decision: 'approve' });
      },
    });

    expect(fakes.args('requestApproval')[0]).toMatchObject({
      step: 'awaiting_approval',
      policy: { action: 'require_approval' },
    });
    // A human approved: no breaker count; the message loses its buttons at once.
    expect(fakes.count('checkBreaker')).toBe(0);
    expect(fakes.args('slackProgress')).toEqual([
      {
        seq: 1,
        summary: expect.objectContaining({
          step: 'approved',
          decidedBy: 'approve by alice: confirmed with the team',
        }),
      },
    ]);
    expect(fakes.names(noProgress)).toEqual([
      'assess',
      'requestApproval',
      ...CONTAINMENT,
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(result).toMatchObject({
      outcome: 'contained',
      decidedBy: 'approve by alice: confirmed with the team',
    });
    expect((await handle.describe()).typedSearchAttributes.get(SearchAttributes.policyAction)).toBe(
      'require_approval',
    );
  });

  it('deny: records who denied, rotates nothing', async () => {
    const fakes = world({ assess: () => approval() });
    const { result } = await run(fakes, {
      during: async (h) => {
        await waitForStep(h, 'awaiting_approval');
        await h.executeUpdate(decideUpdate, {
          args: [{ decision: 'deny', by: 'alice', reason: 'test fixture' }],
        });
      },
    });
    expect(fakes.names()).toEqual([
      'assess',
      'requestApproval',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(result).toMatchObject({ outcome: 'denied', decidedBy: 'deny by alice: test fixture' });
    expect(fakes.args('recordAudit')[0]).toMatchObject({ outcome: 'denied' });
    expect(fakes.args('notifySlack')[0]).toMatchObject({ outcome: 'denied' });
  });

  it('a human may end a run waiting for approval as a false positive', async () => {
    const fakes = world({ assess: () => approval() });
    const { result } = await run(fakes, {
      during: async (h) => {
        await waitForStep(h, 'awaiting_approval');
        await h.executeUpdate(falsePositiveUpdate, { args: [{ by: 'alice', reason: 'a test key' }] });
        // Once decided, nobody decides again: refused by the validator while the run records its
        // outcome, or aborted because the run has closed already (a race the test does not pin).
        const late = await h
          .executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: 'alice' }] })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(
          late instanceof WorkflowUpdateFailedError || late instanceof WorkflowNotFoundError,
          String(late),
        ).toBe(true);
      },
    });
    expect(fakes.names()).toEqual([
      'assess',
      'requestApproval',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(result).toMatchObject({ outcome: 'false_positive', falsePositiveBy: 'alice' });
    // Nothing was paged, so nothing is resolved.
    expect(result.pagerduty).toBeUndefined();
    expect(fakes.count('followUpPagerDuty')).toBe(0);
  });

  it.each([
    { onTimeout: 'escalate' as const, canQuarantine: true },
    { onTimeout: 'quarantine' as const, canQuarantine: false },
  ])(
    'nobody decides in time (onTimeout $onTimeout, canQuarantine $canQuarantine): escalated as ApprovalTimeout',
    async ({ onTimeout, canQuarantine }) => {
      const fakes = world({
        assess: () => ({
          ...approval({ approvalTimeout: '1s', onTimeout }),
          owner: owner({ canQuarantine }),
        }),
      });
      const { result } = await run(fakes);
      expect(fakes.names()).toEqual([
        'assess',
        'requestApproval',
        'triggerPagerDuty',
        'recordAudit',
        'notifySlack',
        'notifySlack',
        'purgeEvidence',
      ]);
      expect(result).toMatchObject({
        outcome: 'escalated',
        failure: {
          step: 'awaiting_approval',
          type: ErrorType.APPROVAL_TIMEOUT,
          message: 'nobody decided within 1s',
        },
      });
    },
  );

  it('nobody decides in time, onTimeout rotate: the run meets the breaker, then rotates', async () => {
    const fakes = world({ assess: () => approval({ approvalTimeout: '1s', onTimeout: 'rotate' }) });
    const { result, workflowId } = await run(fakes);
    expect(fakes.names(noProgress)).toEqual([
      'assess',
      'requestApproval',
      'checkBreaker',
      ...CONTAINMENT,
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(fakes.args('checkBreaker')).toEqual([
      { system: 'orders-db', workflowId, threshold: 25, window: '5m' },
    ]);
    expect(result.outcome).toBe('contained');
    expect(result.decidedBy).toBeUndefined();
  });

  it('nobody decides in time, onTimeout quarantine: quarantined instead of rotated', async () => {
    const d = detection();
    const fakes = world({ assess: () => approval({ approvalTimeout: '1s', onTimeout: 'quarantine' }) });
    const { result, workflowId } = await run(fakes, { detection: d });
    expect(fakes.names(noProgress)).toEqual([
      'assess',
      'requestApproval',
      'checkBreaker',
      'revokeCredential',
      'expireSessions',
      'expireUserSessions',
      'verifyDead',
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(fakes.args('revokeCredential')).toEqual([
      containmentReq(workflowId, d, owner(), { quarantine: true }),
    ]);
    expect(result).toMatchObject({
      outcome: 'contained',
      rotation: { mode: 'quarantine', newValueDelivered: false },
    });
  });

  it('later sightings join the waiting run (once each) and every scanner is told after the kill', async () => {
    const d = detection();
    const later = detection({
      id: 'gitguardian:77',
      source: 'gitguardian',
      closeLoop: { kind: 'gitguardian_incident', incidentId: 77 },
    });
    const fakes = world({ assess: () => approval() });
    const { result } = await run(fakes, {
      detection: d,
      during: async (h) => {
        await waitForStep(h, 'awaiting_approval');
        await h.signal(sightingSignal, sightingOf(later, at(60)));
        await h.signal(sightingSignal, sightingOf(later, at(61)));
        expect((await h.query(currentStepQuery)).sightings.map((s) => s.detectionId)).toEqual([
          d.id,
          'gitguardian:77',
        ]);
        await h.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: 'alice' }] });
      },
    });
    expect(fakes.args('closeLoop').map((a) => a.ref)).toEqual([d.closeLoop, later.closeLoop]);
    expect(result.loopClosed).toEqual([
      `resolved ${d.closeLoop!.kind === 'github_alert' ? d.closeLoop!.url : ''}`,
      'resolved 77',
    ]);
    expect(result.sightings).toEqual([sightingOf(d, RECEIVED_AT), sightingOf(later, at(60))]);
  });
});

describe.concurrent('killSwitch: the mass-leak breaker', () => {
  it('pages once when it trips, holds every run for a human: released runs rotate, declined ones do not', async () => {
    const tripped = (n: number) => ({ tripped: true, newlyTripped: n === 1, count: 25 + n });
    const fakes = world({ assess: (_req, n) => assessed({ breaker: tripped(n) }) });
    const [first, second] = await w.withWorker(fakes, async (taskQueue) => {
      const released = await start(taskQueue, detection());
      await waitForStep(released, 'held_by_breaker');
      await released.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: 'alice' }] });
      const a = await released.result();
      const declined = await start(taskQueue, detection());
      await waitForStep(declined, 'held_by_breaker');
      await declined.executeUpdate(decideUpdate, { args: [{ decision: 'deny', by: 'bob' }] });
      return [
        { h: released, r: a },
        { h: declined, r: await declined.result() },
      ];
    });

    expect(fakes.args('pageBreaker')).toEqual([
      {
        system: 'orders-db',
        count: 26,
        window: '5m',
        workflowId: first.h.workflowId,
        runId: first.h.signaledRunId,
      },
    ]);
    expect(fakes.args('requestApproval').map((s) => [s.workflowId, s.step, s.heldByBreaker])).toEqual([
      [first.h.workflowId, 'held_by_breaker', true],
      [second.h.workflowId, 'held_by_breaker', true],
    ]);
    expect(first.r).toMatchObject({
      outcome: 'contained',
      heldByBreaker: true,
      decidedBy: 'approve by alice',
    });
    expect(second.r).toMatchObject({ outcome: 'denied', heldByBreaker: true, decidedBy: 'deny by bob' });
    expect(fakes.args('revokeCredential').map((r) => r.workflowId)).toEqual([first.h.workflowId]);
  });

  it('a failed breaker page still holds the run; nobody releasing it in time escalates it (MassLeakHold)', async () => {
    const fakes = world({
      assess: () =>
        assessed({
          owner: owner({ breaker: { threshold: 25, window: '5m', holdTimeout: '1s' } }),
          breaker: { tripped: true, newlyTripped: true, count: 26 },
        }),
      pageBreaker: () => refuse(ErrorType.NOTIFICATION_REJECTED, 'PagerDuty: invalid routing key'),
    });
    const { result } = await run(fakes);
    expect(fakes.count('pageBreaker')).toBe(1);
    expect(fakes.names()).toEqual([
      'assess',
      'pageBreaker',
      'requestApproval',
      'triggerPagerDuty',
      'recordAudit',
      'notifySlack',
      'notifySlack',
      'purgeEvidence',
    ]);
    expect(result).toMatchObject({
      outcome: 'escalated',
      heldByBreaker: true,
      failure: { step: 'held_by_breaker', type: ErrorType.MASS_LEAK_HOLD },
    });
    expect(fakes.count('revokeCredential')).toBe(0);
  });
});

describe.concurrent('killSwitch: containment failure and the humans after it', () => {
  /** Revoke refused: PermissionDenied, retryable by its flag, non-retryable by the critical profile. */
  const refusedOnce = (retryWindow = '30s', over: Scripts = {}) =>
    world({
      assess: () => assessed({ policy: policy({ retryWindow }) }),
      revokeCredential: (_req, n) =>
        n === 1
          ? refuse(ErrorType.PERMISSION_DENIED, 'the admin may not alter this role')
          : { revokedAt: at(1), note: 'role locked' },
      ...over,
    });

  async function escalated(h: Handle, fakes: FakeActivities): Promise<void> {
    await waitForStep(h, 'awaiting_retry');
    // Paged, audited, told; the sealed value is kept for a retry.
    expect(fakes.names()).toEqual([
      'assess',
      'revokeCredential',
      'triggerPagerDuty',
      'recordAudit',
      'notifySlack',
    ]);
    expect(fakes.args('triggerPagerDuty')[0]).toMatchObject({
      step: 'escalating',
      outcome: 'escalated',
      failure: { step: 'revoking', type: ErrorType.PERMISSION_DENIED },
    });
    expect(fakes.args('recordAudit')[0]).toMatchObject({
      outcome: 'escalated',
      pagerduty: { status: 'sent', dedupKey: h.workflowId },
    });
    expect(fakes.args('notifySlack')[0]).toMatchObject({
      outcome: 'escalated',
      failure: { type: ErrorType.PERMISSION_DENIED },
    });
  }

  it('retry succeeds: contains again, resolves the PagerDuty incident, audits contained', async () => {
    const fakes = refusedOnce();
    const { result, workflowId } = await run(fakes, {
      during: async (h) => {
        await escalated(h, fakes);
        expect(await h.executeUpdate(retryUpdate, { args: [{ by: 'bob' }] })).toEqual({ accepted: true });
      },
    });
    expect(fakes.names().slice(5)).toEqual([
      'resolveOwner',
      ...CONTAINMENT,
      'followUpPagerDuty',
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(fakes.args('followUpPagerDuty')).toEqual([
      { dedupKey: workflowId, action: 'resolve', system: 'orders-db' },
    ]);
    expect(fakes.args('recordAudit')[1]).toMatchObject({
      outcome: 'contained',
      retriedBy: ['bob'],
      resolvedIncident: true,
    });
    expect(result).toMatchObject({
      outcome: 'contained',
      retriedBy: ['bob'],
      resolvedIncident: true,
      pagerduty: { status: 'sent', dedupKey: workflowId },
      slack: { status: 'sent' },
    });
    expect(result.failure).toBeUndefined();
    expect(fakes.count('purgeEvidence')).toBe(1);
  });

  it('retry fails again: the open incident is updated; then marked a false positive: resolved, audited false_positive', async () => {
    const fakes = refusedOnce('30s', {
      revokeCredential: () => refuse(ErrorType.PERMISSION_DENIED, 'the admin may not alter this role'),
    });
    const { result, workflowId } = await run(fakes, {
      during: async (h) => {
        await escalated(h, fakes);
        await h.executeUpdate(retryUpdate, { args: [{ by: 'bob' }] });
        await until('the second page', () => fakes.count('triggerPagerDuty') === 2);
        await waitForStep(h, 'awaiting_retry');
        await h.executeUpdate(falsePositiveUpdate, {
          args: [{ by: 'carol', reason: 'a revoked demo credential' }],
        });
      },
    });
    expect(fakes.names(noProgress).slice(5)).toEqual([
      'resolveOwner',
      'revokeCredential',
      'triggerPagerDuty',
      'followUpPagerDuty',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(fakes.args('triggerPagerDuty')[1]).toMatchObject({
      outcome: 'escalated',
      retriedBy: ['bob'],
      failure: { step: 'revoking' },
    });
    // The second wait shows what changed.
    expect(fakes.args('slackProgress')).toEqual([
      { seq: 1, summary: expect.objectContaining({ step: 'awaiting_retry', retriedBy: ['bob'] }) },
    ]);
    expect(fakes.args('followUpPagerDuty')).toEqual([
      { dedupKey: workflowId, action: 'resolve', system: 'orders-db' },
    ]);
    expect(fakes.args('recordAudit')[1]).toMatchObject({
      outcome: 'false_positive',
      falsePositiveBy: 'carol',
    });
    expect(result).toMatchObject({
      outcome: 'false_positive',
      falsePositiveBy: 'carol',
      retriedBy: ['bob'],
      resolvedIncident: true,
    });
  });

  it('acknowledge: PagerDuty is acknowledged once; the run still ends escalated when the window passes', async () => {
    const fakes = refusedOnce('2s');
    const { result, workflowId } = await run(fakes, {
      during: async (h) => {
        await escalated(h, fakes);
        await h.signal(acknowledgeSignal, { by: 'dave' });
        await h.signal(acknowledgeSignal, { by: 'erin' });
      },
    });
    expect(fakes.args('followUpPagerDuty')).toEqual([
      { dedupKey: workflowId, action: 'acknowledge', system: 'orders-db' },
    ]);
    expect(fakes.args('slackProgress')).toEqual([
      { seq: 1, summary: expect.objectContaining({ step: 'awaiting_retry', acknowledgedBy: 'dave' }) },
    ]);
    expect(fakes.args('notifySlack').at(-1)).toMatchObject({
      step: 'done',
      outcome: 'escalated',
      acknowledgedBy: 'dave',
    });
    expect(result).toMatchObject({ outcome: 'escalated', acknowledgedBy: 'dave' });
    expect(fakes.count('revokeCredential')).toBe(1);
  });

  it('the retry window passes with no human: the message loses its Retry button, the run ends escalated', async () => {
    const fakes = refusedOnce('1s');
    const { result, final } = await run(fakes);
    expect(fakes.names()).toEqual([
      'assess',
      'revokeCredential',
      'triggerPagerDuty',
      'recordAudit',
      'notifySlack',
      'notifySlack',
      'purgeEvidence',
    ]);
    const [escalation, closed] = fakes.calls.filter((c) => c.name === 'notifySlack');
    expect(closed!.at - escalation!.at).toBeGreaterThanOrEqual(1000);
    expect(closed!.arg).toMatchObject({ step: 'done', outcome: 'escalated' });
    expect(result).toMatchObject({
      outcome: 'escalated',
      failure: { step: 'revoking', type: ErrorType.PERMISSION_DENIED },
      slack: { status: 'sent' },
      audit: { inserted: true },
    });
    expect(final).toMatchObject({ step: 'done', outcome: 'escalated' });
  });

  it('no owner: escalated as NoOwner; a retry that still finds none pages again; one that finds it contains', async () => {
    const d = detection();
    const fakes = world({
      assess: () => ({
        prior: null,
        owner: null,
        reason: 'no system in the inventory handles postgres_password',
        policy: policy({ retryWindow: '30s' }),
      }),
      resolveOwner: (_d, n) => (n === 1 ? { owner: null, reason: 'still nothing' } : { owner: owner() }),
    });
    const { result } = await run(fakes, {
      detection: d,
      during: async (h) => {
        await waitForStep(h, 'awaiting_retry');
        expect(fakes.names()).toEqual(['assess', 'triggerPagerDuty', 'recordAudit', 'notifySlack']);
        expect(fakes.args('triggerPagerDuty')[0]).toMatchObject({
          owner: null,
          failure: {
            step: 'resolving_owner',
            type: 'NoOwner',
            message: 'no system in the inventory handles postgres_password',
          },
        });
        await h.executeUpdate(retryUpdate, { args: [{ by: 'bob' }] });
        await until('the second page', () => fakes.count('triggerPagerDuty') === 2);
        await waitForStep(h, 'awaiting_retry');
        await h.executeUpdate(retryUpdate, { args: [{ by: 'carol' }] });
      },
    });
    expect(fakes.args('resolveOwner')).toEqual([d, d]);
    expect(fakes.args('triggerPagerDuty')[1]).toMatchObject({
      failure: { step: 'resolving_owner', type: 'NoOwner', message: 'still no owning system' },
    });
    expect(fakes.names(noProgress).slice(4)).toEqual([
      'resolveOwner',
      'triggerPagerDuty',
      'resolveOwner',
      ...CONTAINMENT,
      'followUpPagerDuty',
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(result).toMatchObject({
      outcome: 'contained',
      owner: owner(),
      retriedBy: ['bob', 'carol'],
      resolvedIncident: true,
    });
  });

  it("the credential's own run contained it (a late-enriched finding): this escalation ends contained and its incident is resolved", async () => {
    const enrichedRun = {
      workflowId: 'killswitch-postgres_password-0123456789abcdef0123456789abcdef',
      runId: 'r-1',
      temporalUiUrl: 'http://ui/r-1',
      outcome: 'contained' as const,
    };
    const fakes = refusedOnce();
    const { result, workflowId } = await run(fakes, {
      during: async (h) => {
        await escalated(h, fakes);
        await h.signal(enrichedSignal, enrichedRun);
      },
    });
    expect(fakes.names().slice(5)).toEqual([
      'followUpPagerDuty',
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(fakes.args('followUpPagerDuty')).toEqual([
      { dedupKey: workflowId, action: 'resolve', system: 'orders-db' },
    ]);
    expect(fakes.args('recordAudit')[1]).toMatchObject({ outcome: 'contained', enrichedRun });
    expect(result).toMatchObject({ outcome: 'contained', enrichedRun, resolvedIncident: true });
    expect(result.failure).toBeUndefined();
  });

  it("the credential's own run did not contain it: Slack says where to look and the escalation keeps waiting", async () => {
    const enrichedRun = {
      workflowId: 'killswitch-postgres_password-0123456789abcdef0123456789abcdef',
      runId: 'r-1',
      temporalUiUrl: 'http://ui/r-1',
      outcome: 'denied' as const,
    };
    const fakes = refusedOnce();
    const { result } = await run(fakes, {
      during: async (h) => {
        await escalated(h, fakes);
        await h.signal(enrichedSignal, enrichedRun);
        await until('Slack told', () => fakes.count('notifySlack') === 2);
        expect(fakes.args('notifySlack')[1]).toMatchObject({ outcome: 'escalated', enrichedRun });
        // Only the first hand-over counts.
        await h.signal(enrichedSignal, { ...enrichedRun, outcome: 'contained' });
        await waitForStep(h, 'awaiting_retry');
        await h.executeUpdate(falsePositiveUpdate, { args: [{ by: 'carol' }] });
      },
    });
    expect(result).toMatchObject({ outcome: 'false_positive', enrichedRun, falsePositiveBy: 'carol' });
  });
});

describe.concurrent('killSwitch: notification failures never undo containment', () => {
  it('Slack refusing the outcome message: contained, audited, Slack recorded as failed (not retried)', async () => {
    const fakes = world({ notifySlack: () => refuse(ErrorType.NOTIFICATION_REJECTED, 'channel_not_found') });
    const { result, workflowId } = await run(fakes);
    expect(fakes.names()).toEqual([
      'assess',
      ...CONTAINMENT,
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(result).toMatchObject({
      outcome: 'contained',
      slack: { status: 'failed' },
      audit: { inserted: true },
    });
    expect(
      w.logs.some(
        (e) =>
          e.message === 'Slack notification failed' &&
          e.meta?.workflowId === workflowId &&
          e.meta?.type === ErrorType.NOTIFICATION_REJECTED,
      ),
    ).toBe(true);
  });

  it('PagerDuty refusing the page: still escalated, audited and told in Slack, the page recorded as failed', async () => {
    const fakes = world({
      assess: () => assessed({ policy: policy({ retryWindow: '1s' }) }),
      revokeCredential: () => refuse(ErrorType.UNKNOWN_CREDENTIAL, 'no such role'),
      triggerPagerDuty: () => refuse(ErrorType.NOTIFICATION_REJECTED, 'Event object is invalid'),
    });
    const { result, workflowId } = await run(fakes);
    expect(fakes.count('triggerPagerDuty')).toBe(1);
    expect(result).toMatchObject({
      outcome: 'escalated',
      failure: { type: ErrorType.UNKNOWN_CREDENTIAL },
      pagerduty: { status: 'failed', dedupKey: workflowId },
      audit: { inserted: true },
    });
    expect(fakes.args('recordAudit')[0]).toMatchObject({
      outcome: 'escalated',
      pagerduty: { status: 'failed' },
    });
    expect(fakes.args('notifySlack')[0]).toMatchObject({
      outcome: 'escalated',
      pagerduty: { status: 'failed' },
    });
  });

  it('every notification failing around a retried containment: still contained and audited', async () => {
    const fakes = world({
      assess: () => assessed({ policy: policy({ retryWindow: '30s' }) }),
      revokeCredential: (_req, n) =>
        n === 1
          ? refuse(ErrorType.MISCONFIGURED, 'ADMIN_URL is not set')
          : { revokedAt: at(1), note: 'role locked' },
      notifySlack: () => refuse(ErrorType.NOTIFICATION_REJECTED, 'channel_not_found'),
      followUpPagerDuty: () => refuse(ErrorType.NOTIFICATION_REJECTED, 'Event object is invalid'),
      closeLoop: () => refuse(ErrorType.UPSTREAM_REFUSED, 'GitHub: 403'),
    });
    const { result } = await run(fakes, {
      during: async (h) => {
        await waitForStep(h, 'awaiting_retry');
        await h.executeUpdate(retryUpdate, { args: [{ by: 'bob' }] });
      },
    });
    expect(fakes.names().slice(5)).toEqual([
      'resolveOwner',
      ...CONTAINMENT,
      'followUpPagerDuty',
      'closeLoop',
      'recordAudit',
      'purgeEvidence',
      'notifySlack',
    ]);
    expect(fakes.args('recordAudit')[1]).toMatchObject({ outcome: 'contained', loopClosed: [] });
    expect(result).toMatchObject({
      outcome: 'contained',
      slack: { status: 'failed' },
      loopClosed: [],
      audit: { inserted: true },
      timeline: { verifiedDeadAt: at(5) },
    });
    expect(result.resolvedIncident).toBeUndefined();
  });

  it('a failing progress update never holds an approved rotation', async () => {
    const fakes = world({
      assess: () =>
        assessed({
          policy: policy({ action: 'require_approval', approvalTimeout: '30s' }),
          breaker: undefined,
        }),
      slackProgress: () => refuse(ErrorType.NOTIFICATION_REJECTED, 'message_not_found'),
    });
    const { result } = await run(fakes, {
      during: async (h) => {
        await waitForStep(h, 'awaiting_approval');
        await h.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: 'alice' }] });
      },
    });
    expect(fakes.count('slackProgress')).toBe(1);
    expect(result).toMatchObject({ outcome: 'contained', slack: { status: 'sent' } });
  });

  it('the audit row refused for good (StoreRejected): the run still notifies, and says so', async () => {
    const fakes = world({
      recordAudit: () =>
        refuse(ErrorType.STORE_REJECTED, 'PostgreSQL refused the statement (SQLSTATE 22001)', true),
    });
    const { result } = await run(fakes);
    expect(fakes.count('recordAudit')).toBe(1);
    expect(result.outcome).toBe('contained');
    expect(result.audit).toEqual({ inserted: false, error: expect.stringMatching(/^StoreRejected: /) });
    expect(fakes.args('notifySlack')[0]).toMatchObject({
      outcome: 'contained',
      auditError: result.audit.error,
    });
  });
});

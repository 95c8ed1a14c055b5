/**
 * Humans in the loop, through the workflow's own updates and signals (the Slack buttons send the
 * same ones): approvers only, a timed default, retry after an escalation that resolves the PagerDuty
 * incident, acknowledge, and false positives. Real Temporal, real PostgreSQL roles.
 */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  acknowledgeSignal,
  decideUpdate,
  falsePositiveUpdate,
  retryUpdate,
  type KillSwitchResult,
  type StepStatus,
} from '../../contracts/run';
import { leakedUrl, startHarness, type Harness, waitForStep } from '../helpers/harness';

const APPROVER = 'U0APPROVER1';
let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    config: {
      policy: {
        approvers: [APPROVER, 'alice@example.com'],
        retryWindow: '1m',
        rules: [
          {
            name: 'prod',
            match: { repository: 'acme/prod-*' },
            action: 'require_approval',
            approvalTimeout: '1m',
          },
          {
            name: 'quiet',
            match: { repository: 'acme/quiet' },
            action: 'require_approval',
            approvalTimeout: '2s',
            onTimeout: 'quarantine',
          },
        ],
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
});

async function leak(repository: string, opts: { superuser?: boolean } = {}) {
  const { role, password } = await h.owned.createRole(opts);
  const res = await h.post({
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
    location: { repository, file: '.env' },
  });
  expect(res.status).toBe(202);
  return {
    role,
    password,
    workflowId: res.json.workflowId as string,
    handle: h.client.workflow.getHandle(res.json.workflowId),
  };
}

const audit = async (workflowId: string) =>
  (
    await h.db.query<Record<string, any>>(
      'SELECT * FROM killswitch_audit WHERE workflow_id = $1 ORDER BY id',
      [workflowId],
    )
  ).rows;
const pd = (workflowId: string) => h.pagerduty.events().filter((e) => e.dedup_key === workflowId);

describe('humans in the loop', () => {
  it('accepts a decision only from an approver, with the reason for a refusal', async () => {
    const l = await leak('acme/prod-api');
    await waitForStep(l.handle, 'awaiting_approval');
    const refused = l.handle.executeUpdate(decideUpdate, {
      args: [{ decision: 'approve', by: 'U0INTRUDER' }],
    });
    await expect(refused).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
    await expect(refused).rejects.toMatchObject({ cause: { message: 'U0INTRUDER is not an approver' } });
    await l.handle.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: APPROVER }] });
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({ outcome: 'contained', decidedBy: `approve by ${APPROVER}` });
    expect(await h.owned.loginFails(l.role, l.password)).toBe('28P01');

    // The run reads like an incident timeline in the UI: summary, details, one summary per activity.
    const d = await l.handle.describe();
    expect(await d.staticSummary()).toMatch(/^Leaked postgres_password \(role=app_/);
    expect(await d.staticDetails()).toContain('**Found at** acme/prod-api · .env');
    expect(d.searchAttributes).toMatchObject({
      KillSwitchPolicyAction: ['require_approval'],
      KillSwitchOutcome: ['contained'],
      KillSwitchOwningSystem: ['owned-db'],
    });
    const history = await h.decodedHistory(l.workflowId);
    const summaries = await Promise.all(
      (history.events ?? [])
        .map((e) => e.userMetadata?.summary)
        .filter((p): p is NonNullable<typeof p> => !!p)
        .map((p) => h.client.options.loadedDataConverter.payloadConverter.fromPayload<string>(p as never)),
    );
    expect(summaries).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^Revoke the leaked postgres_password in owned-db/),
        expect.stringMatching(/^Prove the leaked value is dead/),
      ]),
    );
  });

  it('ends a run waiting for approval as a false positive: nothing rotated, who decided recorded', async () => {
    const l = await leak('acme/prod-web');
    await waitForStep(l.handle, 'awaiting_approval');
    await expect(
      l.handle.executeUpdate(falsePositiveUpdate, { args: [{ by: 'U0INTRUDER' }] }),
    ).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
    await l.handle.executeUpdate(falsePositiveUpdate, {
      args: [{ by: 'alice@example.com', reason: 'test fixture' }],
    });
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({ outcome: 'false_positive', falsePositiveBy: 'alice@example.com' });
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    expect(await audit(l.workflowId)).toMatchObject([
      { outcome: 'false_positive', false_positive_by: 'alice@example.com' },
    ]);
  });

  it('on an approval timeout, falls back to escalation when the owner has no reversible quarantine', async () => {
    const l = await leak('acme/quiet');
    await waitForStep(l.handle, 'awaiting_retry');
    expect(pd(l.workflowId)).toHaveLength(1);
    expect((await l.handle.query<StepStatus>('currentStep')).failure).toMatchObject({
      type: 'ApprovalTimeout',
    });
    await l.handle.executeUpdate(falsePositiveUpdate, { args: [{ by: APPROVER }] });
    expect(((await l.handle.result()) as KillSwitchResult).outcome).toBe('false_positive');
    expect(pd(l.workflowId).map((e) => e.event_action)).toEqual(['trigger', 'resolve']);
  });

  it('after an escalation, a retry once the cause is fixed contains the credential, resolves the incident and audits both outcomes', async () => {
    const l = await leak('acme/api', { superuser: true });
    await waitForStep(l.handle, 'awaiting_retry');
    expect(pd(l.workflowId).map((e) => e.event_action)).toEqual(['trigger']);
    // Too early and from the wrong person: refused.
    await expect(
      l.handle.executeUpdate(retryUpdate, { args: [{ by: 'U0INTRUDER' }] }),
    ).rejects.toBeInstanceOf(WorkflowUpdateFailedError);

    await l.handle.signal(acknowledgeSignal, { by: APPROVER });
    for (let i = 0; i < 50 && pd(l.workflowId).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect(pd(l.workflowId).map((e) => e.event_action)).toEqual(['trigger', 'acknowledge']);

    // A retry before the cause is fixed fails again and keeps waiting, on the same incident.
    await l.handle.executeUpdate(retryUpdate, { args: [{ by: APPROVER }] });
    await waitForStep(l.handle, 'awaiting_retry');
    for (let i = 0; i < 50 && pd(l.workflowId).length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    expect(pd(l.workflowId).map((e) => e.event_action)).toEqual(['trigger', 'acknowledge', 'trigger']);

    // The operator fixes the cause (the role is no longer a superuser the admin cannot alter).
    await h.owned.su.query(`ALTER ROLE ${h.owned.su.escapeIdentifier(l.role)} NOSUPERUSER`);
    await l.handle.executeUpdate(retryUpdate, {
      args: [{ by: 'alice@example.com', reason: 'demoted the role' }],
    });
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({
      outcome: 'contained',
      retriedBy: [APPROVER, 'alice@example.com'],
      acknowledgedBy: APPROVER,
      resolvedIncident: true,
    });
    expect(await h.owned.loginFails(l.role, l.password)).toBe('28P01');
    expect(pd(l.workflowId).map((e) => e.event_action)).toEqual([
      'trigger',
      'acknowledge',
      'trigger',
      'resolve',
    ]);
    expect(await audit(l.workflowId)).toMatchObject([
      { outcome: 'escalated', failure_type: 'PermissionDenied' },
      {
        outcome: 'contained',
        retried_by: `${APPROVER}, alice@example.com`,
        acknowledged_by: APPROVER,
        incident_resolved: true,
        verification_method: 'login_rejected',
      },
    ]);
  });
});

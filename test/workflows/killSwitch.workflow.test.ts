/**
 * Workflow behaviour at its edges, on the real Temporal server with the real activities: broken
 * notification endpoints never undo containment or the audit, and the workflow code replays its
 * own recorded histories deterministically. Each test has its own harness (task queue, worker,
 * Slack and PagerDuty fakes) and its own credentials, so it passes alone and in any order.
 */
import { Worker } from '@temporalio/worker';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WORKFLOWS_PATH } from '../../worker/build';
import type { KillSwitchResult } from '../../contracts/run';
import { startHarness, type Harness, leakedUrl } from '../helpers/harness';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h?.close();
});

/** A leak of a role the admin may not alter, while PagerDuty rejects the escalation. */
async function escalateWhilePagerDutyRejects(): Promise<{ workflowId: string; result: KillSwitchResult }> {
  const { role, password } = await h.owned.createRole({ superuser: true });
  h.pagerduty.script.push({
    status: 400,
    body: { status: 'invalid event', message: 'Event object is invalid', errors: ['x'] },
  });
  const res = await h.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
  expect(res.status).toBe(202);
  return {
    workflowId: res.json.workflowId,
    result: await h.client.workflow.getHandle(res.json.workflowId).result(),
  };
}

/** A containable leak, while Slack refuses every post and update (the channel is gone). */
async function containWhileSlackRefuses(): Promise<{
  workflowId: string;
  result: KillSwitchResult;
  role: string;
  password: string;
}> {
  const { role, password } = await h.owned.createRole();
  h.slack.refuse = 'channel_not_found';
  const res = await h.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
  expect(res.status).toBe(202);
  const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
  h.slack.refuse = null;
  return { workflowId: res.json.workflowId, result, role, password };
}

describe('killSwitch workflow', () => {
  it('still audits and reports when PagerDuty rejects the escalation', async () => {
    const { workflowId, result } = await escalateWhilePagerDutyRejects();
    expect(result.outcome).toBe('escalated');
    expect(result.pagerduty).toEqual({ status: 'failed', dedupKey: workflowId });
    const row = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        workflowId,
      ])
    ).rows;
    expect(row).toHaveLength(1);
    expect(row[0]).toMatchObject({ outcome: 'escalated', pagerduty_status: 'failed' });
    const slack = h.slack.messages().filter((m) => m.text.includes(workflowId));
    expect(slack).toHaveLength(1);
    expect(JSON.stringify(slack[0]!.blocks)).toContain('failed');
  });

  it('completes a containment when Slack refuses the message, and records that', async () => {
    const { workflowId, result, role, password } = await containWhileSlackRefuses();
    expect(result.outcome).toBe('contained');
    expect(result.slack).toEqual({ status: 'failed' });
    expect(result.audit).toEqual({ inserted: true });
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const desc = await h.client.workflow.getHandle(workflowId).describe();
    expect(desc.searchAttributes).toMatchObject({
      KillSwitchOutcome: ['contained'],
      KillSwitchOwningSystem: ['owned-db'],
      KillSwitchCredentialType: ['postgres_password'],
      KillSwitchSource: ['generic'],
    });
  });

  it('replays its recorded histories without non-determinism', async () => {
    const runs = [await escalateWhilePagerDutyRejects(), await containWhileSlackRefuses()];
    expect(runs.map((r) => r.result.outcome)).toEqual(['escalated', 'contained']);
    const histories = await Promise.all(
      runs.map(async ({ workflowId }) => ({
        workflowId,
        history: await h.client.workflow.getHandle(workflowId).fetchHistory(),
      })),
    );
    const results = [];
    // Histories are encrypted: the replayer decodes them with the same data converter as the worker.
    for await (const r of Worker.runReplayHistories(
      { workflowsPath: WORKFLOWS_PATH, dataConverter: h.dataConverter },
      histories,
    ))
      results.push(r);
    expect(results.map((r) => r.workflowId)).toEqual(runs.map((r) => r.workflowId));
    for (const r of results) expect(r.error, r.workflowId).toBeUndefined();
  });
});

/**
 * Workflow behaviour at its edges, on the real Temporal server with the real activities: broken
 * notification endpoints never undo containment or the audit, and the workflow code replays its
 * own recorded histories deterministically.
 */
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKFLOWS_PATH } from '../../worker/build';
import type { KillSwitchResult } from '../../workflows/shared';
import { startHarness, type Harness, leakedUrl } from '../helpers/harness';

let h: Harness;
const finished: string[] = [];
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});


describe('killSwitch workflow', () => {
  it('still audits and reports when PagerDuty rejects the escalation', async () => {
    const { role, password } = await h.owned.createRole({ superuser: true });
    h.pagerduty.script.push({ status: 400, body: { status: 'invalid event', message: 'Event object is invalid', errors: ['x'] } });
    const res = await h.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    finished.push(res.json.workflowId);
    expect(result.outcome).toBe('escalated');
    expect(result.pagerduty).toEqual({ status: 'failed', dedupKey: res.json.workflowId });
    const row = (await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [res.json.workflowId])).rows;
    expect(row).toHaveLength(1);
    expect(row[0]).toMatchObject({ outcome: 'escalated', pagerduty_status: 'failed' });
    const slack = h.slack.messages().filter((m) => m.text.includes(res.json.workflowId));
    expect(slack).toHaveLength(1);
    expect(JSON.stringify(slack[0]!.blocks)).toContain('failed');
  });

  it('completes a containment when Slack refuses the message, and records that', async () => {
    const { role, password } = await h.owned.createRole();
    // The channel is gone: every post and update of the run's message is refused.
    h.slack.refuse = 'channel_not_found';
    const res = await h.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
    const handle = h.client.workflow.getHandle(res.json.workflowId);
    const result: KillSwitchResult = await handle.result().finally(() => {
      h.slack.refuse = null;
    });
    finished.push(res.json.workflowId);
    expect(result.outcome).toBe('contained');
    expect(result.slack).toEqual({ status: 'failed' });
    expect(result.audit).toEqual({ inserted: true });
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const desc = await handle.describe();
    expect(desc.searchAttributes).toMatchObject({
      KillSwitchOutcome: ['contained'],
      KillSwitchOwningSystem: ['owned-db'],
      KillSwitchCredentialType: ['postgres_password'],
      KillSwitchSource: ['generic'],
    });
  });

  it('replays its recorded histories without non-determinism', async () => {
    expect(finished.length).toBe(2);
    const histories = await Promise.all(
      finished.map(async (workflowId) => ({ workflowId, history: await h.client.workflow.getHandle(workflowId).fetchHistory() })),
    );
    const results = [];
    // Histories are encrypted: the replayer decodes them with the same data converter as the worker.
    for await (const r of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH, dataConverter: h.dataConverter }, histories)) results.push(r);
    expect(results).toHaveLength(2);
    for (const r of results) expect(r.error, r.workflowId).toBeUndefined();
  });
});

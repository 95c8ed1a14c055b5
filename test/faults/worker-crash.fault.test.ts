/**
 * Fault 2, the worker dies mid-rotation: the production worker entry runs as its own OS process;
 * its `ALTER ROLE` is held on the role's row lock, and the process is killed with SIGKILL while it
 * waits (no drain, no goodbye to Temporal). A new worker process picks the run up after the
 * attempt's start-to-close timeout (30 s, the real `critical` profile). Proof: the run completes
 * contained, one scheduled revokeCredential (attempt 2), one audit row, one Slack message.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import { activityCounts, auditRows, blockedAlter, executionsOf, holdRole, slackMessagesOf, spawnWorker, waitFor, type WorkerProcess } from './support';

let h: Harness;
const workers: WorkerProcess[] = [];
beforeAll(async () => {
  h = await startHarness({ worker: false });
  // The database notices a dead client within a second even while the backend waits on a lock,
  // so the killed worker's half-done ALTER ROLE is rolled back instead of committing later.
  await h.owned.su.query(`ALTER ROLE ${h.owned.adminRole} SET client_connection_check_interval = '1s'`);
});
afterAll(async () => {
  for (const w of workers) await w.stop();
  await h?.close();
});

it('SIGKILL of the worker mid-rotation, then a restart: the run completes, one rotation, one audit row', async () => {
  const first = spawnWorker(h);
  workers.push(first);
  await first.ready;

  const { role, password } = await h.owned.createRole();
  const lock = await holdRole(role);
  try {
    const res = await h.post({ scanner: 'crash-scanner', findingId: `finding-${rand()}`, credentialType: 'postgres_password', secret: leakedUrl(role, password) });
    expect(res.status).toBe(202);
    const { workflowId, runId } = res.json as { workflowId: string; runId: string };

    const pid = await waitFor('the worker to be inside ALTER ROLE, blocked', () => blockedAlter(h), 30_000);
    const killedAt = Date.now();
    first.child.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    // Its connection is gone and nothing was rotated: the kill landed mid-rotation.
    await waitFor('the killed worker’s backend to end', async () => {
      const r = await h.owned.su.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      return r.rows.length === 0;
    }, 15_000);
    await lock.release();
    expect(await h.owned.loginFails(role, password)).toBeNull();
    const during = await h.client.workflow.getHandle(workflowId).describe();
    expect(during.status.name).toBe('RUNNING');
    expect((await auditRows(h, workflowId)).length).toBe(0);

    const second = spawnWorker(h);
    workers.push(second);
    await second.ready;
    const result = await h.client.workflow.getHandle(workflowId).result();
    // The retry waited for the lost attempt's start-to-close timeout (30 s).
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(25_000);
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');

    const counts = await activityCounts(h, workflowId);
    expect(counts.revokeCredential).toMatchObject({ scheduled: 1, maxAttempt: 2 });
    expect(counts.recordAudit?.scheduled).toBe(1);
    expect(await executionsOf(h, workflowId)).toBe(1);
    const rows = await auditRows(h, workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'contained', run_id: runId, verification_method: 'login_rejected' });
    expect(slackMessagesOf(h, workflowId)).toHaveLength(1);
    expect(h.slack.messageRequests().filter((m) => m.method === 'chat.postMessage' && m.text.includes(workflowId))).toHaveLength(1);
    expect(h.pagerduty.events()).toHaveLength(0);

    expectNowhere(await secretPlaces(h, [workflowId], { 'first worker output': first.output(), 'second worker output': second.output() }), [password]);
  } finally {
    await lock.release();
  }
});

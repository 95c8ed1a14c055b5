/**
 * Faults 6 and 7, Temporal itself goes away. Each scenario runs its own Temporal dev server (the
 * project's CLI, tools/temporal-dev.ts) so it can stop and start it without touching the suite's.
 * 6: the server (persisted to a SQLite file) is restarted while three runs are mid-rotation; their
 *    rotations finish while it is down. Every run completes, each with one rotation and one audit row.
 * 7: the server is down when a detection arrives: the ingress answers 503 with Retry-After and keeps
 *    nothing; the scanner's retries (the same delivery) after recovery start exactly one run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import { afterAll, expect, it } from 'vitest';
import { resolveTemporalCli } from '../../tools/temporal-cli';
import { freePort, startDevServer, type DevServer } from '../../tools/temporal-dev';
import type { KillSwitchResult } from '../../contracts/run';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import {
  activityCounts,
  auditRows,
  blockedAlter,
  blockedAlters,
  executionsOf,
  holdRole,
  sleep,
  slackMessagesOf,
  spawnWorker,
  waitFor,
  type WorkerProcess,
} from './support';

const cli = resolveTemporalCli();
const LOG = 'test-results/temporal-faults-dev.log';
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A run's result, asked again while the client reconnects after the outage (bounded). */
async function resultOf(h: Harness, workflowId: string): Promise<KillSwitchResult> {
  let last: unknown;
  for (let i = 0; i < 10; i++) {
    try {
      return await h.client.workflow.getHandle(workflowId).result();
    } catch (err) {
      last = err;
      await sleep(2000);
    }
  }
  throw last;
}

it('the Temporal server restarted mid-run (state on disk): every run completes, one rotation and one audit row each', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-fault-temporal-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const dbFile = path.join(dir, 'temporal.db');
  const port = await freePort();
  let dev: DevServer = await startDevServer({ cli, port, dbFile, headless: true, logFile: LOG });
  cleanups.push(() => dev.stop());
  const h = await startHarness({ temporalAddress: dev.address });
  cleanups.push(() => h.close());

  const roles: Array<{ role: string; password: string }> = [];
  for (let i = 0; i < 3; i++) roles.push(await h.owned.createRole());
  const locks = await Promise.all(roles.map((r) => holdRole(r.role)));
  cleanups.push(async () => {
    for (const l of locks) await l.release();
  });
  const runs: Array<{ workflowId: string; runId: string }> = [];
  for (const { role, password } of roles) {
    const res = await h.post({
      scanner: 'restart-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
    });
    expect(res.status).toBe(202);
    runs.push(res.json);
  }
  // All three are inside their rotation (started revokeCredential), one ALTER ROLE blocked on its lock.
  await waitFor('a rotation blocked on its role lock', () => blockedAlter(h), 30_000);
  // revokeCredential is a local activity, inside each run's first workflow task: all three tasks
  // started (the worker holds them), and the provider's admin pool (2 connections) full of ALTER
  // ROLEs waiting on their locks, the third queued behind them.
  await waitFor(
    'three runs inside revokeCredential',
    async () => {
      if ((await blockedAlters(h)) < 2) return false;
      for (const { workflowId } of runs) {
        const d = await h.client.workflow.getHandle(workflowId).describe();
        if (
          d.raw.pendingWorkflowTask?.state !==
          temporal.api.enums.v1.PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
        )
          return false;
      }
      return true;
    },
    30_000,
  );

  await dev.stop();
  // The rotations complete while Temporal is down; the worker has to report them afterwards.
  for (const l of locks) await l.release();
  await waitFor(
    'the leaked passwords to die',
    async () => {
      for (const { role, password } of roles)
        if ((await h.owned.loginFails(role, password)) !== '28P01') return false;
      return true;
    },
    20_000,
  );
  await sleep(3000);
  dev = await startDevServer({ cli, port, dbFile, headless: true, logFile: LOG });

  for (const { workflowId, runId } of runs) {
    const result = await resultOf(h, workflowId);
    expect(result.outcome).toBe('contained');
    const counts = await activityCounts(h, workflowId);
    expect(counts.revokeCredential?.scheduled).toBe(1);
    expect(counts.recordAudit?.scheduled).toBe(1);
    expect(await executionsOf(h, workflowId)).toBe(1);
    const rows = await auditRows(h, workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'contained', run_id: runId });
    expect(slackMessagesOf(h, workflowId)).toHaveLength(1);
  }
  expect(h.pagerduty.events()).toHaveLength(0);
  expectNowhere(
    await secretPlaces(
      h,
      runs.map((r) => r.workflowId),
    ),
    roles.map((r) => r.password),
  );
});

it('Temporal down when a detection arrives: 503 with Retry-After, and the retry after recovery starts exactly one run', async () => {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const h = await startHarness({ temporalAddress: address, worker: false, deadlineMs: 2000 });
  cleanups.push(() => h.close());

  const { role, password } = await h.owned.createRole();
  const body = JSON.stringify({
    scanner: 'outage-scanner',
    findingId: `finding-${rand()}`,
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
  });
  // The scanner's delivery: the same id and timestamp on every retry (Standard Webhooks).
  const delivery = { webhookId: `msg_outage_${rand()}${rand()}`, timestamp: new Date() };

  const refused = await h.post(body, delivery);
  expect(refused.status).toBe(503);
  expect(refused.headers.get('retry-after')).toBe('5');
  expect(refused.json).toMatchObject({ type: expect.stringContaining('temporal-unavailable') });
  // Nothing kept: the delivery id is free for the retry and no sealed value stays behind.
  const ledger = await h.db.query('SELECT 1 FROM killswitch_deliveries WHERE delivery_id = $1', [
    delivery.webhookId,
  ]);
  expect(ledger.rows).toHaveLength(0);
  // (The sighting row stays: it is keyed by credential and detection, so the retry re-uses it.)
  const seen = await h.db.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM killswitch_sightings WHERE scanner = 'outage-scanner'`,
  );
  for (const { workflow_id } of seen.rows) {
    expect(
      (await h.db.query('SELECT 1 FROM killswitch_evidence WHERE workflow_id = $1', [workflow_id])).rows,
    ).toHaveLength(0);
  }

  const dev = await startDevServer({ cli, port, headless: true, logFile: LOG });
  cleanups.push(() => dev.stop());
  const worker: WorkerProcess = spawnWorker(h);
  cleanups.push(() => worker.stop());
  await worker.ready;

  // The scanner retries after Retry-After until accepted (bounded).
  let accepted: Awaited<ReturnType<Harness['post']>> | undefined;
  const statuses: number[] = [refused.status];
  for (let i = 0; i < 12 && !accepted; i++) {
    await sleep(Number(refused.headers.get('retry-after')) * 1000);
    const res = await h.post(body, delivery);
    statuses.push(res.status);
    if (res.status === 202) accepted = res;
    else expect(res.status).toBe(503);
  }
  expect(accepted, `statuses: ${statuses.join(', ')}`).toBeDefined();
  expect(accepted!.json.duplicate).toBeUndefined();
  const { workflowId, runId } = accepted!.json as { workflowId: string; runId: string };

  const result = await resultOf(h, workflowId);
  expect(result.outcome).toBe('contained');
  expect(await h.owned.loginFails(role, password)).toBe('28P01');
  expect(await executionsOf(h, workflowId)).toBe(1);
  expect((await activityCounts(h, workflowId)).revokeCredential?.scheduled).toBe(1);
  const rows = await auditRows(h, workflowId);
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({ outcome: 'contained', run_id: runId });
  expect(slackMessagesOf(h, workflowId)).toHaveLength(1);

  // One more retry of the same delivery (the sender never saw our 202): answered from the ledger.
  const again = await h.post(body, delivery);
  expect(again.status).toBe(202);
  expect(again.json).toMatchObject({ duplicate: true, workflowId, runId });
  expect(await executionsOf(h, workflowId)).toBe(1);
  expectNowhere(await secretPlaces(h, [workflowId], { 'worker output': worker.output() }), [password]);
});

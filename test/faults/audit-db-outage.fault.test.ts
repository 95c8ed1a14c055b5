/**
 * Fault 3, the kill switch's own database is down for 30 seconds mid-run. That database runs on a
 * throwaway PostgreSQL cluster this file stops and starts (pg_ctl, fast shutdown: every connection
 * is cut). The detection names the role only (no value), so everything between the rotation and
 * the audit step runs without that database; the outage starts while the rotation is held and
 * lasts past the audit step. Proof: the rotation still happens, recordAudit (a local activity) is
 * retried during the outage (the `audit` profile has no attempt limit; past its local retry
 * threshold each retry waits on a server timer) and its row lands once after recovery; the
 * run's one Slack message ends up showing the outcome.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { rand, startHarness, type Harness } from '../helpers/harness';
import { startScramCluster, type ScramCluster } from '../helpers/pg-cluster';
import { localActivityMarkers } from '../helpers/history';
import {
  activityCounts,
  auditRows,
  blockedAlter,
  holdRole,
  slackMessagesOf,
  sleep,
  waitFor,
} from './support';

const OUTAGE_MS = 30_000;
let cluster: ScramCluster;
let h: Harness;

beforeAll(async () => {
  cluster = await startScramCluster();
  const su = new pg.Client(cluster.superuserConfig);
  await su.connect();
  const password = randomBytes(12).toString('hex');
  await su.query(`CREATE ROLE ks_app LOGIN PASSWORD '${password}'`);
  await su.query('CREATE DATABASE killswitch OWNER ks_app');
  await su.end();
  h = await startHarness({
    env: { DATABASE_URL: `postgres://ks_app:${password}@${cluster.host}:${cluster.port}/killswitch` },
  });
});
afterAll(async () => {
  await h?.close();
  cluster?.stop();
});

it('the audit database down for 30 s mid-run: the audit activity retries and the row lands once after recovery', async () => {
  const { role, password } = await h.owned.createRole();
  const lock = await holdRole(role);
  let down = false;
  try {
    const res = await h.post({
      scanner: 'outage-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      credentialRef: { role, host: '127.0.0.1' },
    });
    expect(res.status).toBe(202);
    const { workflowId, runId } = res.json as { workflowId: string; runId: string };
    const handle = h.client.workflow.getHandle(workflowId);

    await waitFor('the rotation to be blocked on the role lock', () => blockedAlter(h), 30_000);
    cluster.pause();
    down = true;
    const downAt = Date.now();
    await lock.release();

    // Contained in the owned system while the audit database is down; the audit step keeps failing.
    await waitFor(
      'the leaked password to die',
      async () => (await h.owned.loginFails(role, password)) === '28P01',
      20_000,
    );
    // recordAudit is a local activity: its first attempts retry inside the worker, then (backoff past
    // the profile's localRetryThreshold) each failed attempt is a marker in history and a server timer.
    const failedAttempt = await waitFor(
      'recordAudit to be retried on a server timer',
      async () =>
        localActivityMarkers(await handle.fetchHistory()).find(
          (m) => m.activityType === 'recordAudit' && m.failed && m.backoff,
        ),
      OUTAGE_MS,
      500,
    );
    expect(failedAttempt.attempt).toBeGreaterThanOrEqual(2);
    expect((await handle.describe()).status.name).toBe('RUNNING');

    await sleep(Math.max(0, downAt + OUTAGE_MS - Date.now()));
    cluster.resume();
    down = false;
    const upAt = Date.now();

    const result = await handle.result();
    expect(result.outcome).toBe('contained');
    expect(result.audit).toEqual({ inserted: true });
    expect(result.verification?.method).toBe('not_verifiable_no_leaked_value');

    const counts = await activityCounts(h, workflowId);
    expect(counts.revokeCredential).toMatchObject({ scheduled: 1, maxAttempt: 1 });
    expect(counts.recordAudit?.scheduled).toBe(1);
    expect(counts.recordAudit!.maxAttempt).toBeGreaterThanOrEqual(3);

    const rows = await auditRows(h, workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'contained', run_id: runId });
    expect((rows[0]!.recorded_at as Date).getTime()).toBeGreaterThanOrEqual(upAt - 1000);
    expect((rows[0]!.revoked_at as Date).getTime()).toBeLessThan(upAt);

    const messages = slackMessagesOf(h, workflowId);
    expect(messages).toHaveLength(1);
    expect(messages[0]!.text).toContain('contained');
    expect(h.pagerduty.events()).toHaveLength(0);
  } finally {
    await lock.release();
    if (down) cluster.resume();
  }
});

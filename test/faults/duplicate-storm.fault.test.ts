/**
 * Fault 1, duplicate storm: a scanner (or several of its retries at once) delivers ONE detection
 * 200 times concurrently. The run is held mid-rotation (the role's row lock) until every delivery
 * has been answered, so all of them must join the run in flight, and every answer (first or
 * duplicate) names it. Proof: one run, one scheduled revokeCredential, one sighting, one audit row,
 * one Slack message, no page.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import {
  activityCounts,
  auditRows,
  blockedAlter,
  executionsOf,
  holdRole,
  slackMessagesOf,
  waitFor,
} from './support';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

it('200 concurrent deliveries of one detection: one run, one rotation, one audit row', async () => {
  const { role, password } = await h.owned.createRole();
  const lock = await holdRole(role);
  try {
    const body = JSON.stringify({
      scanner: 'storm-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
      location: { repository: 'acme/storm', file: '.env', line: 3 },
    });
    // 40 delivery ids, each delivered 5 times (a retrying sender), all 200 at once.
    const ids = Array.from({ length: 40 }, () => `msg_storm_${rand()}${rand()}`);
    const deliveries = ids.flatMap((id) => Array.from({ length: 5 }, () => id));
    const answers = await Promise.all(deliveries.map((webhookId) => h.post(body, { webhookId })));

    expect(answers.map((a) => a.status)).toEqual(deliveries.map(() => 202));
    // The first request of each delivery id claims it; the other four are duplicates, answered from
    // the ledger, or (while the claim is still unanswered) by joining the same run: every answer
    // names the run either way.
    const fresh = answers.filter((a) => a.json.duplicate !== true);
    expect(fresh).toHaveLength(ids.length);
    const workflowId: string = fresh[0]!.json.workflowId;
    const runId: string = fresh[0]!.json.runId;
    expect(workflowId).toMatch(/^killswitch-postgres_password-[0-9a-f]{32}$/);
    expect(answers.map((a) => `${a.json.workflowId}/${a.json.runId}`)).toEqual(
      answers.map(() => `${workflowId}/${runId}`),
    );

    // Every answer is out and the run is still stuck in its one rotation.
    await waitFor('the rotation to be blocked on the role lock', () => blockedAlter(h), 30_000);
    expect(await executionsOf(h, workflowId)).toBe(1);
    expect(await h.owned.loginFails(role, password)).toBeNull();

    await lock.release();
    const result = await h.client.workflow.getHandle(workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');

    const counts = await activityCounts(h, workflowId);
    expect(counts.revokeCredential).toMatchObject({ scheduled: 1, maxAttempt: 1 });
    expect(counts.verifyDead?.scheduled).toBe(1);
    expect(counts.recordAudit?.scheduled).toBe(1);
    expect(await executionsOf(h, workflowId)).toBe(1);

    const rows = await auditRows(h, workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'contained', run_id: runId });
    const sightings = await h.db.query('SELECT * FROM killswitch_sightings WHERE workflow_id = $1', [
      workflowId,
    ]);
    expect(sightings.rows).toHaveLength(1);
    const ledger = await h.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM killswitch_deliveries WHERE source = 'generic' AND delivery_id = ANY($1)`,
      [ids],
    );
    expect(ledger.rows[0]!.n).toBe(ids.length);

    expect(slackMessagesOf(h, workflowId)).toHaveLength(1);
    expect(
      h.slack.messageRequests().filter((m) => m.method === 'chat.postMessage' && m.text.includes(workflowId)),
    ).toHaveLength(1);
    expect(h.pagerduty.events()).toHaveLength(0);

    // A re-delivery after the end is still answered from the ledger: no second run.
    const again = await h.post(body, { webhookId: ids[0]! });
    expect(again.status).toBe(202);
    expect(again.json).toMatchObject({ duplicate: true, workflowId, runId });
    expect(await executionsOf(h, workflowId)).toBe(1);

    expectNowhere(await secretPlaces(h, [workflowId]), [password]);
  } finally {
    await lock.release();
  }
});

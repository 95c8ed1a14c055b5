/**
 * The intake's crash windows, each put in place exactly: the delivery ledger row a killed ingress
 * leaves behind (claimed, never answered), then the sender's re-send (same delivery id). Whatever
 * the first attempt got done before it died, the re-send is answered 2xx naming the one run of the
 * delivery, and nothing runs twice. (test/faults/intake-crash.fault.test.ts kills real processes
 * mid-burst; this file pins each window down.)
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import schema from '@octokit/webhooks-schemas/schema.json' with { type: 'json' };
import { startGitHubFake, type GitHubFake } from '../fakes/github';
import { holdRole, waitFor } from '../faults/support';
import { leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';
import { sampleOf } from '../helpers/schema-sample';

let h: Harness;
let gh: GitHubFake;
const GH_SECRET = `gh-webhook-${rand()}${rand()}`;

beforeAll(async () => {
  gh = await startGitHubFake();
  h = await startHarness({
    env: { GITHUB_WEBHOOK_SECRETS: GH_SECRET, GITHUB_TOKEN: gh.token },
    config: { sources: { github: { secretsEnv: 'GITHUB_WEBHOOK_SECRETS', apiTokenEnv: 'GITHUB_TOKEN', apiUrl: gh.apiUrl, escalateAfter: '10s' } } },
  });
});
afterAll(async () => {
  await h?.close();
  await gh?.close();
});

/** The ledger row as a SIGKILL between claim and answer leaves it. */
async function unanswer(source: string, deliveryId: string): Promise<void> {
  const r = await h.db.query('UPDATE killswitch_deliveries SET status = NULL, response = NULL WHERE source = $1 AND delivery_id = $2 RETURNING delivery_id', [source, deliveryId]);
  expect(r.rows).toHaveLength(1);
}

async function runsOf(workflowId: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const e of h.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) ids.push(e.runId);
  return ids;
}

async function auditOf(workflowId: string) {
  return (await h.db.query<{ run_id: string; outcome: string }>('SELECT run_id, outcome FROM killswitch_audit WHERE workflow_id = $1', [workflowId])).rows;
}

/** A signed secret_scanning_alert delivery (GitHub's schema), re-sendable as GitHub redelivers it. */
function githubSender(repo: string, number: number, url: string, delivery: string) {
  const doc = sampleOf((schema as any).definitions['secret_scanning_alert$created'], schema as any) as any;
  doc.repository.full_name = repo;
  doc.repository.name = repo.split('/')[1];
  doc.alert.number = number;
  doc.alert.secret_type = 'postgres_connection_uri';
  if ('url' in doc.alert) doc.alert.url = url;
  const body = JSON.stringify(doc);
  return () =>
    fetch(`${h.baseUrl}/webhooks/github`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'secret_scanning_alert',
        'x-github-delivery': delivery,
        'x-hub-signature-256': `sha256=${createHmac('sha256', GH_SECRET).update(body).digest('hex')}`,
      },
      body,
    }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));
}

function leak(role: string, password: string) {
  return JSON.stringify({ scanner: 'crash-window', findingId: `f-${rand()}`, credentialType: 'postgres_password', secret: leakedUrl(role, password) });
}

describe('a re-send after a crash of the ingress', () => {
  it('died after claiming, before dispatching: the re-send starts the run', async () => {
    const { role, password } = await h.owned.createRole();
    const webhookId = `msg_claimed_${rand()}${rand()}`;
    await h.db.query(`INSERT INTO killswitch_deliveries (source, delivery_id, received_at) VALUES ('generic', $1, now() - interval '3 seconds')`, [webhookId]);

    const res = await h.post(leak(role, password), { webhookId });
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ status: 'accepted', workflowId: expect.stringMatching(/^killswitch-postgres_password-/), runId: expect.any(String) });
    const result = await h.client.workflow.getHandle(res.json.workflowId, res.json.runId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    expect(await runsOf(res.json.workflowId)).toEqual([res.json.runId]);
    // The first receipt is when the leak was reported: the time to contain counts from there.
    const row = await h.db.query<{ status: number }>('SELECT status FROM killswitch_deliveries WHERE delivery_id = $1', [webhookId]);
    expect(row.rows[0]!.status).toBe(202);
  });

  it('died after starting the run, before answering; the run has finished since: the re-send names that run, nothing new starts', async () => {
    const { role, password } = await h.owned.createRole();
    const webhookId = `msg_started_${rand()}${rand()}`;
    const body = leak(role, password);
    const first = await h.post(body, { webhookId });
    expect(first.status).toBe(202);
    const { workflowId, runId } = first.json;
    await h.client.workflow.getHandle(workflowId, runId).result();
    await unanswer('generic', webhookId);

    const again = await h.post(body, { webhookId });
    expect(again.status).toBe(202);
    expect(again.json).toMatchObject({ workflowId, runId, duplicate: true });
    expect(await runsOf(workflowId)).toEqual([runId]);
    expect(await auditOf(workflowId)).toEqual([{ run_id: runId, outcome: 'contained' }]);
    // The ledger has its answer now: a third copy is answered from it.
    const third = await h.post(body, { webhookId });
    expect(third.json).toMatchObject({ workflowId, runId, duplicate: true });
  });

  it('died after starting the run, before answering; the run is still rotating: the re-send joins it', async () => {
    const { role, password } = await h.owned.createRole();
    const lock = await holdRole(role);
    try {
      const webhookId = `msg_inflight_${rand()}${rand()}`;
      const body = leak(role, password);
      const first = await h.post(body, { webhookId });
      const { workflowId, runId } = first.json;
      await unanswer('generic', webhookId);

      const again = await h.post(body, { webhookId });
      expect(again.status).toBe(202);
      expect(again.json).toMatchObject({ workflowId, runId, duplicate: true });
      await lock.release();
      const result = await h.client.workflow.getHandle(workflowId, runId).result();
      expect(result.outcome).toBe('contained');
      expect(await runsOf(workflowId)).toEqual([runId]);
      expect(await auditOf(workflowId)).toEqual([{ run_id: runId, outcome: 'contained' }]);
      const history = await h.client.workflow.getHandle(workflowId, runId).fetchHistory();
      const revokes = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'revokeCredential');
      expect(revokes).toHaveLength(1);
    } finally {
      await lock.release();
    }
  });

  it('GitHub: died after starting the enrichment, before answering; enrichment and containment finished since: no second enrichment, no second run', async () => {
    const { role, password } = await h.owned.createRole();
    const repo = 'acme/crash';
    const number = 1000 + Math.floor(Math.random() * 1e6);
    const url = gh.addAlert(repo, { number, secret_type: 'postgres_connection_uri', secret: leakedUrl(role, password), validity: 'active', path: '.env', line: 1 });
    const delivery = `${rand()}-${rand()}-${rand()}`;
    const send = githubSender(repo, number, url, delivery);
    const first = await send();
    expect(first.status).toBe(202);
    expect(first.json.status).toBe('enriching');
    const enriched = await h.client.workflow.getHandle(first.json.workflowId).result();
    await h.client.workflow.getHandle(enriched.workflowId, enriched.runId).result();
    await unanswer('github', delivery);

    const again = await send();
    expect(again.status).toBe(202);
    expect(again.json).toMatchObject({ status: 'enriching', workflowId: first.json.workflowId, runId: first.json.runId, duplicate: true });
    expect(await runsOf(first.json.workflowId)).toEqual([first.json.runId]);
    await waitFor('the visibility of the contained run', async () => (await runsOf(enriched.workflowId)).length === 1);
    expect(await runsOf(enriched.workflowId)).toEqual([enriched.runId]);
    expect(await auditOf(enriched.workflowId)).toEqual([{ run_id: enriched.runId, outcome: 'contained' }]);
  });

  it('GitHub down: the source\'s escalateAfter (10s here) pages a human from the ingress\'s delivery; the late value is contained', async () => {
    const { role, password } = await h.owned.createRole();
    const repo = 'acme/down';
    const number = 1000 + Math.floor(Math.random() * 1e6);
    const url = gh.addAlert(repo, { number, secret_type: 'postgres_connection_uri', secret: leakedUrl(role, password), validity: 'active', path: '.env', line: 1 });
    gh.down();
    const delivery = `${rand()}-${rand()}-${rand()}`;
    const sent = Date.now();
    try {
      const res = await githubSender(repo, number, url, delivery)();
      expect(res.status).toBe(202);
      const page = await waitFor(
        'the early page',
        () => h.pagerduty.events().find((e) => e.event_action === 'trigger' && e.payload?.custom_details?.credential_ref?.alert === `${repo}#${number}`),
        60_000,
      );
      // Paged after the configured 10 s, not after the default 2 minutes.
      expect(Date.now() - sent).toBeGreaterThanOrEqual(10_000);
      expect(Date.now() - sent).toBeLessThan(60_000);
      expect(page.dedup_key).toMatch(/^killswitch-/);
    } finally {
      gh.up();
    }
    // GitHub is back: the fetch (still retrying) gets the value, and the credential is contained.
    const enriched = await h.client.workflow.getHandle(`enrich-github-${delivery}`).result();
    expect(enriched.enriched).toBe(true);
    const result = await h.client.workflow.getHandle(enriched.workflowId, enriched.runId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
  });
});

/**
 * The intake's crash windows, each put in place exactly: the delivery ledger row a killed ingress
 * leaves behind (claimed, never answered), then the sender's re-send (same delivery id). Whatever
 * the first attempt got done before it died, the re-send is answered 2xx naming the one run of the
 * delivery, and nothing runs twice. (test/faults/intake-crash.fault.test.ts kills real processes
 * mid-burst; this file pins each window down.)
 *
 * A delivery's steps: one statement (claim, sealed value, sighting rows) → signal-with-start of
 * each run → the answer → the answer stored in the ledger, not awaited. Windows: after the claim
 * statement; after the start (the run since finished, or still rotating); after the answer, before
 * it is stored (the same ledger row as after the start: the sender may have its 2xx and re-send
 * anyway); the store failing outright.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import schema from '@octokit/webhooks-schemas/schema.json' with { type: 'json' };
import { createDeliveryLedger } from '../../api/deliveries';
import { normaliseGeneric, validateGeneric } from '../../api/sources/generic';
import { createDispatcher, createWorkflowDispatcher, temporalTarget } from '../../lib/dispatch';
import { sightingLedger } from '../../store/sightings';
import type { Db } from '../../lib/db';
import { createEvidenceStore } from '../../store/evidence';
import { killSwitchWorkflowId } from '../../contracts/run';
import { startGitHubFake, type GitHubFake } from '../fakes/github';
import { holdRole, waitFor } from '../faults/support';
import { capturedLogs, leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';
import { sampleOf } from '../helpers/schema-sample';
import { timesRequested } from '../helpers/history';

let h: Harness;
let gh: GitHubFake;
const GH_SECRET = `gh-webhook-${rand()}${rand()}`;

beforeAll(async () => {
  gh = await startGitHubFake();
  h = await startHarness({
    env: { GITHUB_WEBHOOK_SECRETS: GH_SECRET, GITHUB_TOKEN: gh.token },
    config: {
      sources: {
        github: {
          secretsEnv: 'GITHUB_WEBHOOK_SECRETS',
          apiTokenEnv: 'GITHUB_TOKEN',
          apiUrl: gh.apiUrl,
          escalateAfter: '10s',
        },
      },
    },
  });
  // A fault in the real database, for this file's delivery ids only: storing the answer (the
  // ledger's UPDATE) takes 3 s for msg_slowstore_*, and is refused for msg_storefail_*.
  await h.db
    .query(`CREATE OR REPLACE FUNCTION intake_crash_windows_store() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.delivery_id LIKE 'msg_storefail_%' THEN RAISE EXCEPTION 'intake-crash-windows: store refused'; END IF;
      PERFORM pg_sleep(3);
      RETURN NEW;
    END $$`);
  await h.db
    .query(`CREATE OR REPLACE TRIGGER intake_crash_windows_store BEFORE UPDATE ON killswitch_deliveries
    FOR EACH ROW WHEN (NEW.delivery_id LIKE 'msg_slowstore_%' OR NEW.delivery_id LIKE 'msg_storefail_%') EXECUTE FUNCTION intake_crash_windows_store()`);
});
afterAll(async () => {
  await h?.db
    .query('DROP TRIGGER IF EXISTS intake_crash_windows_store ON killswitch_deliveries')
    .catch(() => undefined);
  await h?.db.query('DROP FUNCTION IF EXISTS intake_crash_windows_store()').catch(() => undefined);
  await h?.close();
  await gh?.close();
});

/** The ledger row as a SIGKILL between claim and answer leaves it. */
async function unanswer(source: string, deliveryId: string): Promise<void> {
  const r = await h.db.query(
    'UPDATE killswitch_deliveries SET status = NULL, response = NULL WHERE source = $1 AND delivery_id = $2 RETURNING delivery_id',
    [source, deliveryId],
  );
  expect(r.rows).toHaveLength(1);
}

async function runsOf(workflowId: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const e of h.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) ids.push(e.runId);
  return ids;
}

async function auditOf(workflowId: string) {
  return (
    await h.db.query<{ run_id: string; outcome: string }>(
      'SELECT run_id, outcome FROM killswitch_audit WHERE workflow_id = $1',
      [workflowId],
    )
  ).rows;
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
  return JSON.stringify({
    scanner: 'crash-window',
    findingId: `f-${rand()}`,
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
  });
}

/** The ledger rows of one delivery, with the transaction that wrote each (xmin). */
async function writesOf(webhookId: string, workflowId: string) {
  const q = async (sql: string, args: unknown[]) =>
    (await h.db.query<{ tx: string }>(sql, args)).rows.map((r) => r.tx);
  return {
    claim: await q(
      `SELECT xmin::text AS tx FROM killswitch_deliveries WHERE source = 'generic' AND delivery_id = $1`,
      [webhookId],
    ),
    evidence: await q('SELECT xmin::text AS tx FROM killswitch_evidence WHERE workflow_id = $1', [
      workflowId,
    ]),
    sightings: await q('SELECT xmin::text AS tx FROM killswitch_sightings WHERE workflow_id = $1', [
      workflowId,
    ]),
  };
}

describe('one delivery, one write', () => {
  it('the claim, the sealed value and the sighting are written in one transaction, before the run is signalled', async () => {
    const { role, password } = await h.owned.createRole();
    // The run waits on a lock of its role, so its value is still sealed (a run purges it when it
    // ends); the stored answer is slow (msg_slowstore_), so the claim is still the row's version.
    const lock = await holdRole(role);
    try {
      const webhookId = `msg_slowstore_onewrite_${rand()}${rand()}`;
      const res = await h.post(leak(role, password), { webhookId });
      expect(res.status).toBe(202);
      const workflowId = killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password));
      expect(res.json.workflowId).toBe(workflowId);
      const w = await writesOf(webhookId, workflowId);
      expect(w.claim).toHaveLength(1);
      expect(w).toEqual({ claim: w.claim, evidence: w.claim, sightings: w.claim });
      await lock.release();
      expect((await h.client.workflow.getHandle(workflowId, res.json.runId).result()).outcome).toBe(
        'contained',
      );
    } finally {
      await lock.release();
    }
  });
});

describe('the answer is stored after it is sent', () => {
  it('the sender does not wait for the ledger: the run exists when the answer comes, the answer is stored later', async () => {
    const { role, password } = await h.owned.createRole();
    const webhookId = `msg_slowstore_${rand()}${rand()}`;
    const sent = Date.now();
    const res = await h.post(leak(role, password), { webhookId });
    const took = Date.now() - sent;
    expect(res.status).toBe(202);
    expect(took).toBeLessThan(2500);
    // Durable before the answer: the run is in Temporal.
    expect((await h.client.workflow.getHandle(res.json.workflowId, res.json.runId).describe()).runId).toBe(
      res.json.runId,
    );
    const stored = await waitFor(
      'the stored answer',
      async () => {
        const r = await h.db.query<{ status: number | null; response: any }>(
          `SELECT status, response FROM killswitch_deliveries WHERE source = 'generic' AND delivery_id = $1`,
          [webhookId],
        );
        return r.rows[0]?.status ? r.rows[0] : undefined;
      },
      15_000,
    );
    expect(stored).toMatchObject({
      status: 202,
      response: { workflowId: res.json.workflowId, runId: res.json.runId },
    });
    await h.client.workflow.getHandle(res.json.workflowId, res.json.runId).result();
  });

  it('a store that fails is logged, the 202 stands, and a re-send names the same run', async () => {
    const { role, password } = await h.owned.createRole();
    const webhookId = `msg_storefail_${rand()}${rand()}`;
    const body = leak(role, password);
    const first = await h.post(body, { webhookId });
    expect(first.status).toBe(202);
    const { workflowId, runId } = first.json;
    const warning = await waitFor(
      'the warning',
      () => capturedLogs.find((l) => l.includes('answer was not stored') && l.includes(webhookId)),
      10_000,
    );
    expect(JSON.parse(warning)).toMatchObject({
      level: 40,
      err: { message: expect.stringContaining('store refused') },
    });
    const row = await h.db.query<{ status: number | null }>(
      `SELECT status FROM killswitch_deliveries WHERE source = 'generic' AND delivery_id = $1`,
      [webhookId],
    );
    expect(row.rows).toEqual([{ status: null }]);
    await h.client.workflow.getHandle(workflowId, runId).result();

    const again = await h.post(body, { webhookId });
    expect(again.status).toBe(202);
    expect(again.json).toMatchObject({ workflowId, runId, duplicate: true });
    expect(await runsOf(workflowId)).toEqual([runId]);
    expect(await auditOf(workflowId)).toEqual([{ run_id: runId, outcome: 'contained' }]);
    expect(capturedLogs.join('')).not.toContain('unhandled error');
  });
});

describe('a re-send after a crash of the ingress', () => {
  it('died after claiming, before dispatching: the re-send starts the run', async () => {
    const { role, password } = await h.owned.createRole();
    const webhookId = `msg_claimed_${rand()}${rand()}`;
    await h.db.query(
      `INSERT INTO killswitch_deliveries (source, delivery_id, received_at) VALUES ('generic', $1, now() - interval '3 seconds')`,
      [webhookId],
    );

    const res = await h.post(leak(role, password), { webhookId });
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({
      status: 'accepted',
      workflowId: expect.stringMatching(/^killswitch-postgres_password-/),
      runId: expect.any(String),
    });
    const result = await h.client.workflow.getHandle(res.json.workflowId, res.json.runId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    expect(await runsOf(res.json.workflowId)).toEqual([res.json.runId]);
    // The first receipt is when the leak was reported: the time to contain counts from there.
    const row = await h.db.query<{ status: number }>(
      'SELECT status FROM killswitch_deliveries WHERE delivery_id = $1',
      [webhookId],
    );
    expect(row.rows[0]!.status).toBe(202);
  });

  it('died after the claim statement (claim, sealed value, sighting), before the start: the re-send starts the run, which verifies with the sealed value', async () => {
    const { role, password } = await h.owned.createRole();
    const webhookId = `msg_recorded_${rand()}${rand()}`;
    const body = leak(role, password);
    // What the ingress's one statement commits, made by the ingress's own modules; then it "dies".
    const receivedAt = new Date(Date.now() - 3000);
    const sighting = normaliseGeneric(validateGeneric(JSON.parse(body)), h.keys, receivedAt);
    const workflowId = killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password));
    const dispatcher = createDispatcher({
      workflows: createWorkflowDispatcher(temporalTarget(h.config, h.client)),
      evidence: createEvidenceStore(h.db, h.keys, 1),
      sightings: sightingLedger(h.db),
    });
    const claim = await createDeliveryLedger(h.db).claim(
      'generic',
      webhookId,
      dispatcher.prepare([sighting], receivedAt),
    );
    expect(claim).toEqual({ kind: 'new', sealed: [workflowId] });
    const w = await writesOf(webhookId, workflowId);
    expect(w).toEqual({ claim: [w.claim[0]], evidence: [w.claim[0]], sightings: [w.claim[0]] });
    expect(await runsOf(workflowId)).toEqual([]);

    const res = await h.post(body, { webhookId });
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({ status: 'accepted', workflowId, duplicate: true });
    const result = await h.client.workflow.getHandle(workflowId, res.json.runId).result();
    expect(result.outcome).toBe('contained');
    // Verified dead with the value sealed by the first attempt: the login with it is refused.
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    expect(await runsOf(workflowId)).toEqual([res.json.runId]);
    expect(await auditOf(workflowId)).toEqual([{ run_id: res.json.runId, outcome: 'contained' }]);
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
      expect(timesRequested(history, 'revokeCredential')).toBe(1);
    } finally {
      await lock.release();
    }
  });

  it('a re-send racing the end of its run (open at the audit check, closed at the signal): it names that run, nothing new starts', async () => {
    const { role, password } = await h.owned.createRole();
    const lock = await holdRole(role);
    try {
      const body = leak(role, password);
      const first = await h.post(body, { webhookId: `msg_race_${rand()}${rand()}` });
      const { workflowId, runId } = first.json;
      // The re-send's audit check reads while the run is still rotating; the run then ends (and
      // writes its audit row) before the re-send signals.
      let raced = false;
      const db: Db = {
        kind: h.db.kind,
        withSession: (fn) => h.db.withSession(fn),
        close: async () => undefined,
        async query(text, params) {
          const r = await h.db.query(text, params);
          if (!raced && /FROM killswitch_audit WHERE workflow_id = \$1 AND sightings @>/.test(text)) {
            raced = true;
            expect(r.rows).toEqual([]);
            await lock.release();
            await h.client.workflow.getHandle(workflowId, runId).result();
          }
          return r as never;
        },
      };
      const receivedAt = new Date();
      const sighting = normaliseGeneric(validateGeneric(JSON.parse(body)), h.keys, receivedAt);
      const dispatcher = createDispatcher({
        workflows: createWorkflowDispatcher(temporalTarget(h.config, h.client)),
        evidence: createEvidenceStore(db, h.keys, 1),
        sightings: sightingLedger(db),
      });
      const again = await dispatcher.dispatch(sighting, receivedAt, { redelivery: true });
      expect(raced).toBe(true);
      expect(again).toMatchObject({ workflowId, runId });
      expect(await runsOf(workflowId)).toEqual([runId]);
      expect(await auditOf(workflowId)).toEqual([{ run_id: runId, outcome: 'contained' }]);
      // The value the re-send sealed again is not left behind for its TTL.
      expect(
        (await h.db.query('SELECT 1 FROM killswitch_evidence WHERE workflow_id = $1', [workflowId])).rows,
      ).toEqual([]);
    } finally {
      await lock.release();
    }
  });

  it("a re-send of a detection no run took, after an earlier sighting's run closed: it starts the re-verifying run", async () => {
    const { role, password } = await h.owned.createRole();
    const first = await h.post(leak(role, password), { webhookId: `msg_earlier_${rand()}${rand()}` });
    const { workflowId, runId } = first.json;
    await h.client.workflow.getHandle(workflowId, runId).result();
    // Another scanner's copy of the same value, claimed by an ingress that died before dispatching it.
    const body = JSON.stringify({
      ...JSON.parse(leak(role, password)),
      findingId: `other-${rand()}`,
      scanner: 'other-scanner',
    });
    const receivedAt = new Date();
    const sighting = normaliseGeneric(validateGeneric(JSON.parse(body)), h.keys, receivedAt);
    const dispatcher = createDispatcher({
      workflows: createWorkflowDispatcher(temporalTarget(h.config, h.client)),
      evidence: createEvidenceStore(h.db, h.keys, 1),
      sightings: sightingLedger(h.db),
    });
    const again = await dispatcher.dispatch(sighting, receivedAt, { redelivery: true });
    expect(again.workflowId).toBe(workflowId);
    expect(again.runId).not.toBe(runId);
    const result = await h.client.workflow.getHandle(workflowId, again.runId).result();
    expect(result).toMatchObject({ outcome: 'already_contained', priorRunId: runId });
    expect((await runsOf(workflowId)).sort()).toEqual([runId, again.runId].sort());
  });

  it('GitHub: died after starting the enrichment, before answering; enrichment and containment finished since: no second enrichment, no second run', async () => {
    const { role, password } = await h.owned.createRole();
    const repo = 'acme/crash';
    const number = 1000 + Math.floor(Math.random() * 1e6);
    const url = gh.addAlert(repo, {
      number,
      secret_type: 'postgres_connection_uri',
      secret: leakedUrl(role, password),
      validity: 'active',
      path: '.env',
      line: 1,
    });
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
    expect(again.json).toMatchObject({
      status: 'enriching',
      workflowId: first.json.workflowId,
      runId: first.json.runId,
      duplicate: true,
    });
    expect(await runsOf(first.json.workflowId)).toEqual([first.json.runId]);
    await waitFor(
      'the visibility of the contained run',
      async () => (await runsOf(enriched.workflowId)).length === 1,
    );
    expect(await runsOf(enriched.workflowId)).toEqual([enriched.runId]);
    expect(await auditOf(enriched.workflowId)).toEqual([{ run_id: enriched.runId, outcome: 'contained' }]);
  });

  it("GitHub down: the source's escalateAfter (10s here) pages a human from the ingress's delivery; the late value is contained", async () => {
    const { role, password } = await h.owned.createRole();
    const repo = 'acme/down';
    const number = 1000 + Math.floor(Math.random() * 1e6);
    const url = gh.addAlert(repo, {
      number,
      secret_type: 'postgres_connection_uri',
      secret: leakedUrl(role, password),
      validity: 'active',
      path: '.env',
      line: 1,
    });
    gh.down();
    const delivery = `${rand()}-${rand()}-${rand()}`;
    const sent = Date.now();
    try {
      const res = await githubSender(repo, number, url, delivery)();
      expect(res.status).toBe(202);
      const page = await waitFor(
        'the early page',
        () =>
          h.pagerduty
            .events()
            .find(
              (e) =>
                e.event_action === 'trigger' &&
                e.payload?.custom_details?.credential_ref?.alert === `${repo}#${number}`,
            ),
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

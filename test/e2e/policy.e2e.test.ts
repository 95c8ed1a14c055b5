/**
 * Policy end to end on real Temporal and PostgreSQL: ignore, notify_only, require_approval (approve,
 * deny, timeout), dry run; and the ingress's delivery dedupe, runtime source switches and rate limits.
 */
import { randomBytes } from 'node:crypto';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideUpdate, type KillSwitchResult } from '../../contracts/run';
import { newWebhookSecret } from '../../lib/keys';
import { rand, startHarness, type Harness, leakedUrl, waitForStep } from '../helpers/harness';

const ADMIN = `admin-${randomBytes(16).toString('hex')}`;
const SWITCHABLE = newWebhookSecret();
const SWITCHABLE_NAME = `switchable-${randomBytes(3).toString('hex')}`;
let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    env: { ADMIN_TOKENS: ADMIN, SWITCHABLE_SECRETS: SWITCHABLE },
    config: {
      // Its own source to switch off and on, so other test files posting to generic in parallel never see it off.
      sources: {
        custom: [
          {
            name: SWITCHABLE_NAME,
            verify: { scheme: 'standard-webhooks', secretsEnv: 'SWITCHABLE_SECRETS' },
            mapping: { credentialRef: { role: 'account' }, defaultCredentialType: 'postgres_password' },
          },
        ],
      },
      policy: {
        rules: [
          { name: 'sandbox', match: { repository: 'acme/sandbox-*' }, action: 'ignore' },
          { name: 'docs', match: { repository: 'acme/docs' }, action: 'notify_only' },
          {
            name: 'prod',
            match: { repository: 'acme/prod-*' },
            action: 'require_approval',
            approvalTimeout: '4s',
            onTimeout: 'escalate',
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

const postSwitchable = (body: object) =>
  h.post(body, { path: `/webhooks/${SWITCHABLE_NAME}`, secret: SWITCHABLE });

async function audit(workflowId: string) {
  return (
    await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
      workflowId,
    ])
  ).rows;
}

describe('policy', () => {
  it('ignore: records the decision and touches nothing', async () => {
    const l = await leak('acme/sandbox-42');
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({
      outcome: 'ignored',
      policy: { action: 'ignore', rule: 'sandbox' },
      slack: { status: 'skipped' },
    });
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    expect(await audit(l.workflowId)).toMatchObject([
      { outcome: 'ignored', policy_action: 'ignore', policy_rule: 'sandbox' },
    ]);
    expect(h.slack.messages().some((m) => m.text.includes(l.workflowId))).toBe(false);
  });

  it('notify_only: tells Slack, changes nothing', async () => {
    const l = await leak('acme/docs');
    const r: KillSwitchResult = await l.handle.result();
    expect(r.outcome).toBe('notified');
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    expect(h.slack.messages().filter((m) => m.text.includes(l.workflowId))).toHaveLength(1);
    expect(await audit(l.workflowId)).toMatchObject([{ outcome: 'notified', policy_action: 'notify_only' }]);
  });

  it('require_approval: waits for a human, refuses early or malformed decisions, rotates on approve', async () => {
    const l = await leak('acme/prod-payments');
    await waitForStep(l.handle, 'awaiting_approval');
    // The step is entered before the approval request is posted: wait for the message itself.
    const asked = () =>
      h.slack.messages().some((m) => m.text.includes('Approval needed') && m.text.includes(l.workflowId));
    for (let i = 0; i < 100 && !asked(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(asked()).toBe(true);
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    await expect(
      l.handle.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by: '' }] }),
    ).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
    expect(
      await l.handle.executeUpdate(decideUpdate, {
        args: [{ decision: 'approve', by: 'alice@example.com', reason: 'confirmed leak' }],
      }),
    ).toEqual({
      accepted: true,
      decision: 'approve',
    });
    await expect(
      l.handle.executeUpdate(decideUpdate, { args: [{ decision: 'deny', by: 'mallory' }] }),
    ).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({
      outcome: 'contained',
      decidedBy: 'approve by alice@example.com: confirmed leak',
    });
    expect(await h.owned.loginFails(l.role, l.password)).toBe('28P01');
    expect(await audit(l.workflowId)).toMatchObject([
      {
        outcome: 'contained',
        decided_by: 'approve by alice@example.com: confirmed leak',
        policy_action: 'require_approval',
      },
    ]);
  });

  it('require_approval: a denial ends the run without rotation', async () => {
    const l = await leak('acme/prod-api');
    await waitForStep(l.handle, 'awaiting_approval');
    await l.handle.executeUpdate(decideUpdate, {
      args: [{ decision: 'deny', by: 'bob', reason: 'test credential' }],
    });
    const r: KillSwitchResult = await l.handle.result();
    expect(r.outcome).toBe('denied');
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    expect(await audit(l.workflowId)).toMatchObject([
      { outcome: 'denied', decided_by: 'deny by bob: test credential' },
    ]);
  });

  it('require_approval: nobody answering in time escalates to PagerDuty', async () => {
    const l = await leak('acme/prod-batch');
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({
      outcome: 'escalated',
      failure: { type: 'ApprovalTimeout', step: 'awaiting_approval' },
    });
    expect(h.pagerduty.events().filter((e) => e.dedup_key === l.workflowId)).toHaveLength(1);
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
  });
});

describe('dry run', () => {
  let dry: Harness;
  beforeAll(async () => {
    dry = await startHarness({ config: { policy: { dryRun: true } } });
  });
  afterAll(async () => {
    await dry?.close();
  });

  it('runs the whole path, asks the provider, changes nothing', async () => {
    const { role, password } = await dry.owned.createRole();
    const session = await dry.owned.connectAs(role, password);
    const res = await dry.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
    const r: KillSwitchResult = await dry.client.workflow.getHandle(res.json.workflowId).result();
    expect(r).toMatchObject({
      outcome: 'dry_run',
      policy: { dryRun: true },
      sessions: { terminated: 1 },
      verification: { method: 'dry_run' },
    });
    expect(r.rotation?.note).toMatch(/dry run/);
    expect(await dry.owned.loginFails(role, password)).toBeNull();
    expect((await session.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);
    const rows = (
      await dry.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        res.json.workflowId,
      ])
    ).rows;
    expect(rows).toMatchObject([{ outcome: 'dry_run', dry_run: true, rotated_at: null }]);
    expect(dry.slack.messages().find((m) => m.text.includes(res.json.workflowId))?.text).toMatch(/Dry run/);
  });

  it('reports a rotation that would fail, without paging anyone', async () => {
    const { role, password } = await dry.owned.createRole({ superuser: true });
    const res = await dry.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
    const r: KillSwitchResult = await dry.client.workflow.getHandle(res.json.workflowId).result();
    expect(r).toMatchObject({ outcome: 'dry_run', failure: { type: 'PermissionDenied' } });
    expect(dry.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(0);
  });
});

describe('ingress controls', () => {
  it('answers a re-delivered webhook-id from the ledger, even from a freshly started ingress', async () => {
    const body = { credentialType: 'postgres_password', credentialRef: { role: `orphan_${rand()}` } };
    const id = `msg_${rand()}${rand()}`;
    const first = await h.post(body, { webhookId: id });
    expect(first.status).toBe(202);
    const again = await h.post(body, { webhookId: id });
    expect(again.status).toBe(202);
    expect(again.json).toMatchObject({
      duplicate: true,
      workflowId: first.json.workflowId,
      runId: first.json.runId,
    });

    // A second ingress on the same database (a restart) still knows the delivery.
    const restarted = await startHarness({ worker: false });
    try {
      const { Webhook } = await import('standardwebhooks');
      const raw = JSON.stringify(body);
      const ts = new Date();
      const res = await fetch(`${restarted.baseUrl}/webhooks/generic`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'webhook-id': id,
          'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
          'webhook-signature': new Webhook(restarted.webhookSecret).sign(id, ts, raw),
        },
        body: raw,
      });
      expect(res.status).toBe(202);
      expect(await res.json()).toMatchObject({ duplicate: true, workflowId: first.json.workflowId });
    } finally {
      await restarted.close();
    }
  });

  it('switches a source off and on at runtime through the admin API', async () => {
    const auth = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    expect(
      (
        await fetch(`${h.baseUrl}/admin/sources`, {
          headers: { authorization: 'Bearer wrong-token-wrong-token-123' },
        })
      ).status,
    ).toBe(401);
    const off = await fetch(`${h.baseUrl}/admin/sources/${SWITCHABLE_NAME}`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ enabled: false, by: 'test' }),
    });
    expect(off.status).toBe(200);
    try {
      const refused = await postSwitchable({ account: 'x_1' });
      expect(refused.status).toBe(403);
      expect(refused.json.type).toBe('urn:secret-kill-switch:problem:source-disabled');
      const list = (await (await fetch(`${h.baseUrl}/admin/sources`, { headers: auth })).json()) as {
        sources: unknown[];
      };
      expect(list.sources).toContainEqual(
        expect.objectContaining({
          name: SWITCHABLE_NAME,
          configured: true,
          enabled: false,
          changedBy: 'test',
        }),
      );
      const bad = await fetch(`${h.baseUrl}/admin/sources/${SWITCHABLE_NAME}`, {
        method: 'PUT',
        headers: auth,
        body: JSON.stringify({ enabled: 'no' }),
      });
      expect(bad.status).toBe(422);
    } finally {
      await fetch(`${h.baseUrl}/admin/sources/${SWITCHABLE_NAME}`, {
        method: 'PUT',
        headers: auth,
        body: JSON.stringify({ enabled: true }),
      });
    }
    const back = await postSwitchable({ account: `orphan_${rand()}` });
    expect(back.status).toBe(202);
  });

  it('rate-limits a source per its config', async () => {
    const limited = await startHarness({
      worker: false,
      config: { sources: { generic: { rateLimit: { perMinute: 3 } } } },
    });
    try {
      const statuses = [];
      for (let i = 0; i < 5; i++)
        statuses.push(
          (
            await limited.post({
              credentialType: 'postgres_password',
              credentialRef: { role: `r_${rand()}` },
            })
          ).status,
        );
      expect(statuses.slice(0, 3)).toEqual([202, 202, 202]);
      expect(statuses.slice(3)).toEqual([429, 429]);
    } finally {
      await limited.close();
    }
  });

  it('sends security headers', async () => {
    const res = await fetch(`${h.baseUrl}/healthz`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(res.headers.get('strict-transport-security')).toBe('max-age=31536000; includeSubDomains');
  });
});

/**
 * Outbound events end to end: a signed detection reaches the real ingress, the real worker contains
 * (or escalates) on the real Temporal server, the run's events are queued in PostgreSQL and each
 * subscription's delivery run POSTs them to a receiver on loopback that verifies both signatures
 * (X-Webhook-Signature and Standard Webhooks). A failing destination is retried with backoff and
 * loses nothing, a refusing one is not retried, a dead one trips its circuit breaker, and none of it
 * delays containment. Subscriptions here only match this file's own owning system, so the other
 * test files sharing the database never queue events for them.
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';

const SYSTEM = 'outbound-db';
const VIEWER = `viewer-token-${randomBytes(16).toString('hex')}`;
const ADMIN = `admin-token-${randomBytes(16).toString('hex')}`;

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A webhook receiver: records every request; `script` answers the next requests (then 200). */
async function startReceiver() {
  const received: Received[] = [];
  const script: Array<{ status?: number; headers?: Record<string, string>; hang?: boolean }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      const next = script.shift();
      if (next?.hang) return; // never answers: the sender's timeout must end the attempt
      res.writeHead(next?.status ?? 200, next?.headers ?? {}).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return {
    url,
    received,
    script,
    events: () => received.map((r) => JSON.parse(r.body) as Record<string, any>),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>;

let h: Harness;
const receivers: Receiver[] = [];
const subscriptionIds: string[] = [];
const planted: string[] = [];
const workflowIds: string[] = [];

beforeAll(async () => {
  h = await startHarness({
    // The receivers listen on loopback, which deliveries refuse unless the allow-list names it.
    env: { OUTBOUND_ALLOW_HOSTS: '127.0.0.1', API_TOKENS: `viewer:${VIEWER},admin:${ADMIN}` },
    config: {
      systems: [
        {
          name: SYSTEM,
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['obx_*'],
          hosts: ['127.0.0.1', 'db.internal'],
        },
      ],
    },
  });
});
afterAll(async () => {
  if (subscriptionIds.length)
    await h?.db.query('DELETE FROM killswitch_subscriptions WHERE id = ANY($1)', [subscriptionIds]);
  await Promise.all(receivers.map((r) => r.close()));
  await h?.close();
});

async function subscribe(
  url: string,
  o: {
    secret?: string;
    eventTypes?: string[];
    retryCount?: number;
    timeoutMs?: number;
    failureThreshold?: number;
  } = {},
): Promise<string> {
  const id = `sub_${rand()}`;
  await h.db.query(
    `INSERT INTO killswitch_subscriptions (id, name, format, url, secret_sealed, event_types, filters, retry_count, timeout_ms, failure_threshold)
     VALUES ($1, $2, 'json', $3, $4, $5, $6::jsonb, $7, $8, $9)`,
    [
      id,
      `test-${id.toLowerCase().replace(/_/g, '-')}`,
      url,
      o.secret ? h.keys.encrypt(o.secret, `subscription:${id}`) : null,
      o.eventTypes ?? ['*'],
      JSON.stringify({ owningSystems: [SYSTEM] }),
      o.retryCount ?? 3,
      o.timeoutMs ?? 5000,
      o.failureThreshold ?? 10,
    ],
  );
  subscriptionIds.push(id);
  return id;
}

async function leak(
  opts: { superuser?: boolean } = {},
): Promise<{ workflowId: string; runId: string; result: KillSwitchResult }> {
  const { role, password } = await h.owned.createRole({ prefix: 'obx', ...opts });
  planted.push(password);
  const res = await h.post({
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
    severity: 'high',
  });
  expect(res.status).toBe(202);
  workflowIds.push(res.json.workflowId);
  return {
    workflowId: res.json.workflowId,
    runId: res.json.runId,
    result: await h.client.workflow.getHandle(res.json.workflowId).result(),
  };
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  ms = 60_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const deliveries = async (subscriptionId: string) =>
  (
    await h.db.query<{
      event_type: string;
      attempt: number;
      status_code: number | null;
      success: boolean;
      error: string | null;
    }>(
      'SELECT event_type, attempt, status_code, success, error FROM killswitch_event_deliveries WHERE subscription_id = $1 ORDER BY id',
      [subscriptionId],
    )
  ).rows;

describe('outbound events', () => {
  it("delivers a contained run's story to a signed json webhook, verifiable with either signature, without any secret", async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    const secret = `whsec-test-${randomBytes(12).toString('hex')}`;
    await subscribe(receiver.url, { secret });

    const { workflowId, runId, result } = await leak();
    expect(result.outcome).toBe('contained');

    const want = [
      'detection.received',
      'run.started',
      'credential.revoked',
      'sessions.expired',
      'credential.verified_dead',
      'run.contained',
    ];
    await until('every event of the run', () =>
      want.every((t) => receiver.events().some((e) => e.type === t && e.run?.workflowId === workflowId)),
    );
    const mine = receiver.received.filter((r) => JSON.parse(r.body).run?.workflowId === workflowId);
    for (const r of mine) {
      const event = JSON.parse(r.body);
      // X-Webhook-Signature: HMAC-SHA256 of the raw body.
      expect(r.headers['x-webhook-signature']).toBe(
        `sha256=${createHmac('sha256', secret).update(r.body).digest('hex')}`,
      );
      // Standard Webhooks: the reference library verifies id, timestamp and signature.
      expect(
        new Webhook(Buffer.from(secret), { format: 'raw' }).verify(
          r.body,
          r.headers as Record<string, string>,
        ),
      ).toEqual(event);
      expect(r.headers['webhook-id']).toBe(event.id);
      expect(r.headers['content-type']).toBe('application/json');
      expect(event).toMatchObject({
        version: 1,
        source: 'secret-kill-switch',
        run: { workflowId, runId },
      });
      expect(event.data.owner).toMatchObject({ system: SYSTEM, kind: 'postgres' });
    }
    // Each event once (ids unique), in the order the run lived it.
    const types = mine.map((r) => JSON.parse(r.body).type);
    expect(new Set(mine.map((r) => JSON.parse(r.body).id)).size).toBe(mine.length);
    expect(types.indexOf('run.contained')).toBe(types.length - 1);
    const contained = receiver
      .events()
      .find((e) => e.type === 'run.contained' && e.run.workflowId === workflowId)!;
    expect(contained.data).toMatchObject({ outcome: 'contained', credential: { type: 'postgres_password' } });
    expect(contained.data.credential.fingerprint).toMatch(/^hmac-sha256:/);

    expectNowhere(
      await secretPlaces(h, [workflowId], {
        'outbound bodies': receiver.received.map((r) => r.body).join('\n'),
        'outbound headers': JSON.stringify(receiver.received.map((r) => r.headers)),
      }),
      planted,
    );
  });

  it('retries a failing destination with backoff (honouring Retry-After) and loses nothing; a 4xx refusal is not retried', async () => {
    const flaky = await startReceiver();
    const refusing = await startReceiver();
    receivers.push(flaky, refusing);
    flaky.script.push({ status: 503 }, { status: 500 }, { status: 429, headers: { 'retry-after': '1' } });
    for (let i = 0; i < 20; i++) refusing.script.push({ status: 400 });
    const flakyId = await subscribe(flaky.url, { eventTypes: ['run.*'] });
    const refusingId = await subscribe(refusing.url, { eventTypes: ['run.contained'] });

    const { result } = await leak();
    expect(result.outcome).toBe('contained');

    await until('the flaky destination got both run events', async () => {
      const ok = (await deliveries(flakyId)).filter((d) => d.success).map((d) => d.event_type);
      return (ok.includes('run.contained') && ok.includes('run.started')) || undefined;
    });
    const attempts = await deliveries(flakyId);
    expect(attempts.map((a) => a.status_code)).toEqual(expect.arrayContaining([503, 500, 429, 200]));
    expect(
      attempts
        .filter((a) => a.success)
        .map((a) => a.event_type)
        .sort(),
    ).toEqual(['run.contained', 'run.started']);
    // The same event each time (one id), and the retries waited: 0 s, then 2 s, then Retry-After/5 s.
    const gaps = flaky.received.slice(1).map((r, i) => r.at - flaky.received[i]!.at);
    expect(gaps.some((g) => g >= 1_500)).toBe(true);

    await until(
      'the refusal was recorded',
      async () => (await deliveries(refusingId)).length > 0 || undefined,
    );
    await new Promise((r) => setTimeout(r, 3_000));
    const refused = await deliveries(refusingId);
    expect(refused).toEqual([
      expect.objectContaining({ event_type: 'run.contained', attempt: 1, status_code: 400, success: false }),
    ]);
    const row = await h.db.query<{ state: string }>(
      'SELECT state FROM killswitch_event_queue WHERE subscription_id = $1',
      [refusingId],
    );
    expect(row.rows.map((r) => r.state)).toEqual(['rejected']);
  });

  it('a dead destination trips the subscription off (admin audit, Slack, PagerDuty) and never slows containment', async () => {
    const dead = await startReceiver();
    receivers.push(dead);
    for (let i = 0; i < 50; i++) dead.script.push({ hang: true });
    const id = await subscribe(dead.url, { timeoutMs: 1000, failureThreshold: 2, retryCount: 1 });

    const t0 = Date.now();
    const { result } = await leak();
    expect(result.outcome).toBe('contained');
    // Containment did not wait on the hanging destination (each attempt hangs for its 1 s timeout).
    expect(Date.now() - t0).toBeLessThan(15_000);

    await until(
      'the circuit breaker',
      async () =>
        (
          await h.db.query<{ is_active: boolean; disabled_reason: string | null }>(
            'SELECT is_active, disabled_reason FROM killswitch_subscriptions WHERE id = $1',
            [id],
          )
        ).rows[0]?.is_active === false || undefined,
      90_000,
    );
    const audit = await h.db.query<{ action: string; actor: string; after: any }>(
      'SELECT action, actor, after FROM killswitch_admin_audit WHERE target = $1',
      [`subscription:${id}`],
    );
    expect(audit.rows).toEqual([
      expect.objectContaining({ action: 'subscription.disable', actor: 'circuit-breaker' }),
    ]);
    expect(audit.rows[0]!.after.reason).toMatch(/2 consecutive failed deliveries/);
    await until(
      'the Slack notice',
      () =>
        h.slack
          .messageRequests()
          .some((m) => m.text.includes('was switched off after 2 consecutive failed deliveries')) ||
        undefined,
    );
    expect(h.pagerduty.events().some((e) => e.dedup_key === `killswitch-subscription-${id}`)).toBe(true);
    // Nothing is lost: the undelivered events stay queued for when the subscription is re-enabled.
    const pending = await h.db.query<{ n: string }>(
      "SELECT count(*) AS n FROM killswitch_event_queue WHERE subscription_id = $1 AND state = 'pending'",
      [id],
    );
    expect(Number(pending.rows[0]!.n)).toBeGreaterThan(0);
  });

  it('an admin creates a subscription over the API, sends it a test event through the worker, and reads its delivery history', async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    const secret = `test-secret-${randomBytes(8).toString('hex')}`;
    const api = (method: string, p: string, token: string, body?: unknown) =>
      fetch(`${h.baseUrl}${p}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    const created = await api('POST', '/admin/subscriptions', ADMIN, {
      name: `e2e-${rand().toLowerCase()}`,
      format: 'json',
      url: receiver.url,
      secret,
      eventTypes: ['run.*'],
      filters: { owningSystems: [SYSTEM] },
    });
    expect(created.status).toBe(201);
    const sub = (await created.json()) as { id: string; hasSecret: boolean };
    subscriptionIds.push(sub.id);
    expect(sub.hasSecret).toBe(true);
    expect(JSON.stringify(sub)).not.toContain(secret);

    const tested = await api('POST', `/admin/subscriptions/${sub.id}/test`, ADMIN);
    expect(tested.status).toBe(200);
    const answer = (await tested.json()) as { delivered: boolean; statusCode: number; eventId: string };
    expect(answer).toMatchObject({ delivered: true, statusCode: 200 });
    const got = receiver.received.find((r) => JSON.parse(r.body).id === answer.eventId)!;
    expect(JSON.parse(got.body)).toMatchObject({
      type: 'delivery.test',
      data: { subscription: { id: sub.id } },
    });
    expect(got.headers['x-webhook-signature']).toBe(
      `sha256=${createHmac('sha256', secret).update(got.body).digest('hex')}`,
    );

    const history = await api('GET', `/api/subscriptions/${sub.id}/deliveries`, VIEWER);
    expect(history.status).toBe(200);
    const h1 = (await history.json()) as { deliveries: Array<Record<string, unknown>> };
    expect(h1.deliveries).toEqual([
      expect.objectContaining({
        eventId: answer.eventId,
        eventType: 'delivery.test',
        attempt: 1,
        statusCode: 200,
        success: true,
      }),
    ]);
    // A viewer may read but not change subscriptions.
    expect((await api('DELETE', `/admin/subscriptions/${sub.id}`, VIEWER)).status).toBe(403);
  });

  it('a subscription whose secret cannot be unsealed (a changed server key) never holds a run back: its deliveries fail and are counted', async () => {
    const receiver = await startReceiver();
    receivers.push(receiver);
    const id = await subscribe(receiver.url, { failureThreshold: 1000 });
    await h.db.query('UPDATE killswitch_subscriptions SET secret_sealed = $2 WHERE id = $1', [
      id,
      randomBytes(64),
    ]);

    const { workflowId, result } = await leak();
    expect(result.outcome).toBe('contained');
    expect(result.audit).not.toHaveProperty('error');
    const audit = await h.db.query('SELECT outcome FROM killswitch_audit WHERE workflow_id = $1', [
      workflowId,
    ]);
    expect(audit.rows).toEqual([{ outcome: 'contained' }]);
    await until('a failed attempt', async () => (await deliveries(id)).length > 0 || undefined);
    const [first] = await deliveries(id);
    expect(first).toMatchObject({ success: false, status_code: null });
    expect(first!.error).toMatch(/cannot be unsealed/);
    expect(receiver.received).toEqual([]);
  });
});

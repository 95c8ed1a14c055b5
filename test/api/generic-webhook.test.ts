/**
 * The ingress's refusals: every bad input gets its own 4xx in RFC 9457 problem+json and starts no
 * workflow; an unreachable Temporal gets 503 with Retry-After and leaves nothing behind.
 */
import { randomBytes } from 'node:crypto';
import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../tools/temporal-dev';
import { newWebhookSecret } from '../../lib/keys';
import { killSwitchWorkflowId } from '../../contracts/run';
import { capturedLogs, rand, signedHeaders, startHarness, type Harness } from '../helpers/harness';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ worker: false });
});
afterAll(async () => {
  await h?.close();
});

function detection() {
  const secret = `pw-${randomBytes(12).toString('hex')}`;
  const body = { credentialType: 'postgres_password', secret, credentialRef: { role: `app_${rand()}` } };
  return {
    body,
    secret,
    workflowId: () => killSwitchWorkflowId('postgres_password', h.keys.fingerprint(secret)),
  };
}

async function expectNoWorkflow(workflowId: string) {
  await expect(h.client.workflow.getHandle(workflowId).describe()).rejects.toBeInstanceOf(
    WorkflowNotFoundError,
  );
}

function expectProblem(res: { status: number; headers: Headers; json: any }, status: number, slug: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.json).toMatchObject({ status, type: `urn:secret-kill-switch:problem:${slug}` });
  expect(typeof res.json.title).toBe('string');
  expect(typeof res.json.detail).toBe('string');
  expect(JSON.stringify(res.json)).not.toMatch(/\bat .*\.ts:\d+/); // no stack traces
}

describe('POST /webhooks/generic refuses bad input', () => {
  it('rejects a signature made with an unknown secret (401)', async () => {
    const d = detection();
    const res = await h.post(d.body, { secret: newWebhookSecret() });
    expectProblem(res, 401, 'invalid-signature');
    await expectNoWorkflow(d.workflowId());
  });

  it('rejects a tampered body (401)', async () => {
    const d = detection();
    const raw = JSON.stringify(d.body);
    const headers = signedHeaders(h.webhookSecret, raw);
    const tampered = JSON.stringify({ ...d.body, credentialRef: { role: 'app_someone_else' } });
    const res = await fetch(`${h.baseUrl}/webhooks/generic`, { method: 'POST', headers, body: tampered });
    expect(res.status).toBe(401);
    await expectNoWorkflow(d.workflowId());
  });

  it('rejects missing signature headers (401)', async () => {
    const d = detection();
    const res = await h.post(d.body, { signature: null });
    expectProblem(res, 401, 'missing-signature');
    expect(res.json.detail).toContain('webhook-signature');
    await expectNoWorkflow(d.workflowId());
  });

  it('rejects a stale timestamp, outside the 5-minute tolerance (401)', async () => {
    const d = detection();
    const res = await h.post(d.body, { timestamp: new Date(Date.now() - 6 * 60_000) });
    expectProblem(res, 401, 'stale-timestamp');
    const future = await h.post(d.body, { timestamp: new Date(Date.now() + 6 * 60_000) });
    expectProblem(future, 401, 'stale-timestamp');
    await expectNoWorkflow(d.workflowId());
  });

  it('rejects malformed JSON even when correctly signed (400), without echoing the body', async () => {
    const res = await h.post('{"credentialType": "postgres_password", ', {});
    expectProblem(res, 400, 'malformed-json');
    // V8 quotes the text around a parse error; a secret there must not reach the answer or the logs.
    const secret = `unquoted-secret-${rand()}`;
    const logsBefore = capturedLogs.length;
    const leaky = await h.post(`{"credentialType": "postgres_password", "secret": ${secret}}`);
    expectProblem(leaky, 400, 'malformed-json');
    expect(JSON.stringify(leaky.json)).not.toContain('unquoted-secret');
    expect(capturedLogs.slice(logsBefore).join('')).toContain('malformed-json');
    expect(capturedLogs.slice(logsBefore).join('')).not.toContain('unquoted-secret');
  });

  it('names the field of a schema error (422)', async () => {
    const d = detection();
    const bad = await h.post({ ...d.body, credentialType: 'floppy_disk' });
    expectProblem(bad, 422, 'invalid-detection');
    expect(bad.json.errors.map((e: { field: string }) => e.field)).toEqual(['credentialType']);
    expect(bad.json.detail).toMatch(/^credentialType: /);

    const commit = await h.post({ ...d.body, location: { commit: 'not-a-sha' } });
    expectProblem(commit, 422, 'invalid-detection');
    expect(commit.json.errors[0].field).toBe('location.commit');

    const neither = await h.post({ credentialType: 'postgres_password' });
    expectProblem(neither, 422, 'invalid-detection');
    expect(neither.json.errors[0].field).toBe('credentialRef');

    const unknown = await h.post({ ...d.body, pasword: 'typo' });
    expectProblem(unknown, 422, 'invalid-detection');
    // An unknown key is named by its position, never echoed: a sender may paste a secret there.
    expect(unknown.json.errors).toEqual([{ field: '<key#4>', message: 'unknown field' }]);
    expect(JSON.stringify(unknown.json)).not.toContain('pasword');

    const noPassword = await h.post({
      credentialType: 'postgres_password',
      secret: 'postgres://app@db.internal/app',
    });
    expectProblem(noPassword, 422, 'invalid-detection');
    expect(noPassword.json.errors[0].field).toBe('secret');
    await expectNoWorkflow(d.workflowId());
  });

  it('rejects a body over the 1 MiB limit (413)', async () => {
    const d = detection();
    const big = JSON.stringify({ ...d.body, location: { file: 'x'.repeat(1024 * 1024) } });
    const res = await h.post(big);
    expectProblem(res, 413, 'body-too-large');
    await expectNoWorkflow(d.workflowId());
  });

  it('rejects a non-JSON content type (415)', async () => {
    const d = detection();
    const res = await h.post(d.body, { contentType: 'text/plain' });
    expectProblem(res, 415, 'unsupported-media-type');
    const form = await h.post(d.body, { contentType: 'application/x-www-form-urlencoded' });
    expectProblem(form, 415, 'unsupported-media-type');
    await expectNoWorkflow(d.workflowId());
  });

  it('answers unknown routes with a problem (404) and echoes request ids', async () => {
    const res = await fetch(`${h.baseUrl}/webhooks/nope`, {
      method: 'POST',
      headers: { 'x-request-id': 'req-123' },
    });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-request-id')).toBe('req-123');
    expect(await res.json()).toMatchObject({ instance: 'urn:request:req-123' });
  });
});

describe('POST /webhooks/generic accepts', () => {
  it('a detection signed with either active secret (secret rotation), and the same detection maps to one run', async () => {
    const d = detection();
    const first = await h.post(d.body);
    expect(first.status).toBe(202);
    expect(first.json.workflowId).toBe(d.workflowId());
    const retired = h.config.webhook.genericSecrets![0]!;
    expect(retired).not.toBe(h.webhookSecret);
    const again = await h.post(d.body, { secret: retired });
    expect(again.status).toBe(202);
    expect(again.json).toMatchObject({ workflowId: first.json.workflowId, runId: first.json.runId });
    const desc = await h.client.workflow.getHandle(first.json.workflowId).describe();
    expect(desc.searchAttributes).toMatchObject({
      KillSwitchCredentialType: ['postgres_password'],
      KillSwitchSource: ['generic'],
    });
    await h.client.workflow.getHandle(first.json.workflowId).terminate('test cleanup');
  });
});

describe('Temporal unreachable', () => {
  it('answers 503 with Retry-After and leaves no sealed evidence behind', async () => {
    const closed = await freePort();
    const down = await startHarness({
      worker: false,
      temporalAddress: `127.0.0.1:${closed}`,
      deadlineMs: 1500,
    });
    try {
      const secret = `pw-${randomBytes(12).toString('hex')}`;
      const res = await down.post({
        credentialType: 'postgres_password',
        secret,
        credentialRef: { role: 'app_x' },
      });
      expectProblem(res, 503, 'temporal-unavailable');
      expect(res.headers.get('retry-after')).toBe('5');
      const wfId = killSwitchWorkflowId('postgres_password', down.keys.fingerprint(secret));
      const ev = await down.db.query('SELECT 1 FROM killswitch_evidence WHERE workflow_id = $1', [wfId]);
      expect(ev.rows).toHaveLength(0);
    } finally {
      await down.close();
    }
  });
});

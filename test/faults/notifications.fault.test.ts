/**
 * Faults 4 and 5, the people-facing services misbehave (their loopback fakes are scripted):
 * - Slack answers 429 with Retry-After, then recovers: no Slack call is made before Retry-After has
 *   passed, and the run's one message arrives once and ends up showing the outcome;
 * - PagerDuty answers 500 three times: the trigger is retried with the `escalate` profile's backoff
 *   and exactly one trigger is accepted (one incident), recorded in the audit row.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import { activityCounts, auditRows, slackMessagesOf } from './support';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const isChat = (path: string) => path.startsWith('/api/chat.');

it('Slack 429 with Retry-After, then recovery: the delay is honoured and the message arrives once', async () => {
  const RETRY_AFTER_S = 4;
  const before = h.slack.requests.length;
  h.slack.script.push({
    status: 429,
    headers: { 'retry-after': String(RETRY_AFTER_S) },
    body: { ok: false, error: 'ratelimited' },
  });

  const { role, password } = await h.owned.createRole();
  const res = await h.post({
    scanner: 'slack-429',
    findingId: `finding-${rand()}`,
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
  });
  expect(res.status).toBe(202);
  const { workflowId } = res.json as { workflowId: string };
  const result = await h.client.workflow.getHandle(workflowId).result();
  expect(result.outcome).toBe('contained');
  expect(result.slack).toMatchObject({ status: 'sent' });

  const chat = h.slack.requests.slice(before).filter((r) => isChat(r.path));
  expect(h.slack.script).toHaveLength(0);
  const limited = chat[0]!;
  expect(limited.path).toBe('/api/chat.postMessage');
  // Nothing reached Slack's chat API before Retry-After had passed.
  const next = chat.slice(1);
  expect(next.length).toBeGreaterThanOrEqual(1);
  for (const r of next) expect(r.at - limited.at).toBeGreaterThanOrEqual(RETRY_AFTER_S * 1000 - 50);

  const messages = slackMessagesOf(h, workflowId);
  expect(messages).toHaveLength(1);
  expect(messages[0]!.text).toContain('contained');
  expect(
    h.slack.messageRequests().filter((m) => m.method === 'chat.postMessage' && m.text.includes(workflowId)),
  ).toHaveLength(1);
  expect(await auditRows(h, workflowId)).toHaveLength(1);
  expectNowhere(await secretPlaces(h, [workflowId]), [password]);
});

it('PagerDuty 500 three times: the trigger is retried with backoff, one trigger accepted, one incident', async () => {
  const before = h.pagerduty.requests.length;
  for (let i = 0; i < 3; i++)
    h.pagerduty.script.push({ status: 500, body: { status: 'error', message: 'internal error' } });

  // A superuser's password: the admin may not alter it, so the run escalates.
  const { role, password } = await h.owned.createRole({ superuser: true });
  const res = await h.post({
    scanner: 'pd-500',
    findingId: `finding-${rand()}`,
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
  });
  expect(res.status).toBe(202);
  const { workflowId } = res.json as { workflowId: string };
  const result = await h.client.workflow.getHandle(workflowId).result();
  expect(result.outcome).toBe('escalated');
  expect(result.pagerduty).toEqual({ status: 'sent', dedupKey: workflowId });

  const sent = h.pagerduty.requests.slice(before);
  const triggers = sent.filter(
    (r) => (JSON.parse(r.body) as { event_action?: string }).event_action === 'trigger',
  );
  expect(sent).toHaveLength(4);
  expect(triggers).toHaveLength(4);
  for (const t of triggers) expect(JSON.parse(t.body)).toMatchObject({ dedup_key: workflowId });
  // 500, 500, 500 (scripted), then the one accepted trigger; retries spaced by the profile's 2 s × 2 backoff.
  expect(h.pagerduty.script).toHaveLength(0);
  const gaps = triggers.slice(1).map((t, i) => t.at - triggers[i]!.at);
  expect(gaps[0]).toBeGreaterThanOrEqual(1_900);
  expect(gaps[1]).toBeGreaterThanOrEqual(3_900);
  expect(gaps[2]).toBeGreaterThanOrEqual(7_900);

  const counts = await activityCounts(h, workflowId);
  expect(counts.triggerPagerDuty).toMatchObject({ scheduled: 1, maxAttempt: 4 });
  const rows = await auditRows(h, workflowId);
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({
    outcome: 'escalated',
    failure_type: 'PermissionDenied',
    pagerduty_dedup_key: workflowId,
    pagerduty_status: 'sent',
  });
  expect(slackMessagesOf(h, workflowId)).toHaveLength(1);
  expect(await h.owned.loginFails(role, password)).toBeNull();
  expectNowhere(await secretPlaces(h, [workflowId]), [password]);
});

/**
 * Fault 8, a provider that hangs: an `http` system whose admin API accepts the connection and never
 * answers. Each attempt of revokeCredential is cut by the system's own request timeout (`timeoutMs`,
 * an existing per-system setting: here 1.5 s) and retried with the real `critical` profile (8
 * attempts, 1 s × 2 backoff capped at 30 s: about 100 s in all), then the run escalates. Meanwhile
 * the worker stays healthy: a PostgreSQL leak sent while the hung run retries is contained at once.
 * (With no `timeoutMs` the same happens per the 10 s default, or the activity's 30 s start-to-close
 * timeout for a longer one; that only makes the scenario slower, so it uses the operator setting.)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import {
  activityCounts,
  auditRows,
  slackMessagesOf,
  startBlackhole,
  waitFor,
  type Blackhole,
} from './support';

const TIMEOUT_MS = 1500;
const ATTEMPTS = 8; // ActivityProfiles.critical.retry.maximumAttempts
let h: Harness;
let hung: Blackhole;

beforeAll(async () => {
  hung = await startBlackhole();
  h = await startHarness({
    config: {
      systems: [
        {
          name: 'owned-db',
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['app_*', 'dba_*'],
          hosts: ['127.0.0.1', 'db.internal'],
        },
        {
          name: 'hung-api',
          kind: 'http',
          credentialTypes: ['generic'],
          match: { keyId: 'hung_*' },
          baseUrl: hung.url,
          timeoutMs: TIMEOUT_MS,
          revoke: [{ name: 'delete', method: 'DELETE', url: '/admin/keys/{{ref.keyId}}' }],
        },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
  await hung?.close();
});

it('a hung provider: each attempt times out, retried per policy, then escalated; the worker keeps containing other leaks', async () => {
  const keyId = `hung_${rand()}`;
  const res = await h.post({
    scanner: 'hang-scanner',
    findingId: `finding-${rand()}`,
    credentialType: 'generic',
    credentialRef: { keyId },
  });
  expect(res.status).toBe(202);
  const { workflowId } = res.json as { workflowId: string };
  const handle = h.client.workflow.getHandle(workflowId);

  // While it retries, another leak (another system) goes through the same worker untouched.
  await waitFor('the second attempt at the hung API', () => hung.requests.length >= 2, 20_000);
  const { role, password } = await h.owned.createRole();
  const sentAt = Date.now();
  const other = await h.post({
    scanner: 'hang-scanner',
    findingId: `finding-${rand()}`,
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
  });
  expect(other.status).toBe(202);
  const otherResult = await h.client.workflow.getHandle(other.json.workflowId).result();
  expect(otherResult.outcome).toBe('contained');
  expect(Date.now() - sentAt).toBeLessThan(20_000);
  expect(await h.owned.loginFails(role, password)).toBe('28P01');
  expect((await handle.describe()).status.name).toBe('RUNNING');

  const result = await handle.result();
  expect(result.outcome).toBe('escalated');
  expect(result.failure).toMatchObject({ step: 'revoking' });
  expect(result.failure!.message).toContain(`no answer within ${TIMEOUT_MS} ms`);
  expect(result.pagerduty).toEqual({ status: 'sent', dedupKey: workflowId });

  // Exactly the policy's attempts, each one request the API never answered, spaced by the backoff.
  expect(hung.requests.map((r) => r.head)).toEqual(
    Array.from({ length: ATTEMPTS }, () => `DELETE /admin/keys/${keyId}`),
  );
  const gaps = hung.requests.slice(1).map((r, i) => r.at - hung.requests[i]!.at);
  const backoff = [1, 2, 4, 8, 16, 30, 30].map((s) => s * 1000 + TIMEOUT_MS);
  gaps.forEach((g, i) => expect(g).toBeGreaterThanOrEqual(backoff[i]! - 300));
  const counts = await activityCounts(h, workflowId);
  expect(counts.revokeCredential).toMatchObject({ scheduled: 1, maxAttempt: ATTEMPTS, failed: 1 });
  expect(counts.triggerPagerDuty?.scheduled).toBe(1);

  const triggers = h.pagerduty.events().filter((e) => e.dedup_key === workflowId);
  expect(triggers).toHaveLength(1);
  const rows = await auditRows(h, workflowId);
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({
    outcome: 'escalated',
    failure_step: 'revoking',
    owning_system: 'hung-api',
    pagerduty_status: 'sent',
  });
  expect(slackMessagesOf(h, workflowId)).toHaveLength(1);
  expect(h.pagerduty.events().filter((e) => e.dedup_key === other.json.workflowId)).toHaveLength(0);
  expectNowhere(await secretPlaces(h, [workflowId, other.json.workflowId]), [password]);
});

/**
 * The `jira` transport against a wire-level Jira Cloud fake (test/fakes/jira.ts) and the run's
 * PostgreSQL: one issue per run opened by its first event, a comment per later event, a transition
 * on run.contained (by transition or status name, skipped when there, a missing one rejected with
 * the choices), retries after a 503 or a lost answer that open no second issue and post no second
 * comment, the crash between creating and recording (found again by its label), auth failures not
 * retried, ADF that Jira accepts with hostile text kept as text, events without a run, the delivery
 * round through the worker's registry, and the token and a planted credential value nowhere.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createOutbound } from '../../activities/outbound';
import { outboundTransports } from '../../activities/outbound/registry';
import {
  commentBody,
  eventLabel,
  issueDescription,
  jiraSummary,
  jiraTransport,
  runLabel,
  transitionFor,
} from '../../activities/outbound/transports/jira';
import type { DeliveryResult, OutboundSubscription } from '../../activities/outbound/types';
import {
  EVENT_VERSION,
  eventEnvelopeSchema,
  type EventType,
  type KillSwitchEvent,
} from '../../contracts/events';
import { createPostgresDb, migrate, type Db } from '../../lib/db';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { jiraIssueOfRun } from '../../store/jira';
import { enqueueEvents } from '../../store/outbound';
import { freePort } from '../../tools/temporal-dev';
import { adfProblem, startJiraFake, type JiraFake } from '../fakes/jira';

const hex = (n: number) => randomBytes(n).toString('hex');
const R = hex(4);
const TOKEN = `jira-token-${hex(16)}`;
const EMAIL = 'killswitch-bot@example.org';
/** A credential value planted in an event where the contract has no field for it. */
const PLANTED = `planted-credential-${hex(12)}`;
const RUN_URL = 'https://temporal.example/namespaces/default/workflows/wf/run/history';

let db: Db;
let cloud: JiraFake; // Basic email:token, the default workflow
let dc: JiraFake; // Bearer token, a workflow with Resolve -> Resolved
const subs: string[] = [];
const results: DeliveryResult[] = [];
const transport = () => jiraTransport({ db });
const never = new AbortController().signal;

beforeAll(async () => {
  db = createPostgresDb(inject('auditDatabaseUrl'));
  await migrate(db);
  [cloud, dc] = await Promise.all([
    startJiraFake({ email: EMAIL, token: TOKEN }),
    startJiraFake({
      token: TOKEN,
      bearer: true,
      projects: { OPS: ['Incident'] },
      workflow: {
        initial: 'Open',
        transitions: [
          { id: '5', name: 'Resolve', from: ['Open'], to: 'Resolved' },
          { id: '6', name: 'Reopen', from: ['Resolved'], to: 'Open' },
        ],
      },
    }),
  ]);
});
afterAll(async () => {
  if (subs.length) await db?.query('DELETE FROM killswitch_subscriptions WHERE id = ANY($1::text[])', [subs]);
  await Promise.all([cloud?.close(), dc?.close()]);
  await db?.close();
});

function sample(type: EventType, workflowId: string | undefined, summary?: string): KillSwitchEvent {
  return eventEnvelopeSchema.parse({
    id: `evt_${hex(16)}`,
    type,
    version: EVENT_VERSION,
    occurredAt: '2025-12-02T18:26:40.123Z',
    source: 'secret-kill-switch',
    ...(workflowId ? { run: { workflowId, runId: 'run-1', url: RUN_URL } } : {}),
    summary: summary ?? `${type}: postgres_password (role=app_user) in payments-db`,
    data: workflowId
      ? {
          credential: {
            type: 'postgres_password',
            fingerprint: `hmac-sha256:${'ab'.repeat(32)}`,
            ref: { role: 'app_user', host: 'db.internal' },
          },
          detection: {
            id: 'det-1',
            source: 'generic',
            scanner: 'gitleaks',
            severity: 'high',
            location: { repository: 'acme/payments', file: 'config/db.yml', line: 12 },
          },
          owner: { system: 'payments-db', kind: 'postgres' },
          step: 'verify',
          ...(type === 'run.contained' ? { outcome: 'contained' } : {}),
          ...(type === 'run.escalated'
            ? { outcome: 'escalated', failure: { step: 'revoke', type: 'ProviderDown', message: 'timeout' } }
            : {}),
        }
      : {
          by: 'alice@example.com',
          subscription: { id: 'sub-1', name: 'jira-secops' },
          message: 'A test of this subscription: no run is involved.',
        },
  });
}

/** A subscription row (switched off: no other file's runs queue events for it) and its worker view. */
async function newSub(
  fake: JiraFake,
  options: Record<string, unknown>,
  over: Partial<OutboundSubscription> = {},
): Promise<OutboundSubscription> {
  const id = `jira-${R}-${hex(4)}`;
  await db.query(
    `INSERT INTO killswitch_subscriptions (id, name, format, url, event_types, is_active)
     VALUES ($1, $1, 'jira', $2, '{*}', false)`,
    [id, fake.url],
  );
  subs.push(id);
  return {
    id,
    name: id,
    format: 'jira',
    url: fake.url,
    secret: TOKEN,
    eventTypes: ['*'],
    filters: {},
    options:
      fake === dc
        ? { project: 'OPS', issueType: 'Incident', ...options }
        : { project: 'SEC', email: EMAIL, ...options },
    retryCount: 3,
    timeoutMs: 3_000,
    failureThreshold: 10,
    isActive: true,
    ...over,
  };
}

async function deliver(event: KillSwitchEvent, sub: OutboundSubscription): Promise<DeliveryResult> {
  const r = await transport().deliver(event, sub, never);
  results.push(r);
  return r;
}

const issuesOfRun = (fake: JiraFake, workflowId: string) =>
  fake.issues.filter((i) => i.labels.includes(runLabel(workflowId)));
const commentEventIds = (fake: JiraFake, key: string) =>
  fake
    .issue(key)!
    .comments.map((c) => (c.properties.find((p) => p.key === 'killswitch')?.value as any)?.eventId);

describe('ADF and summary (pure)', () => {
  it('builds a description and comments Jira accepts, with every value as plain text', () => {
    const hostile =
      `Leak *bold* [click|https://evil.example] {code}<b>x</b>\n\r\u2028second line ${'x'.repeat(1100)}`.slice(
        0,
        1024,
      );
    const e = sample('run.started', `wf-${hex(4)}`, hostile);
    expect(adfProblem(issueDescription(e))).toBeUndefined();
    expect(adfProblem(commentBody(e))).toBeUndefined();
    const summary = jiraSummary(e);
    expect(summary.length).toBeLessThanOrEqual(255);
    expect(summary).not.toMatch(/[\r\n\u2028]/);
    expect(summary.startsWith('[Kill switch] Leak *bold* [click|https://evil.example]')).toBe(true);
    expect(summary.endsWith('…')).toBe(true);
    const d = issueDescription(e);
    expect(d.content.map((b) => b.type)).toEqual(['paragraph', 'bulletList', 'paragraph', 'paragraph']);
    // The hostile summary is one text node without marks: Jira shows it as typed.
    const first = d.content[0]!.content[0] as { text: string; marks?: unknown };
    expect(first.marks).toBeUndefined();
    expect(first.text).toContain('[click|https://evil.example] {code}<b>x</b>');
    // The only link is the run's.
    const links = JSON.stringify(d).match(/"href":"[^"]*"/g);
    expect(links).toEqual([`"href":"${RUN_URL}"`]);
    // Each fact reads "Label: value", the label in bold.
    const items = (d.content[1]!.content as any[]).map((li) => li.content[0].content as any[]);
    expect(items[0]).toEqual([
      { type: 'text', text: 'Credential type: ', marks: [{ type: 'strong' }] },
      { type: 'text', text: 'postgres_password' },
    ]);
    expect(items.map((x) => x.map((t: { text: string }) => t.text).join(''))).toContain(
      `Fingerprint: hmac-sha256:${'ab'.repeat(32)}`,
    );
    const facts = JSON.stringify(d.content[1]);
    for (const v of [
      'postgres_password',
      `hmac-sha256:${'ab'.repeat(32)}`,
      'role=app_user',
      'payments-db',
      'generic (gitleaks)',
      'high',
      'acme/payments config/db.yml:12',
    ])
      expect(facts).toContain(v);
    // A surrogate pair at the cut is not split.
    const emoji = sample('run.started', 'wf', `${'y'.repeat(240)}${'🔑'.repeat(20)}`);
    expect(jiraSummary(emoji).length).toBeLessThanOrEqual(255);
    expect(jiraSummary(emoji)).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/);
  });

  it('picks the transition of the most specific pattern', () => {
    const t = { '*': 'In Progress', 'run.*': 'Triage', 'run.contained': 'Done' };
    expect(transitionFor(t, 'run.contained')).toBe('Done');
    expect(transitionFor(t, 'run.escalated')).toBe('Triage');
    expect(transitionFor(t, 'credential.revoked')).toBe('In Progress');
    expect(transitionFor({ 'run.contained': 'Done' }, 'run.started')).toBeUndefined();
  });
});

describe('jira transport against the Jira fake', () => {
  it('opens one issue per run on its first event and comments every later one on it', async () => {
    const sub = await newSub(cloud, {});
    const [a, b] = [`wf-a-${hex(4)}`, `wf-b-${hex(4)}`];
    const first = sample('run.started', a);
    expect(await deliver(first, sub)).toEqual({ ok: true, retryable: false, statusCode: 201 });
    const [issue] = issuesOfRun(cloud, a);
    expect(issuesOfRun(cloud, a)).toHaveLength(1);
    expect(issue).toMatchObject({
      project: 'SEC',
      issueType: 'Task',
      summary: `[Kill switch] ${first.summary}`,
      labels: ['secret-kill-switch', runLabel(a)],
      status: 'To Do',
      properties: { killswitch: { eventId: first.id, workflowId: a } },
      comments: [],
    });
    expect(adfProblem(issue!.description)).toBeUndefined();
    expect(issue!.description).toEqual(issueDescription(first));
    expect(await jiraIssueOfRun(db, sub.id, a)).toEqual({
      issueKey: issue!.key,
      issueId: issue!.id,
      eventId: first.id,
    });

    const later = [sample('approval.requested', a), sample('credential.revoked', a)];
    for (const e of later) expect((await deliver(e, sub)).ok).toBe(true);
    expect(issuesOfRun(cloud, a)).toHaveLength(1);
    expect(commentEventIds(cloud, issue!.key)).toEqual(later.map((e) => e.id));
    expect(issue!.comments[0]!.body).toEqual(commentBody(later[0]!));

    // Another run: another issue.
    expect((await deliver(sample('run.started', b), sub)).ok).toBe(true);
    expect(issuesOfRun(cloud, b)).toHaveLength(1);
    expect(issuesOfRun(cloud, b)[0]!.key).not.toBe(issue!.key);
    // Jira Cloud auth: Basic email:token on every request.
    const basic = `Basic ${Buffer.from(`${EMAIL}:${TOKEN}`).toString('base64')}`;
    expect(cloud.requests.every((r) => r.headers.authorization === basic)).toBe(true);
  });

  it('transitions on run.contained (Done), skips it when the issue is there, rejects a missing transition naming the choices', async () => {
    const sub = await newSub(cloud, {});
    const wf = `wf-t-${hex(4)}`;
    expect((await deliver(sample('run.started', wf), sub)).ok).toBe(true);
    const contained = sample('run.contained', wf);
    expect(await deliver(contained, sub)).toEqual({ ok: true, retryable: false, statusCode: 204 });
    const [issue] = issuesOfRun(cloud, wf);
    expect(issue!.status).toBe('Done');
    expect(issue!.transitioned).toEqual(['31']);
    expect(commentEventIds(cloud, issue!.key)).toEqual([contained.id]);
    // Delivered again (a retry): no second comment, no second transition.
    expect((await deliver(contained, sub)).ok).toBe(true);
    expect(issue!.transitioned).toEqual(['31']);
    expect(issue!.comments).toHaveLength(1);

    // The first event of a run may be the contained one: it opens the issue, then closes it.
    const first = sample('run.contained', `wf-t1-${hex(4)}`);
    expect((await deliver(first, sub)).ok).toBe(true);
    expect(issuesOfRun(cloud, first.run!.workflowId)[0]).toMatchObject({ status: 'Done', comments: [] });

    const closing = await newSub(cloud, { transitions: { 'run.contained': 'Closed' } });
    const wf2 = `wf-t2-${hex(4)}`;
    const r = await deliver(sample('run.contained', wf2), closing);
    expect(r.ok).toBe(false);
    expect(r.retryable).toBe(false);
    expect(r.error).toContain('"Closed"');
    expect(r.error).toContain('Start progress -> In Progress');
    expect(r.error).toContain('Done -> Done');
    expect(issuesOfRun(cloud, wf2)[0]!.status).toBe('To Do');
  });

  it('transition names are configurable: by the status they lead to, case-insensitive; Bearer auth without an email', async () => {
    const sub = await newSub(dc, { transitions: { 'run.*': 'resolved' } });
    const wf = `wf-dc-${hex(4)}`;
    expect((await deliver(sample('run.escalated', wf), sub)).ok).toBe(true);
    const [issue] = issuesOfRun(dc, wf);
    expect(issue).toMatchObject({
      project: 'OPS',
      issueType: 'Incident',
      status: 'Resolved',
      transitioned: ['5'],
    });
    expect(dc.requests.every((x) => x.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
    // Not a run.* event: no transition asked.
    expect((await deliver(sample('credential.revoked', wf), sub)).ok).toBe(true);
    expect(issue!.transitioned).toEqual(['5']);
  });

  it('a 503 or 429 is retried with its Retry-After; a retry after a lost answer opens no second issue and posts no second comment', async () => {
    const sub = await newSub(cloud, {});
    const wf = `wf-r-${hex(4)}`;
    const first = sample('run.started', wf);
    cloud.failNext({ method: 'POST', path: /\/rest\/api\/3\/issue$/, status: 503, retryAfter: '7' });
    expect(await deliver(first, sub)).toMatchObject({
      ok: false,
      retryable: true,
      statusCode: 503,
      retryAfterMs: 7000,
    });
    expect(issuesOfRun(cloud, wf)).toHaveLength(0);
    expect((await deliver(first, sub)).ok).toBe(true);
    expect(issuesOfRun(cloud, wf)).toHaveLength(1);

    // Jira created the issue but the answer was lost: the retry finds it by its label.
    const wf2 = `wf-r2-${hex(4)}`;
    const first2 = sample('run.started', wf2);
    cloud.failNext({ method: 'POST', path: /\/rest\/api\/3\/issue$/, status: 502, committed: true });
    expect(await deliver(first2, sub)).toMatchObject({ ok: false, retryable: true, statusCode: 502 });
    expect(issuesOfRun(cloud, wf2)).toHaveLength(1);
    expect(await jiraIssueOfRun(db, sub.id, wf2)).toBeUndefined();
    expect((await deliver(first2, sub)).ok).toBe(true);
    expect(issuesOfRun(cloud, wf2)).toHaveLength(1);
    const [issue2] = issuesOfRun(cloud, wf2);
    // Opened by this very event: not commented on too.
    expect(issue2!.comments).toHaveLength(0);
    expect((await jiraIssueOfRun(db, sub.id, wf2))?.eventId).toBe(first2.id);

    // A comment Jira stored whose answer was lost: the retry sees its property and posts none.
    const later = sample('credential.revoked', wf2);
    cloud.failNext({ method: 'POST', path: /\/comment$/, status: 503, committed: true });
    expect(await deliver(later, sub)).toMatchObject({ ok: false, retryable: true, statusCode: 503 });
    expect(commentEventIds(cloud, issue2!.key)).toEqual([later.id]);
    expect((await deliver(later, sub)).ok).toBe(true);
    expect(commentEventIds(cloud, issue2!.key)).toEqual([later.id]);

    // A comment refused before Jira stored it: the retry posts it once.
    const third = sample('sessions.expired', wf2);
    cloud.failNext({ method: 'POST', path: /\/comment$/, status: 503 });
    expect((await deliver(third, sub)).retryable).toBe(true);
    expect((await deliver(third, sub)).ok).toBe(true);
    expect(commentEventIds(cloud, issue2!.key)).toEqual([later.id, third.id]);

    cloud.failNext({ method: 'POST', path: /\/search\/jql$/, status: 429, retryAfter: '2' });
    expect(await deliver(sample('run.started', `wf-r3-${hex(4)}`), sub)).toMatchObject({
      ok: false,
      retryable: true,
      statusCode: 429,
      retryAfterMs: 2000,
    });
  });

  it('a crash between creating the issue and recording it: the next event finds it by its label', async () => {
    const sub = await newSub(cloud, {});
    const wf = `wf-c-${hex(4)}`;
    const first = sample('run.started', wf);
    expect((await deliver(first, sub)).ok).toBe(true);
    // The record never made it.
    await db.query('DELETE FROM killswitch_jira_issues WHERE subscription_id = $1', [sub.id]);
    const later = sample('approval.requested', wf);
    expect((await deliver(later, sub)).ok).toBe(true);
    expect(issuesOfRun(cloud, wf)).toHaveLength(1);
    const [issue] = issuesOfRun(cloud, wf);
    expect(commentEventIds(cloud, issue!.key)).toEqual([later.id]);
    // Recorded again, with the event that opened it (from the issue's property).
    expect(await jiraIssueOfRun(db, sub.id, wf)).toEqual({
      issueKey: issue!.key,
      issueId: issue!.id,
      eventId: first.id,
    });
    // The first event retried after the crash does not comment on its own issue.
    await db.query('DELETE FROM killswitch_jira_issues WHERE subscription_id = $1', [sub.id]);
    expect((await deliver(first, sub)).ok).toBe(true);
    expect(commentEventIds(cloud, issue!.key)).toEqual([later.id]);
  });

  it('refusals are not retried and say what was wrong without echoing values: 401, 404, 400', async () => {
    const wrong = await newSub(cloud, {}, { secret: `wrong-${hex(8)}` });
    const r401 = await deliver(sample('run.started', `wf-x-${hex(4)}`), wrong);
    expect(r401).toMatchObject({ ok: false, retryable: false, statusCode: 401 });
    expect(r401.error).toMatch(/^jira search: HTTP 401/);

    const elsewhere = await newSub(cloud, {}, { url: `${cloud.url}/not-jira` });
    expect(await deliver(sample('run.started', `wf-x-${hex(4)}`), elsewhere)).toMatchObject({
      ok: false,
      retryable: false,
      statusCode: 404,
    });

    const badType = await newSub(cloud, { issueType: 'Epic' });
    const r400 = await deliver(sample('run.started', `wf-x-${hex(4)}`), badType);
    expect(r400).toMatchObject({ ok: false, retryable: false, statusCode: 400 });
    expect(r400.error).toBe('jira create issue: HTTP 400 (Jira: fields: issuetype)');

    // A destination that echoes the token back (as a message and as a field name) gets it redacted.
    const sub = await newSub(cloud, {});
    cloud.failNext({
      status: 400,
      body: { errorMessages: [TOKEN], errors: { [TOKEN]: TOKEN, labels: 'x' } },
    });
    const echoed = await deliver(sample('run.started', `wf-x-${hex(4)}`), sub);
    expect(echoed.retryable).toBe(false);
    expect(echoed.error).toBe('jira search: HTTP 400 (Jira: 1 error message; fields: [redacted], labels)');

    // Unreachable: retried.
    const down = await newSub(cloud, {}, { url: `http://127.0.0.1:${await freePort()}` });
    expect(await deliver(sample('run.started', `wf-x-${hex(4)}`), down)).toMatchObject({
      ok: false,
      retryable: true,
      error: 'jira search: could not connect: ECONNREFUSED',
    });
  });

  it('an event without a run (delivery.test) opens an issue of its own, once', async () => {
    const sub = await newSub(cloud, {});
    const test = sample(
      'delivery.test',
      undefined,
      'Test event for subscription jira-secops, sent by alice@example.com',
    );
    cloud.failNext({ method: 'POST', path: /\/rest\/api\/3\/issue$/, status: 503, committed: true });
    expect((await deliver(test, sub)).retryable).toBe(true);
    expect((await deliver(test, sub)).ok).toBe(true);
    const own = cloud.issues.filter((i) => i.labels.includes(eventLabel(test.id)));
    expect(own).toHaveLength(1);
    expect(own[0]).toMatchObject({
      summary: '[Kill switch] Test event for subscription jira-secops, sent by alice@example.com',
      status: 'To Do',
      comments: [],
    });
    expect(adfProblem(own[0]!.description)).toBeUndefined();
    const other = sample('delivery.test', undefined);
    expect((await deliver(other, sub)).ok).toBe(true);
    expect(cloud.issues.filter((i) => i.labels.includes(eventLabel(other.id)))).toHaveLength(1);
  });

  it('a run delivered through the delivery round with the worker registry: one issue, comments, closed', async () => {
    const env = { [`JIRA_TOKEN_${R.toUpperCase()}`]: TOKEN };
    const id = `jira-${R}-round`;
    await db.query(
      `INSERT INTO killswitch_subscriptions (id, name, format, url, secret_env, event_types, filters, options, is_active)
       VALUES ($1, $1, 'jira', $2, $3, '{*}', $4::jsonb, $5::jsonb, true)`,
      [
        id,
        cloud.url,
        `JIRA_TOKEN_${R.toUpperCase()}`,
        // Filtered to a system no run has: no other file's run queues events for it.
        JSON.stringify({ owningSystems: [`nobody-${R}`] }),
        JSON.stringify({ project: 'SEC', email: EMAIL }),
      ],
    );
    subs.push(id);
    const outbound = createOutbound({
      db,
      keys: createServerKeys(newServerKey()),
      env,
      log: { warn: () => undefined, info: () => undefined },
      transports: outboundTransports(env, db),
    });
    const wf = `wf-round-${hex(4)}`;
    const events = (['run.started', 'credential.revoked', 'run.contained'] as const).map((t) =>
      sample(t, wf),
    );
    await enqueueEvents(
      db,
      events.map((event) => ({ event, subscriptionIds: [id] })),
    );
    expect(await outbound.deliverDue(id)).toMatchObject({ active: true, delivered: 3 });
    const [issue] = issuesOfRun(cloud, wf);
    expect(issuesOfRun(cloud, wf)).toHaveLength(1);
    expect(issue!.status).toBe('Done');
    expect(commentEventIds(cloud, issue!.key)).toEqual([events[1]!.id, events[2]!.id]);
    const attempts = await db.query<{ success: boolean }>(
      'SELECT success FROM killswitch_event_deliveries WHERE subscription_id = $1',
      [id],
    );
    expect(attempts.rows.map((x) => x.success)).toEqual([true, true, true]);
    await outbound.close();
  });

  it('the token and a credential value planted in an event are in no request URL or body and no result', async () => {
    const sub = await newSub(cloud, {});
    const wf = `wf-s-${hex(4)}`;
    const plant = (e: KillSwitchEvent) =>
      ({
        ...e,
        secret: PLANTED,
        data: { ...e.data, value: PLANTED, credential: { ...e.data.credential!, value: PLANTED } },
      }) as unknown as KillSwitchEvent;
    for (const t of ['run.started', 'approval.requested', 'run.contained'] as const)
      expect((await deliver(plant(sample(t, wf)), sub)).ok).toBe(true);
    expect(issuesOfRun(cloud, wf)[0]!.comments).toHaveLength(2);
    const basic = Buffer.from(`${EMAIL}:${TOKEN}`).toString('base64');
    for (const fake of [cloud, dc])
      for (const r of fake.requests) {
        const seen = `${r.path}\n${r.body}`;
        for (const secret of [TOKEN, basic, PLANTED]) expect(seen).not.toContain(secret);
      }
    const reported = JSON.stringify(results);
    expect(results.length).toBeGreaterThan(20);
    for (const secret of [TOKEN, basic, PLANTED]) expect(reported).not.toContain(secret);
  });
});

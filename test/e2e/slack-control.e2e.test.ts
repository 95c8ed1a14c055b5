/**
 * Slack as the control surface, end to end: interaction payloads signed exactly as Slack signs
 * them (v0 HMAC-SHA256 of `v0:<ts>:<raw body>` under the app's signing secret) are posted to the
 * real ingress at /slack/events; the buttons reach the real workflow on the real Temporal server,
 * the run's ONE message is kept current with chat.update on the Slack fake, refusals come back
 * ephemerally through the response_url, and /killswitch answers from the audit table and the live
 * currentStep query.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SlackAction } from '../../contracts/slack-actions';
import type { KillSwitchResult, StepStatus } from '../../contracts/run';
import type { SlackMessageState } from '../fakes/slack';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';

const APPROVER = 'U0APPROVER1';
/** An approver the policy names by e-mail; the ingress finds it through users.info. */
const CAROL = 'U0CAROL01';
const MALLORY = 'U0MALLORY1';

let h: Harness;
const planted: string[] = [];
const workflowIds: string[] = [];

beforeAll(async () => {
  h = await startHarness({
    config: {
      policy: {
        approvers: [APPROVER, 'carol@example.com'],
        retryWindow: '2m',
        rules: [
          {
            name: 'prod',
            match: { repository: 'acme/prod-*' },
            action: 'require_approval',
            approvalTimeout: '2m',
          },
        ],
      },
    },
  });
  h.slack.users.set(CAROL, 'carol@example.com');
  h.slack.users.set(MALLORY, 'mallory@example.com');
});
afterAll(async () => {
  await h?.close();
});

async function leak(repository: string, opts: { superuser?: boolean } = {}) {
  const { role, password } = await h.owned.createRole(opts);
  planted.push(password);
  const res = await h.post({
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
    location: { repository, file: '.env' },
  });
  expect(res.status).toBe(202);
  workflowIds.push(res.json.workflowId);
  return {
    role,
    password,
    workflowId: res.json.workflowId as string,
    detectionId: res.json.detectionId as string,
    handle: h.client.workflow.getHandle(res.json.workflowId),
  };
}

async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const step = async (handle: { query: <T>(name: string) => Promise<T> }) =>
  (await handle.query<StepStatus>('currentStep')).step;
const messagesOf = (workflowId: string) => h.slack.messages().filter((m) => m.text.includes(workflowId));
const buttonsOf = (
  m: SlackMessageState,
): Array<{ action_id: string; value?: string; url?: string; text: { text: string } }> =>
  (
    m.blocks as Array<{
      type: string;
      elements?: Array<{
        type: string;
        action_id: string;
        value?: string;
        url?: string;
        text: { text: string };
      }>;
    }>
  )
    .filter((b) => b.type === 'actions')
    .flatMap((b) => b.elements ?? [])
    .filter((e) => e.type === 'button');
const labels = (m: SlackMessageState) => buttonsOf(m).map((b) => b.text.text);

/** The run's message once it shows `button`. */
const messageWith = (workflowId: string, button: string) =>
  until(`the message of ${workflowId} with ${button}`, () => {
    const m = messagesOf(workflowId);
    return m.length === 1 && labels(m[0]!).includes(button) ? m[0]! : undefined;
  });

function slackHeaders(body: string, opts: { ts?: number; secret?: string; contentType?: string } = {}) {
  const ts = opts.ts ?? Math.floor(Date.now() / 1000);
  const sig = createHmac('sha256', opts.secret ?? h.slack.signingSecret)
    .update(`v0:${ts}:${body}`)
    .digest('hex');
  return {
    'content-type': opts.contentType ?? 'application/x-www-form-urlencoded',
    'x-slack-request-timestamp': String(ts),
    'x-slack-signature': `v0=${sig}`,
  };
}

async function postSlack(body: string, headers: Record<string, string>) {
  const res = await fetch(`${h.baseUrl}/slack/events`, { method: 'POST', headers, body });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, type: res.headers.get('content-type') ?? '', json };
}

/** A block_actions payload as Slack sends it when `user` clicks the button `actionId` of message `m`. */
function clickBody(m: SlackMessageState, actionId: string, user: string, value?: string) {
  const b = buttonsOf(m).find((x) => x.action_id === actionId);
  const responsePath = `/response/T0001/${rand()}/${rand()}`;
  const payload = {
    type: 'block_actions',
    user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: 'T0001' },
    api_app_id: 'A0KILLSWITCH',
    token: 'deprecated-verification-token',
    container: { type: 'message', message_ts: m.ts, channel_id: m.channelId, is_ephemeral: false },
    trigger_id: `${rand()}.${rand()}`,
    team: { id: 'T0001', domain: 'acme' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: m.channelId, name: 'security-incidents' },
    message: { type: 'message', ts: m.ts, text: m.text, blocks: m.blocks },
    state: { values: {} },
    response_url: `${h.slack.url}${responsePath}`,
    actions: [
      {
        type: 'button',
        action_id: actionId,
        block_id: 'killswitch_actions',
        value: value ?? b?.value,
        text: { type: 'plain_text', text: b?.text.text ?? actionId, emoji: true },
        action_ts: (Date.now() / 1000).toFixed(6),
      },
    ],
  };
  return { body: new URLSearchParams({ payload: JSON.stringify(payload) }).toString(), responsePath };
}

/** Clicks, expects Slack's 200 acknowledgement, and returns the ephemeral answer posted to the response_url. */
async function click(m: SlackMessageState, actionId: string, user: string, value?: string) {
  const { body, responsePath } = clickBody(m, actionId, user, value);
  const res = await postSlack(body, slackHeaders(body));
  expect(res.status).toBe(200);
  const answer = await until(`the answer to ${actionId} by ${user}`, () =>
    h.slack.responses().find((r) => r.path === responsePath),
  );
  expect(answer.body).toMatchObject({ response_type: 'ephemeral', replace_original: false });
  return String(answer.body.text);
}

async function slash(text: string, user = MALLORY) {
  const body = new URLSearchParams({
    token: 'deprecated-verification-token',
    team_id: 'T0001',
    team_domain: 'acme',
    channel_id: 'C1000000',
    channel_name: 'security-incidents',
    user_id: user,
    user_name: user.toLowerCase(),
    command: '/killswitch',
    text,
    api_app_id: 'A0KILLSWITCH',
    is_enterprise_install: 'false',
    response_url: `${h.slack.url}/response/commands/${rand()}`,
    trigger_id: `${rand()}.${rand()}`,
  }).toString();
  return postSlack(body, slackHeaders(body));
}

const audit = async (workflowId: string) =>
  (
    await h.db.query<Record<string, any>>(
      'SELECT * FROM killswitch_audit WHERE workflow_id = $1 ORDER BY id',
      [workflowId],
    )
  ).rows;
const pd = (workflowId: string) => h.pagerduty.events().filter((e) => e.dedup_key === workflowId);

let contained: Awaited<ReturnType<typeof leak>>;

describe('Slack control surface', () => {
  it('approval path: an approver clicks Approve, the run contains the credential, the one message follows the run', async () => {
    const l = await leak('acme/prod-api');
    contained = l;
    const asking = await messageWith(l.workflowId, 'Approve');
    expect(asking.text).toMatch(/Approval needed/);
    expect(labels(asking)).toEqual(['Approve', 'Deny', 'Mark false positive', 'Open in Temporal UI']);
    expect(buttonsOf(asking).find((b) => b.action_id === SlackAction.openTemporalUi)?.url).toContain(
      encodeURIComponent(l.workflowId),
    );
    expect(JSON.stringify(asking.blocks)).toContain('owned-db');
    expect(await step(l.handle)).toBe('awaiting_approval');

    // Carol is an approver by e-mail: the ingress finds her address with users.info.
    expect(await click(asking, SlackAction.approve, CAROL)).toMatch(/Approved/);
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({
      outcome: 'contained',
      decidedBy: 'approve by carol@example.com: via Slack (acme)',
    });
    expect(await h.owned.loginFails(l.role, l.password)).toBe('28P01');

    // ONE message for the run: posted once, then only chat.update, each a later state than the last.
    const [message] = await until('the final state', () => {
      const m = messagesOf(l.workflowId);
      return m.length === 1 && /Leaked credential contained/.test(m[0]!.text) ? m : undefined;
    });
    const history = h.slack.historyOf(message!.ts);
    expect(history[0]!.method).toBe('chat.postMessage');
    expect(
      history.slice(1).every((x) => x.method === 'chat.update' && x.channel === message!.channelId),
    ).toBe(true);
    expect(
      h.slack
        .messageRequests()
        .filter((x) => x.method === 'chat.postMessage' && x.text.includes(l.workflowId)),
    ).toHaveLength(1);
    // The message follows the run through what the run sends anyway: the request, the decision (the
    // buttons go at once; it may be overtaken by the outcome, which then replaces it), the outcome.
    // No update per containment step: those run inside one workflow task, in milliseconds.
    const stages = [/Approval needed/, /approved; containing/, /Leaked credential contained/];
    const seen = history.map((x) => stages.findIndex((s) => s.test(x.text)));
    expect(seen, history.map((x) => x.text).join('\n')).not.toContain(-1);
    for (let i = 1; i < seen.length; i++)
      expect(seen[i]!, history.map((x) => x.text).join('\n')).toBeGreaterThan(seen[i - 1]!);
    expect(seen[0]).toBe(0);
    expect(seen[seen.length - 1]).toBe(stages.length - 1);
    expect(history.length).toBeGreaterThanOrEqual(2);
    // After the decision no state offers Approve again; the final one links the run only.
    const approvedAt = seen.indexOf(0);
    for (const x of history.slice(approvedAt + 1))
      expect(JSON.stringify(x.blocks)).not.toContain(SlackAction.approve);
    expect(labels(message!)).toEqual(['Open in Temporal UI']);
    expect(JSON.stringify(message!.blocks)).toContain('approve by carol@example.com');
  });

  it('a non-approver clicking Approve gets an ephemeral refusal and nothing changes; the workflow validator’s refusal is shown too', async () => {
    const l = await leak('acme/prod-web');
    const asking = await messageWith(l.workflowId, 'Approve');
    const before = h.slack.historyOf(asking.ts).length;

    expect(await click(asking, SlackAction.approve, MALLORY)).toMatch(/You are not an approver/);
    expect(await click(asking, SlackAction.falsePositive, MALLORY)).toMatch(/You are not an approver/);
    expect(await step(l.handle)).toBe('awaiting_approval');
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    expect(h.slack.historyOf(asking.ts)).toHaveLength(before);

    // A retry is not what this run waits for: the workflow's own validator refuses, with its reason.
    const value = buttonsOf(asking).find((b) => b.action_id === SlackAction.approve)!.value;
    expect(await click(asking, SlackAction.retry, APPROVER, value)).toMatch(
      /Not done: not waiting for a retry \(step: awaiting_approval\)/,
    );
    expect(await step(l.handle)).toBe('awaiting_approval');

    expect(await click(asking, SlackAction.deny, APPROVER)).toMatch(/Denied/);
    expect(((await l.handle.result()) as KillSwitchResult).outcome).toBe('denied');
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    const final = await until('the denied state', () =>
      messagesOf(l.workflowId).find((m) => /denied by a human/.test(m.text)),
    );
    expect(labels(final)).toEqual(['Open in Temporal UI']);
  });

  it('refuses a bad signature, a stale timestamp and missing headers with 401 problem+json, and nothing changes', async () => {
    const l = await leak('acme/prod-batch');
    const asking = await messageWith(l.workflowId, 'Approve');
    const { body, responsePath } = clickBody(asking, SlackAction.approve, APPROVER);
    const now = Math.floor(Date.now() / 1000);

    const forged = await postSlack(body, slackHeaders(body, { secret: 'f'.repeat(32) }));
    expect(forged).toMatchObject({
      status: 401,
      json: { type: 'urn:secret-kill-switch:problem:invalid-signature', status: 401 },
    });
    expect(forged.type).toContain('application/problem+json');
    const tampered = await postSlack(body.replace('U0APPROVER1', 'U0APPROVER2'), slackHeaders(body));
    expect(tampered).toMatchObject({
      status: 401,
      json: { type: 'urn:secret-kill-switch:problem:invalid-signature' },
    });
    // A captured request replayed later: its signature is right, its timestamp is not.
    const stale = await postSlack(body, slackHeaders(body, { ts: now - 6 * 60 }));
    expect(stale).toMatchObject({
      status: 401,
      json: { type: 'urn:secret-kill-switch:problem:stale-timestamp' },
    });
    const future = await postSlack(body, slackHeaders(body, { ts: now + 6 * 60 }));
    expect(future).toMatchObject({
      status: 401,
      json: { type: 'urn:secret-kill-switch:problem:stale-timestamp' },
    });
    const bare = await postSlack(body, { 'content-type': 'application/x-www-form-urlencoded' });
    expect(bare).toMatchObject({
      status: 401,
      json: { type: 'urn:secret-kill-switch:problem:missing-signature' },
    });
    const slashForged = await postSlack(
      'command=%2Fkillswitch&text=recent',
      slackHeaders('command=%2Fkillswitch&text=recent', { secret: 'f'.repeat(32) }),
    );
    expect(slashForged.status).toBe(401);

    await new Promise((r) => setTimeout(r, 300));
    expect(h.slack.responses().some((r) => r.path === responsePath)).toBe(false);
    expect(await step(l.handle)).toBe('awaiting_approval');
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();

    // The same request, correctly signed and fresh, is what Slack would send: it goes through.
    expect(await click(asking, SlackAction.deny, APPROVER)).toMatch(/Denied/);
    expect(((await l.handle.result()) as KillSwitchResult).outcome).toBe('denied');
  });

  it('after an escalation: Acknowledge (any member), then Retry rotation once the cause is fixed -> contained, PagerDuty resolved, both audit rows', async () => {
    const l = await leak('acme/api', { superuser: true });
    const escalated = await messageWith(l.workflowId, 'Retry rotation');
    expect(escalated.text).toMatch(/Containment failed/);
    expect(labels(escalated)).toEqual([
      'Retry rotation',
      'Acknowledge',
      'Mark false positive',
      'Open in Temporal UI',
    ]);
    // The message is posted while the run is still notifying; it waits for a human right after.
    await until('awaiting retry', async () => (await step(l.handle)) === 'awaiting_retry');
    expect(pd(l.workflowId).map((e) => e.event_action)).toEqual(['trigger']);

    // Acknowledge is open to channel members.
    expect(await click(escalated, SlackAction.acknowledge, MALLORY)).toMatch(/Acknowledged/);
    await until('the PagerDuty acknowledge', () => pd(l.workflowId).length === 2);
    const acked = await until('the acknowledged state', () =>
      messagesOf(l.workflowId).find((m) => JSON.stringify(m.blocks).includes(`acknowledged by ${MALLORY}`)),
    );
    expect(labels(acked)).toEqual(['Retry rotation', 'Mark false positive', 'Open in Temporal UI']);
    // Retrying is not.
    expect(await click(acked, SlackAction.retry, MALLORY)).toMatch(/You are not an approver/);
    expect(await step(l.handle)).toBe('awaiting_retry');

    // The operator fixes the cause, then retries from Slack.
    await h.owned.su.query(`ALTER ROLE ${h.owned.su.escapeIdentifier(l.role)} NOSUPERUSER`);
    expect(await click(acked, SlackAction.retry, APPROVER)).toMatch(/Retrying/);
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({
      outcome: 'contained',
      retriedBy: [APPROVER],
      acknowledgedBy: MALLORY,
      resolvedIncident: true,
    });
    expect(await h.owned.loginFails(l.role, l.password)).toBe('28P01');
    expect(pd(l.workflowId).map((e) => [e.event_action, e.dedup_key])).toEqual([
      ['trigger', l.workflowId],
      ['acknowledge', l.workflowId],
      ['resolve', l.workflowId],
    ]);
    expect(await audit(l.workflowId)).toMatchObject([
      { outcome: 'escalated', failure_type: 'PermissionDenied' },
      { outcome: 'contained', retried_by: APPROVER, acknowledged_by: MALLORY, incident_resolved: true },
    ]);
    const final = await until('the contained state', () =>
      messagesOf(l.workflowId).find((m) => /Leaked credential contained/.test(m.text)),
    );
    expect(labels(final)).toEqual(['Open in Temporal UI']);
    expect(messagesOf(l.workflowId)).toHaveLength(1);
  });

  it('Mark false positive ends a waiting run: nothing rotated, who decided recorded', async () => {
    const l = await leak('acme/prod-db');
    const asking = await messageWith(l.workflowId, 'Mark false positive');
    expect(await click(asking, SlackAction.falsePositive, APPROVER)).toMatch(/false positive/);
    const r: KillSwitchResult = await l.handle.result();
    expect(r).toMatchObject({ outcome: 'false_positive', falsePositiveBy: APPROVER });
    expect(r.rotation).toBeUndefined();
    expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    expect(await audit(l.workflowId)).toMatchObject([
      { outcome: 'false_positive', false_positive_by: APPROVER },
    ]);
    const final = await until('the false-positive state', () =>
      messagesOf(l.workflowId).find((m) => /Marked a false positive by U0APPROVER1/.test(m.text)),
    );
    expect(labels(final)).toEqual(['Open in Temporal UI']);
  });

  it('/killswitch status and /killswitch recent answer ephemerally from the audit table and the live run', async () => {
    const recent = await slash('recent');
    expect(recent.status).toBe(200);
    expect(recent.json.response_type).toBe('ephemeral');
    expect(recent.json.text).toMatch(/^\*Last \d+ outcomes\*/);
    const lines = recent.json.text.split('\n').slice(1);
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThanOrEqual(10);
    // The newest ten of the audit table, newest first. The table is shared with the test files
    // running beside this one, so this run is listed unless ten rows newer than it existed then.
    const listed: string[] = lines
      .map((l: string) => /\/workflows\/([^/]+)\//.exec(l)![1]!)
      .map(decodeURIComponent);
    const times = await Promise.all(
      listed.map(async (wf) => (await audit(wf)).map((r) => new Date(r.recorded_at).getTime())),
    );
    for (const t of times) expect(t.length).toBeGreaterThanOrEqual(1);
    const ours = (await audit(contained.workflowId)).at(-1)!;
    const newer = await h.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM killswitch_audit WHERE id > $1',
      [ours.id],
    );
    expect(listed.includes(contained.workflowId) || newer.rows[0]!.n >= 10).toBe(true);

    for (const key of [contained.detectionId, contained.workflowId, h.keys.fingerprint(contained.password)]) {
      const s = await slash(`status ${key}`);
      expect(s.status).toBe(200);
      expect(s.json.response_type).toBe('ephemeral');
      expect(s.json.text).toContain(contained.workflowId);
      expect(s.json.text).toMatch(/Live step:\* done · outcome contained · owner owned-db/);
      expect(s.json.text).toContain('`contained`');
    }

    // A run in flight: the live step comes from the currentStep query, before any audit row exists.
    const l = await leak('acme/prod-live');
    await until('awaiting approval', async () => (await step(l.handle)) === 'awaiting_approval');
    const live = await slash(`status ${l.detectionId}`);
    expect(live.json.text).toMatch(/Live step:\* awaiting approval/);
    expect(live.json.text).toContain('no row yet');
    const asking = await messageWith(l.workflowId, 'Deny');
    expect(await click(asking, SlackAction.deny, APPROVER)).toMatch(/Denied/);
    await l.handle.result();

    expect((await slash('status generic:no-such-detection')).json.text).toMatch(/No run found/);
    expect((await slash('status')).json.text).toMatch(/^Usage/);
    expect((await slash('rotate everything')).json.text).toMatch(/^Usage/);
  });

  it('never lets a planted secret reach Slack (messages, updates, ephemeral answers) or anywhere else', async () => {
    expectNowhere(await secretPlaces(h, workflowIds), planted);
  });
});

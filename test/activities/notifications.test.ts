/**
 * Slack and PagerDuty senders against loopback fakes of their documented wire contracts, and the
 * notifySlack activity's ledger that makes a retry a no-op.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPagerDutySender } from '../../activities/pagerduty';
import { buildSlackMessage, createSlackSender } from '../../activities/slack';
import { createPostgresDb, migrate, type Db } from '../../lib/db';
import type { RunSummary } from '../../contracts/run';
import { startPagerDutyFake, type PagerDutyFake } from '../fakes/pagerduty';
import { startSlackFake, type SlackFake } from '../fakes/slack';
import { rand } from '../helpers/harness';
import { notificationActivities } from '../helpers/activities';

let slackFake: SlackFake;
let pdFake: PagerDutyFake;
let db: Db;
beforeAll(async () => {
  [slackFake, pdFake] = await Promise.all([startSlackFake(), startPagerDutyFake()]);
  db = createPostgresDb(inject('auditDatabaseUrl'));
  await migrate(db);
});
afterAll(async () => {
  await Promise.all([slackFake?.close(), pdFake?.close(), db?.close()]);
});

const RUN_URL = 'http://localhost:8233/namespaces/default/workflows/wf/run/history';

function summary(outcome: 'contained' | 'escalated' = 'escalated'): RunSummary {
  const wf = `killswitch-postgres_password-${rand()}${rand()}`;
  return {
    workflowId: wf,
    runId: `run-${rand()}`,
    detection: {
      id: 'generic:x',
      source: 'generic',
      credentialType: 'postgres_password',
      credentialRef: { role: 'app_user' },
      location: {},
      severity: 'high',
      detectedAt: new Date().toISOString(),
      hasEvidence: false,
    },
    owner: null,
    outcome,
    timeline: { receivedAt: new Date().toISOString() },
    ...(outcome === 'escalated'
      ? { failure: { step: 'resolving_owner' as const, type: 'NoOwner', message: 'no owner' } }
      : {}),
  };
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

describe('Slack', () => {
  const sender = () =>
    createSlackSender({
      token: slackFake.token,
      channel: '#sec',
      apiUrl: slackFake.apiUrl,
      log: () => undefined,
    });

  it('posts a Block Kit message with the outcome and a button to the run', async () => {
    const before = slackFake.messages().length;
    const r = await sender().post(buildSlackMessage(summary('contained'), RUN_URL));
    expect(r.status).toBe('sent');
    expect(r.ts).toMatch(/^\d+\.\d+$/);
    const m = slackFake.messages()[before]!;
    expect(m.channel).toBe('#sec');
    expect(m.text).toContain('contained');
    expect(JSON.stringify(m.blocks)).toContain(RUN_URL);
  });

  it('turns 429 into a retryable failure that waits Retry-After', async () => {
    slackFake.script.push({
      status: 429,
      headers: { 'retry-after': '7' },
      body: { ok: false, error: 'ratelimited' },
    });
    const err = await caught(sender().post(buildSlackMessage(summary(), RUN_URL)));
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type).toBe('SlackRateLimited');
    expect((err as ApplicationFailure).nonRetryable).toBe(false);
    expect((err as ApplicationFailure).nextRetryDelay).toBe('7s');
  });

  it('treats channel_not_found as permanent', async () => {
    slackFake.script.push({ status: 200, body: { ok: false, error: 'channel_not_found' } });
    const err = (await caught(sender().post(buildSlackMessage(summary(), RUN_URL)))) as ApplicationFailure;
    expect(err.type).toBe('NotificationRejected');
    expect(err.nonRetryable).toBe(true);
  });

  it('logs instead of posting when no token is configured', async () => {
    const logged: string[] = [];
    const before = slackFake.requests.length;
    const s = createSlackSender({
      token: undefined,
      channel: undefined,
      apiUrl: slackFake.apiUrl,
      log: (m) => logged.push(m.text),
    });
    expect(await s.post(buildSlackMessage(summary(), RUN_URL))).toEqual({ status: 'logged' });
    expect(logged).toHaveLength(1);
    expect(slackFake.requests.length).toBe(before);
  });

  it('notifySlack posts once per run outcome even when the activity is retried', async () => {
    const acts = activities();
    const s = summary('contained');
    const env = new MockActivityEnvironment();
    await env.run(acts.notifySlack, s);
    await env.run(acts.notifySlack, s);
    expect(slackFake.messages().filter((m) => m.text.includes(s.workflowId))).toHaveLength(1);
  });

  it('keeps ONE message per run: posts once, then chat.update in scheduling order, skipping a stale state', async () => {
    const acts = activities();
    const s = summary('contained');
    const running = {
      ...s,
      outcome: 'contained' as const,
      owner: null,
      timeline: { receivedAt: s.timeline.receivedAt },
    };
    // The activity id is the run's activity sequence number: it orders the states.
    const at = (activityId: number) => new MockActivityEnvironment({ activityId: String(activityId) });
    expect(await at(5).run(acts.slackProgress, { summary: running, seq: 2 })).toEqual({ status: 'sent' });
    expect(
      await at(8).run(acts.slackProgress, {
        summary: { ...running, timeline: { ...running.timeline, rotatedAt: new Date().toISOString() } },
        seq: 3,
      }),
    ).toEqual({ status: 'sent' });
    // An older state arriving late changes nothing.
    expect(await at(3).run(acts.slackProgress, { summary: running, seq: 1 })).toEqual({ status: 'skipped' });
    expect(await at(12).run(acts.notifySlack, s)).toEqual({ status: 'sent' });
    // A retried activity (same id) does not post or edit again.
    expect(await at(12).run(acts.notifySlack, s)).toEqual({ status: 'sent' });
    const [message] = slackFake.messages().filter((m) => m.text.includes(s.workflowId));
    expect(slackFake.historyOf(message!.ts).map((x) => x.method)).toEqual([
      'chat.postMessage',
      'chat.update',
      'chat.update',
    ]);
    expect(slackFake.historyOf(message!.ts).map((x) => x.text.split(':')[1])).toEqual([
      'hourglass_flowing_sand',
      'hourglass_flowing_sand',
      'white_check_mark',
    ]);
    expect(message!.text).toMatch(/Leaked credential contained/);
    const ledger = await db.query<{ external_id: string; slack_channel: string; seq: string }>(
      "SELECT external_id, slack_channel, seq FROM killswitch_notifications WHERE workflow_id = $1 AND kind = 'message'",
      [s.workflowId],
    );
    expect(ledger.rows).toEqual([{ external_id: message!.ts, slack_channel: message!.channelId, seq: '12' }]);
  });

  it('posts the message again when someone deleted it in Slack', async () => {
    const acts = activities();
    const s = summary('contained');
    await new MockActivityEnvironment({ activityId: '4' }).run(acts.slackProgress, { summary: s, seq: 1 });
    slackFake.script.push({ status: 200, body: { ok: false, error: 'message_not_found' } });
    await new MockActivityEnvironment({ activityId: '9' }).run(acts.notifySlack, s);
    const posts = slackFake
      .messageRequests()
      .filter((x) => x.method === 'chat.postMessage' && x.text.includes(s.workflowId));
    expect(posts).toHaveLength(2);
    expect(posts[1]!.text).toMatch(/Leaked credential contained/);
  });
});

function activities() {
  return notificationActivities({ db, slack: slackFake, channel: '#sec', pagerDutyUrl: pdFake.url });
}

describe('PagerDuty Events API v2', () => {
  const sender = () =>
    createPagerDutySender({ routingKey: pdFake.routingKey, eventsUrl: pdFake.url, log: () => undefined });

  it('sends a valid trigger whose dedup_key is the workflow id', async () => {
    const s = summary();
    expect(await sender().trigger(s, RUN_URL)).toEqual({ status: 'sent', dedupKey: s.workflowId });
    const e = pdFake.events().find((x) => x.dedup_key === s.workflowId)!;
    expect(e).toMatchObject({
      event_action: 'trigger',
      payload: { severity: 'critical', class: 'NoOwner' },
      links: [{ href: RUN_URL }],
    });
  });

  it('waits Retry-After on 429, retries 5xx, gives up on 400', async () => {
    pdFake.script.push({ status: 429, headers: { 'retry-after': '3' }, body: { status: 'throttle event' } });
    const throttled = (await caught(sender().trigger(summary(), RUN_URL))) as ApplicationFailure;
    expect(throttled.type).toBe('PagerDutyRateLimited');
    expect(throttled.nextRetryDelay).toBe('3s');
    expect(throttled.nonRetryable).toBe(false);

    pdFake.script.push({ status: 503, body: {} });
    const down = await caught(sender().trigger(summary(), RUN_URL));
    expect(down).not.toBeInstanceOf(ApplicationFailure);

    const bad = createPagerDutySender({
      routingKey: 'too-short',
      eventsUrl: pdFake.url,
      log: () => undefined,
    });
    const rejected = (await caught(bad.trigger(summary(), RUN_URL))) as ApplicationFailure;
    expect(rejected.type).toBe('NotificationRejected');
    expect(rejected.nonRetryable).toBe(true);
  });

  it("pages a routed system's escalation on its team's service, and follows up there even when only the audit knows the system", async () => {
    const teamKey = 'T'.repeat(32);
    const acts = notificationActivities({
      db,
      slack: slackFake,
      channel: '#sec',
      pagerDutyUrl: pdFake.url,
      pagerDutyRoutingKey: pdFake.routingKey,
      routes: new Map([['pay-db', { team: 'payments', pagerdutyRoutingKey: teamKey, subscriptions: [] }]]),
    });
    const env = new MockActivityEnvironment();
    const routed: RunSummary = {
      ...summary(),
      owner: {
        system: 'pay-db',
        kind: 'postgres',
        mode: 'emergency',
        overlap: '10m',
        quarantine: false,
        canQuarantine: false,
        sink: 'none',
        replacement: false,
        userSessionTargets: 0,
        breaker: { threshold: 25, window: '5m', holdTimeout: '24h' },
      },
    };
    const unrouted = summary();
    await env.run(acts.triggerPagerDuty, routed);
    await env.run(acts.triggerPagerDuty, unrouted);
    await env.run(acts.recordAudit, routed);
    // The late-enrichment path knows only the dedup key: the audit row names the system.
    await env.run(acts.followUpPagerDuty, { dedupKey: routed.workflowId, action: 'resolve' as const });
    await env.run(acts.followUpPagerDuty, { dedupKey: unrouted.workflowId, action: 'acknowledge' as const });
    const keysOf = (wf: string) =>
      pdFake
        .events()
        .filter((e) => e.dedup_key === wf)
        .map((e) => [e.event_action, e.routing_key]);
    expect(keysOf(routed.workflowId)).toEqual([
      ['trigger', teamKey],
      ['resolve', teamKey],
    ]);
    expect(keysOf(unrouted.workflowId)).toEqual([
      ['trigger', pdFake.routingKey],
      ['acknowledge', pdFake.routingKey],
    ]);
    expect(pdFake.alertsOpened(routed.workflowId)).toBe(1);
  });

  it('logs the event without the routing key when none is configured', async () => {
    const logged: unknown[] = [];
    const before = pdFake.requests.length;
    const s = createPagerDutySender({
      routingKey: undefined,
      eventsUrl: pdFake.url,
      log: (e) => logged.push(e),
    });
    expect((await s.trigger(summary(), RUN_URL)).status).toBe('logged');
    expect(pdFake.requests.length).toBe(before);
    expect(JSON.stringify(logged)).not.toContain('routing_key');
  });
});

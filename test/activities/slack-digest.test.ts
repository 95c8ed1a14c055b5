/**
 * Burst digests (activities/slack-digest.ts) at the activity boundary, against real PostgreSQL and
 * the Slack fake: routine runs become lines of one digest message, a retry or a stale state changes
 * nothing, a run that needs a human gets its own message, a 429 on the digest is retried.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildDigestLine, buildDigestMessage, DIGEST_MAX_LINES } from '../../activities/slack-digest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPgliteDb, createPostgresDb, migrate, type Db } from '../../lib/db';
import type { RunSummary } from '../../contracts/run';
import { startPagerDutyFake, type PagerDutyFake } from '../fakes/pagerduty';
import { startSlackFake, type SlackFake } from '../fakes/slack';
import { deepText, rand } from '../helpers/harness';
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

function summary(outcome: 'contained' | 'escalated', role = `app_${rand()}`): RunSummary {
  const receivedAt = new Date(Date.now() - 2000).toISOString();
  return {
    workflowId: `killswitch-postgres_password-${rand()}${rand()}`,
    runId: `run-${rand()}`,
    detection: {
      id: 'generic:x',
      source: 'generic',
      credentialType: 'postgres_password',
      credentialRef: { role },
      location: {},
      severity: 'high',
      detectedAt: receivedAt,
      hasEvidence: false,
    },
    owner: null,
    outcome,
    timeline:
      outcome === 'contained'
        ? { receivedAt, rotatedAt: receivedAt, verifiedDeadAt: new Date().toISOString() }
        : { receivedAt },
    ...(outcome === 'escalated'
      ? { failure: { step: 'revoking' as const, type: 'UpstreamRefused', message: 'permission denied' } }
      : {}),
  };
}

/** Activities whose channel is this test's own; `after: 1` and a message just posted: a burst. */
async function burstActivities(on: Db = db) {
  const channel = `#sec-digest-${rand()}`;
  const db = on;
  await db.query(
    `INSERT INTO killswitch_notifications (workflow_id, run_id, channel, kind, external_id, slack_channel, seq) VALUES ($1, 'r', 'slack', 'message', '1.1', 'C1', 1)`,
    [`earlier-${rand()}`],
  );
  const acts = notificationActivities({
    db,
    slack: slackFake,
    channel,
    pagerDutyUrl: pdFake.url,
    slackDigest: { settings: { after: 1, updateIntervalMs: 500, windowMs: 600_000 }, channel },
  });
  const inChannel = () => slackFake.messages().filter((m) => m.channel === channel);
  const digests = () => inChannel().filter((m) => m.text.startsWith(':zap: Burst digest'));
  return { acts, channel, inChannel, digests };
}

const at = (activityId: number) => new MockActivityEnvironment({ activityId: String(activityId) });

describe('burst digests', () => {
  it('folds routine runs into one digest message; a retried or stale state changes nothing', async () => {
    const { acts, channel, inChannel, digests } = await burstActivities();
    const runs = [summary('contained'), summary('contained'), summary('contained')];
    for (const s of runs) {
      const running = { ...s, timeline: { receivedAt: s.timeline.receivedAt } };
      expect(await at(5).run(acts.slackProgress, { summary: running, seq: 1 })).toEqual({ status: 'sent' });
    }
    for (const s of runs) expect(await at(12).run(acts.notifySlack, s)).toEqual({ status: 'sent' });

    // One message in the channel: the digest, with one line per run, all contained.
    expect(inChannel()).toHaveLength(1);
    const [digest] = digests();
    expect(digest!.text).toMatch(
      /^:zap: Burst digest: 3 leaked credentials since \d\d:\d\d UTC: 3 contained$/,
    );
    const body = JSON.stringify(digest!.blocks);
    for (const s of runs) {
      expect(body).toContain(encodeURIComponent(s.workflowId));
      expect(body).toContain(`role=${s.detection.credentialRef.role}`);
    }
    expect(body.match(/:white_check_mark:/g)).toHaveLength(3);
    expect(body).toContain('Open these runs in Temporal UI');

    // A retried activity (same id) and a stale state (lower id) do not edit the digest again.
    const renders = slackFake.historyOf(digest!.ts).length;
    expect(await at(12).run(acts.notifySlack, runs[0]!)).toMatchObject({
      status: expect.stringMatching(/sent|skipped/),
    });
    expect(await at(3).run(acts.slackProgress, { summary: runs[1]!, seq: 0 })).toEqual({ status: 'skipped' });
    expect(slackFake.historyOf(digest!.ts)).toHaveLength(renders);
    expect(slackFake.historyOf(digest!.ts)[0]!.method).toBe('chat.postMessage');

    const ledger = await db.query<{ version: string; shown_version: string }>(
      `SELECT version, shown_version FROM killswitch_slack_digests WHERE channel = $1`,
      [channel],
    );
    expect(ledger.rows).toEqual([{ version: '6', shown_version: '6' }]);
  });

  it('concurrent runs in one worker: one activity renders, the others hand over their line and return; every line shows', async () => {
    const { acts, digests } = await burstActivities();
    const runs = Array.from({ length: 8 }, () => summary('contained'));
    const statuses = await Promise.all(runs.map((s) => at(12).run(acts.notifySlack, s)));
    expect((statuses as Array<{ status: string }>).every((x) => x.status === 'sent')).toBe(true);
    expect(digests()).toHaveLength(1);
    const d = digests()[0]!;
    expect(d.text).toMatch(/: 8 leaked credentials since .*: 8 contained$/);
    for (const s of runs) expect(JSON.stringify(d.blocks)).toContain(encodeURIComponent(s.workflowId));
    // Far fewer Slack calls than runs: the renders collapsed.
    expect(slackFake.historyOf(d.ts).length).toBeLessThan(runs.length);
  });

  it('works on the embedded database (PGlite) too', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-digest-'));
    const lite = await createPgliteDb(dir);
    try {
      await migrate(lite);
      const { acts, inChannel, digests } = await burstActivities(lite);
      const runs = [summary('contained'), summary('contained')];
      await Promise.all(runs.map((s) => at(12).run(acts.notifySlack, s)));
      await at(12).run(acts.notifySlack, runs[0]!);
      expect(inChannel()).toHaveLength(1);
      expect(digests()[0]!.text).toMatch(/: 2 contained$/);
      const rows = await lite.query<{ version: string | number; shown_version: string | number }>(
        'SELECT version, shown_version FROM killswitch_slack_digests',
      );
      expect(rows.rows.map((r) => [Number(r.version), Number(r.shown_version)])).toEqual([[2, 2]]);
    } finally {
      await lite.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a run that needs a human leaves the digest for a message of its own', async () => {
    const { acts, inChannel, digests } = await burstActivities();
    const s = summary('escalated');
    const running: RunSummary = { ...s, outcome: 'contained' };
    delete running.failure;
    await at(5).run(acts.slackProgress, { summary: running, seq: 1 });
    expect(inChannel()).toHaveLength(1);
    expect(await at(12).run(acts.notifySlack, s)).toEqual({ status: 'sent' });

    const own = inChannel().filter((m) => !m.text.startsWith(':zap:'));
    expect(own).toHaveLength(1);
    expect(own[0]!.text).toMatch(/Containment failed, escalated/);
    const digest = digests()[0]!;
    expect(digest.text).toMatch(/1 need a human \(own message\)/);
    expect(JSON.stringify(digest.blocks)).toContain('needs a human: see its own message');
    // Retrying the outcome now updates the run's own message; nothing new is posted.
    await at(12).run(acts.notifySlack, s);
    expect(
      slackFake
        .messageRequests()
        .filter((m) => m.method === 'chat.postMessage' && m.text.includes(encodeURIComponent(s.workflowId))),
    ).toHaveLength(1);
  });

  it('a 429 on the digest fails the activity with Retry-After; its retry shows the line', async () => {
    const { acts, digests } = await burstActivities();
    const first = summary('contained');
    await at(12).run(acts.notifySlack, first);
    const s = summary('contained');
    await new Promise((r) => setTimeout(r, 600));
    slackFake.script.push({
      status: 429,
      headers: { 'retry-after': '1' },
      body: { ok: false, error: 'ratelimited' },
    });
    const err = await at(12)
      .run(acts.notifySlack, s)
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type).toBe('SlackRateLimited');
    expect(JSON.stringify(digests()[0]!.blocks)).not.toContain(encodeURIComponent(s.workflowId));
    await new Promise((r) => setTimeout(r, 1100));
    expect(await at(12).run(acts.notifySlack, s)).toEqual({ status: 'sent' });
    expect(digests()).toHaveLength(1);
    expect(JSON.stringify(digests()[0]!.blocks)).toContain(encodeURIComponent(s.workflowId));
    expect(digests()[0]!.text).toMatch(/2 contained$/);
  });
});

describe('digest message', () => {
  it('counts every run, lists the ones needing attention first, at most DIGEST_MAX_LINES lines', () => {
    const url = 'http://ui/namespaces/default/workflows/w/r/history';
    const items = [
      ...Array.from({ length: 60 }, () => buildDigestLine(summary('contained'), 'outcome', url)),
      buildDigestLine(summary('escalated'), 'outcome', url),
    ];
    const m = buildDigestMessage(items, new Date('2026-11-24T15:00:00Z'), 'http://ui/list');
    expect(m.text).toBe(
      ':zap: Burst digest: 61 leaked credentials since 15:00 UTC: 1 need a human (own message), 60 contained',
    );
    const text = deepText(m.blocks);
    expect(text.match(/:white_check_mark:/g)).toHaveLength(DIGEST_MAX_LINES - 1);
    expect(text.indexOf(':raised_hand:')).toBeLessThan(text.indexOf(':white_check_mark:'));
    expect(text).toContain('and 21 more');
    expect(m.blocks.length).toBeLessThanOrEqual(50);
    for (const b of m.blocks as Array<{ text?: { text: string } }>)
      expect((b.text?.text ?? '').length).toBeLessThanOrEqual(3000);
  });

  it('scanner-supplied references cannot inject mentions or break the link', () => {
    const s = summary('contained', '<!channel>|<https://evil.example|click>');
    const { line } = buildDigestLine(s, 'outcome', 'http://ui/run');
    expect(line).not.toContain('<!channel>');
    expect(line).not.toContain('<https://evil');
    expect(line.match(/</g)).toHaveLength(1);
    expect(line.match(/\|/g)).toHaveLength(1);
  });
});

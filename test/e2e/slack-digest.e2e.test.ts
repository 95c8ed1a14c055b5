/**
 * A burst through the whole path with Slack's real limits (chat.postMessage ~1/s per channel,
 * chat.update ~50/min): the credentials die at full speed, the routine runs are announced as lines
 * of one digest message instead of queueing one message each behind the rate limit, the escalation
 * keeps a message of its own, nothing is shown twice, and no secret reaches Slack or the ledgers.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import {
  deepText,
  expectNowhere,
  leakedUrl,
  rand,
  secretPlaces,
  startHarness,
  type Harness,
} from '../helpers/harness';
import { waitFor } from '../faults/support';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    slack: { postMessagePerSecond: 1, updatePerMinute: 50 },
    // One run message within the last minute makes a burst; renders at most every second.
    env: { SLACK_DIGEST_AFTER: '1', SLACK_DIGEST_UPDATE_INTERVAL: '1s' },
    // A system of its own: the mass-leak breaker counts detections per system name in the shared
    // test database, and this burst must not trip the default breaker of other files' `owned-db`.
    config: {
      systems: [
        {
          name: 'burst-db',
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['app_*', 'dba_*'],
          breaker: { threshold: 1000, window: '5m' },
        },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
});

const isDigest = (text: string) => text.startsWith(':zap: Burst digest');

it('a burst of leaks is contained at full speed and announced in one digest; the escalation keeps its own message', async () => {
  const planted: string[] = [];
  const leak = async (opts: { superuser?: boolean } = {}) => {
    const { role, password } = await h.owned.createRole(opts);
    planted.push(password);
    return { role, password };
  };
  const send = async ({ role, password }: { role: string; password: string }) => {
    const res = await h.post({
      scanner: 'burst',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
    });
    expect(res.status).toBe(202);
    return res.json.workflowId as string;
  };
  // A first leak gets a message of its own (or, if other runs just posted, a digest line).
  const first = await send(await leak());
  await h.client.workflow.getHandle(first).result();
  // Then the burst: ten leaks and one the admin may not rotate (a superuser), all at once.
  const creds = [];
  for (let i = 0; i < 10; i++) creds.push(await leak());
  creds.push(await leak({ superuser: true }));
  const burst = await Promise.all(creds.map(send));
  const escalatedId = burst[10]!;
  const results = new Map<string, KillSwitchResult>();
  for (const id of [first, ...burst]) results.set(id, await h.client.workflow.getHandle(id).result());
  const containedIds = [first, ...burst.slice(0, 10)];
  for (const id of containedIds) expect(results.get(id)!.outcome).toBe('contained');
  expect(results.get(escalatedId)!.outcome).toBe('escalated');

  const ownMessages = () => h.slack.messages().filter((m) => !isDigest(m.text));
  const digestLines = () =>
    h.slack
      .messages()
      .filter((m) => isDigest(m.text))
      .flatMap((m) => deepText(m.blocks).split('\n'))
      .filter((l) => l.includes('/workflows/'));
  const shownAs = (id: string) => ({
    own: ownMessages().filter((m) => m.text.includes(`/workflows/${id}/`)),
    lines: digestLines().filter((l) => l.includes(`/workflows/${id}/`)),
  });

  // Every outcome reaches the channel soon after the last run ends, not one message a second later.
  const allShown = await waitFor(
    'every contained run shown as contained',
    () =>
      containedIds.every((id) => {
        const s = shownAs(id);
        return (
          s.own.some((m) => /Leaked credential contained/.test(m.text)) ||
          s.lines.some((l) => l.startsWith(':white_check_mark:'))
        );
      }) && Date.now(),
    20_000,
  );
  expect(allShown).toBeTruthy();

  // Exactly once: each contained run is either its own message or one digest line, never both.
  for (const id of containedIds) {
    const s = shownAs(id);
    expect(s.own.length + s.lines.length, id).toBe(1);
  }
  // The burst was folded: at most the first run had a message of its own.
  expect(containedIds.filter((id) => shownAs(id).own.length > 0).length).toBeLessThanOrEqual(1);
  const digests = h.slack.messages().filter((m) => isDigest(m.text));
  expect(digests).toHaveLength(1);
  expect(digests[0]!.text).not.toMatch(/in progress/);
  expect(digests[0]!.text).toMatch(/\b1[01] contained\b/);

  // The escalation has its own message with its outcome; if it was a digest line first, the line says so.
  const esc = shownAs(escalatedId);
  expect(esc.own).toHaveLength(1);
  expect(esc.own[0]!.text).toMatch(/Containment failed, escalated/);
  for (const l of esc.lines) expect(l).toMatch(/needs a human: see its own message/);

  // Every accepted chat.postMessage was one message (a retry never posted twice), and far fewer than runs.
  const posts = h.slack.messageRequests().filter((m) => m.method === 'chat.postMessage');
  expect(posts.length).toBe(h.slack.messages().length);
  expect(posts.length).toBeLessThanOrEqual(4);

  const ledger = await h.db.query<{ version: string; shown_version: string }>(
    `SELECT d.version, d.shown_version FROM killswitch_slack_digests d
      WHERE d.id = (SELECT digest_id FROM killswitch_slack_digest_items WHERE workflow_id = $1)`,
    [burst[0]],
  );
  expect(ledger.rows).toHaveLength(1);
  expect(ledger.rows[0]!.shown_version).toBe(ledger.rows[0]!.version);

  expectNowhere(await secretPlaces(h, [first, ...burst]), planted);
});

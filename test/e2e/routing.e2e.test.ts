/**
 * Routing per owning system and outbound rules, end to end: signed detections reach the real
 * ingress, the real worker contains (or escalates) on the real Temporal server, and
 * - a system that names its team's Slack channel, PagerDuty service and subscriptions has its run
 *   message posted there, its escalation paged there, and its events delivered to its team's
 *   subscription (a `routedOnly` one: nothing of another system reaches it);
 * - every event carries the team, so a global subscription can filter on it;
 * - a rule (trigger → conditions → actions) sends what it matches to its subscription whatever that
 *   subscription's own event types say, counts its executions, and does nothing while disabled.
 * Receivers on loopback stand for the teams' webhook endpoints; Slack and PagerDuty are the wire fakes.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';

const ROUTED = 'rt-payments';
const OTHER = 'rt-ledger';
const TEAM_CHANNEL = '#payments-sec';
const TEAM_PD_KEY = `PAYMENTS${randomBytes(12).toString('hex')}`; // 32 letters and digits

async function startReceiver() {
  const bodies: Array<Record<string, any>> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    events: () => bodies,
    of: (workflowId: string) => bodies.filter((e) => e.run?.workflowId === workflowId).map((e) => e.type),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
type Receiver = Awaited<ReturnType<typeof startReceiver>>;

let h: Harness;
let teamHook: Receiver;
let ruleHook: Receiver;
let teamFiltered: Receiver;
const planted: string[] = [];
const subscriptionIds: string[] = [];
const ruleIds: string[] = [];
const workflowIds: string[] = [];
const suffix = rand();
const TEAM_SUB = `rt-team-${suffix}`;
const RULE_SUB = `rt-rule-${suffix}`;
const FILTERED_SUB = `rt-filtered-${suffix}`;

async function subscribe(
  name: string,
  url: string,
  o: { eventTypes: string[]; routedOnly: boolean; filters?: object },
) {
  const id = `sub_${rand()}`;
  await h.db.query(
    `INSERT INTO killswitch_subscriptions (id, name, format, url, event_types, filters, routed_only)
     VALUES ($1, $2, 'json', $3, $4, $5::jsonb, $6)`,
    [id, name, url, o.eventTypes, JSON.stringify(o.filters ?? {}), o.routedOnly],
  );
  subscriptionIds.push(id);
  return id;
}

async function rule(o: { trigger: string[]; conditions: object; actions: string[]; enabled?: boolean }) {
  const id = `rule_${rand()}`;
  await h.db.query(
    `INSERT INTO killswitch_rules (id, name, enabled, trigger, conditions, actions)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6)`,
    [
      id,
      `rt-${id.toLowerCase().replace(/_/g, '-')}`,
      o.enabled ?? true,
      o.trigger,
      JSON.stringify(o.conditions),
      o.actions,
    ],
  );
  ruleIds.push(id);
  return id;
}

const ruleRow = async (id: string) =>
  (
    await h.db.query<{
      execution_count: string;
      last_executed_at: Date | null;
      last_event_type: string | null;
    }>('SELECT execution_count, last_executed_at, last_event_type FROM killswitch_rules WHERE id = $1', [id])
  ).rows[0]!;

async function leak(
  prefix: 'rtp' | 'rtl',
  repository: string,
  opts: { superuser?: boolean } = {},
): Promise<{ workflowId: string; result: KillSwitchResult }> {
  const { role, password } = await h.owned.createRole({ prefix, ...opts });
  planted.push(password);
  const res = await h.post({
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
    severity: 'critical',
    location: { repository, file: 'config/.env' },
  });
  expect(res.status).toBe(202);
  const workflowId = res.json.workflowId as string;
  workflowIds.push(workflowId);
  return { workflowId, result: await h.client.workflow.getHandle(workflowId).result() };
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

/** Lets every delivery run finish what is queued (the queue is the truth: nothing pending for ours). */
const drained = () =>
  until('the queues to drain', async () => {
    const r = await h.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM killswitch_event_queue WHERE subscription_id = ANY($1) AND state = 'pending'`,
      [subscriptionIds],
    );
    return r.rows[0]!.n === 0 || undefined;
  });

beforeAll(async () => {
  [teamHook, ruleHook, teamFiltered] = await Promise.all([startReceiver(), startReceiver(), startReceiver()]);
  h = await startHarness({
    env: { OUTBOUND_ALLOW_HOSTS: '127.0.0.1', PAYMENTS_PD_KEY: TEAM_PD_KEY },
    config: {
      systems: [
        {
          name: ROUTED,
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['rtp_*'],
          hosts: ['127.0.0.1', 'db.internal'],
          team: 'payments',
          routing: {
            slackChannel: TEAM_CHANNEL,
            pagerdutyRoutingKeyEnv: 'PAYMENTS_PD_KEY',
            subscriptions: [TEAM_SUB],
          },
        },
        {
          name: OTHER,
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['rtl_*'],
          hosts: ['127.0.0.1', 'db.internal'],
        },
      ],
    },
  });
  // The team's hook: routed only (every run.* event of its systems, nothing of any other).
  await subscribe(TEAM_SUB, teamHook.url, { eventTypes: ['run.*'], routedOnly: true });
  // Only what a rule sends it; its own event types would be the outcomes.
  await subscribe(RULE_SUB, ruleHook.url, { eventTypes: ['run.contained'], routedOnly: true });
  // A global subscription that filters on the team the events carry.
  await subscribe(FILTERED_SUB, teamFiltered.url, {
    eventTypes: ['run.contained', 'run.escalated'],
    routedOnly: false,
    filters: { teams: ['payments'], owningSystems: [ROUTED, OTHER] },
  });
});

afterAll(async () => {
  if (ruleIds.length) await h?.db.query('DELETE FROM killswitch_rules WHERE id = ANY($1)', [ruleIds]);
  if (subscriptionIds.length)
    await h?.db.query('DELETE FROM killswitch_subscriptions WHERE id = ANY($1)', [subscriptionIds]);
  await Promise.all([teamHook, ruleHook, teamFiltered].map((r) => r?.close()));
  await h?.close();
});

describe('routing per owning system', () => {
  it("posts the routed system's run message in its team's channel and delivers its events to its team's subscription only", async () => {
    const routed = await leak('rtp', 'acme/payments-api');
    const other = await leak('rtl', 'acme/ledger');
    expect(routed.result.outcome).toBe('contained');
    expect(other.result.outcome).toBe('contained');

    await until('both run messages', () => {
      const texts = h.slack.messages();
      return texts.some(
        (m) => m.text.includes(routed.workflowId) || JSON.stringify(m.blocks).includes(routed.workflowId),
      ) &&
        texts.some(
          (m) => m.text.includes(other.workflowId) || JSON.stringify(m.blocks).includes(other.workflowId),
        )
        ? true
        : undefined;
    });
    const channelOf = (workflowId: string) =>
      h.slack.messages().find((m) => JSON.stringify(m).includes(workflowId))?.channel;
    expect(channelOf(routed.workflowId)).toBe(TEAM_CHANNEL);
    expect(channelOf(other.workflowId)).toBe('#security-incidents');

    await until(
      'the team hook has the routed run',
      () => teamHook.of(routed.workflowId).includes('run.contained') || undefined,
    );
    await drained();
    expect(teamHook.of(routed.workflowId)).toEqual(['run.started', 'run.contained']);
    expect(teamHook.of(other.workflowId)).toEqual([]);

    // The team is in every event of the routed system, so global filters can use it.
    const contained = teamHook
      .events()
      .find((e) => e.type === 'run.contained' && e.run.workflowId === routed.workflowId)!;
    expect(contained.data.owner).toEqual({ system: ROUTED, kind: 'postgres', team: 'payments' });
    expect(teamFiltered.of(routed.workflowId)).toEqual(['run.contained']);
    expect(teamFiltered.of(other.workflowId)).toEqual([]);
  });

  it("pages the routed system's escalation on its team's PagerDuty service, the others on the global one", async () => {
    const routed = await leak('rtp', 'acme/payments-api', { superuser: true });
    const other = await leak('rtl', 'acme/ledger', { superuser: true });
    expect(routed.result.outcome).toBe('escalated');
    expect(other.result.outcome).toBe('escalated');
    const triggers = (workflowId: string) =>
      h.pagerduty.events().filter((e) => e.dedup_key === workflowId && e.event_action === 'trigger');
    await until(
      'both pages',
      () => (triggers(routed.workflowId).length && triggers(other.workflowId).length) || undefined,
    );
    expect(triggers(routed.workflowId).map((e) => e.routing_key)).toEqual([TEAM_PD_KEY]);
    expect(triggers(other.workflowId).map((e) => e.routing_key)).toEqual([h.pagerduty.routingKey]);
    // Its Slack message is in the team's channel too, escalation and all.
    expect(h.slack.messages().find((m) => JSON.stringify(m).includes(routed.workflowId))?.channel).toBe(
      TEAM_CHANNEL,
    );
    await drained();
    expect(teamFiltered.of(routed.workflowId)).toEqual(['run.escalated']);
  });
});

describe('rules', () => {
  it('sends what a rule matches to its action whatever that subscription wants, counts executions, and stops when disabled', async () => {
    const escalations = await rule({
      trigger: ['run.escalated', 'credential.revoked'],
      conditions: { teams: ['payments'], repositories: ['ACME/pay*'], severities: ['critical', 'high'] },
      actions: [RULE_SUB],
    });
    const never = await rule({
      trigger: ['*'],
      conditions: { repositories: ['nobody/*'] },
      actions: [RULE_SUB],
    });
    // Test files share the database: even a catch-all names this file's systems.
    const disabled = await rule({
      trigger: ['*'],
      conditions: { owningSystems: [ROUTED, OTHER] },
      actions: [RULE_SUB],
      enabled: false,
    });

    const escalated = await leak('rtp', 'acme/payments-api', { superuser: true });
    const contained = await leak('rtp', 'acme/payments-api');
    const elsewhere = await leak('rtl', 'acme/ledger', { superuser: true });
    expect([escalated.result.outcome, contained.result.outcome, elsewhere.result.outcome]).toEqual([
      'escalated',
      'contained',
      'escalated',
    ]);
    await until(
      'the rule deliveries',
      () =>
        (ruleHook.of(escalated.workflowId).length && ruleHook.of(contained.workflowId).length) || undefined,
    );
    await drained();
    // The rule's trigger decides (the subscription itself only wants run.contained, and is routed only).
    expect(ruleHook.of(escalated.workflowId)).toEqual(['run.escalated']);
    expect(ruleHook.of(contained.workflowId)).toEqual(['credential.revoked']);
    // Another team's system: the conditions do not hold; the disabled catch-all rule sends nothing.
    expect(ruleHook.of(elsewhere.workflowId)).toEqual([]);

    const fired = await ruleRow(escalations);
    expect(Number(fired.execution_count)).toBe(2);
    expect(fired.last_executed_at).not.toBeNull();
    expect(fired.last_event_type).toBe('credential.revoked');
    expect(Number((await ruleRow(never)).execution_count)).toBe(0);
    expect(Number((await ruleRow(disabled)).execution_count)).toBe(0);

    // Switched on at runtime, the catch-all applies to the next run at once.
    await h.db.query('UPDATE killswitch_rules SET enabled = true WHERE id = $1', [disabled]);
    const later = await leak('rtl', 'acme/ledger');
    await until(
      'the catch-all delivery',
      () => ruleHook.of(later.workflowId).includes('run.contained') || undefined,
    );
    expect(Number((await ruleRow(disabled)).execution_count)).toBeGreaterThanOrEqual(6);
  });

  it('never lets a leaked value into a routed delivery, the Slack channel or the team page', async () => {
    const places = await secretPlaces(h, workflowIds, {
      'team hook': JSON.stringify(teamHook.events()),
      'rule hook': JSON.stringify(ruleHook.events()),
      'filtered hook': JSON.stringify(teamFiltered.events()),
      'stored events': JSON.stringify((await h.db.query('SELECT envelope FROM killswitch_events')).rows),
    });
    expect(planted.length).toBeGreaterThan(5);
    expectNowhere(places, planted);
  });
});

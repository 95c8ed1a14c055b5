/**
 * Routing per owning system and rule matching, as pure code: the inventory's `team`/`routing`
 * fields (checked with the field named), the route table, which subscriptions an event goes to
 * (broadcast, routed, rule actions), and every rule condition.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { KillSwitchEvent } from '../../contracts/events';
import { targetsOf } from '../../activities/outbound';
import type { OutboundSubscription } from '../../activities/outbound/types';
import { parseInventory, resolveInventoryEnv } from '../../lib/inventory';
import { routesOf } from '../../lib/routing';
import { ruleMatches, ruleSchema } from '../../lib/rules';
import { createPgliteDb, migrate } from '../../lib/db';
import type { RuleRow } from '../../store/outbound';
import { checkRoutedSubscriptions } from '../../store/subscriptions';

const system = (extra: Record<string, unknown>) => ({
  name: 'pay-db',
  kind: 'postgres',
  adminUrlEnv: 'PAY_DB_URL',
  roles: ['app_*'],
  ...extra,
});

const problems = (doc: unknown) => {
  try {
    parseInventory(doc);
    return '';
  } catch (err) {
    return (err as Error).message;
  }
};

function event(
  over: Partial<KillSwitchEvent['data']> = {},
  type: KillSwitchEvent['type'] = 'run.escalated',
): KillSwitchEvent {
  return {
    id: `evt_${Math.random()}`,
    type,
    version: 1,
    occurredAt: new Date().toISOString(),
    source: 'secret-kill-switch',
    run: { workflowId: 'killswitch-x' },
    summary: 's',
    data: {
      credential: { type: 'postgres_password', ref: { role: 'app_1' } },
      detection: {
        id: 'd1',
        source: 'github',
        severity: 'critical',
        location: { repository: 'Acme/Payments-API' },
      },
      owner: { system: 'pay-db', kind: 'postgres', team: 'payments' },
      outcome: 'escalated',
      ...over,
    },
  };
}

const sub = (name: string, over: Partial<OutboundSubscription> = {}): OutboundSubscription => ({
  id: `id-${name}`,
  name,
  format: 'json',
  url: 'https://hooks.example.com/x',
  eventTypes: ['*'],
  filters: {},
  options: {},
  retryCount: 3,
  timeoutMs: 5000,
  failureThreshold: 10,
  isActive: true,
  ...over,
});

describe('inventory routing fields', () => {
  it('accepts a team, a Slack channel (id or name), a PagerDuty key variable and subscriptions', () => {
    const inv = parseInventory({
      systems: [
        system({
          team: 'payments',
          routing: {
            slackChannel: 'C0PAYMENTS1',
            pagerdutyRoutingKeyEnv: 'PAY_PD_KEY',
            subscriptions: ['pay-hook'],
          },
        }),
        system({ name: 'other', routing: { slackChannel: '#pay-sec' } }),
      ],
    });
    expect(inv.systems[0]).toMatchObject({ team: 'payments', routing: { slackChannel: 'C0PAYMENTS1' } });
  });

  it('names the bad field', () => {
    expect(problems({ systems: [system({ routing: { slackChannel: 'Pay Sec' } })] })).toMatch(
      /systems\[0\]\.routing\.slackChannel: a Slack channel ID/,
    );
    expect(problems({ systems: [system({ routing: { pagerdutyRoutingKeyEnv: 'pay-key' } })] })).toMatch(
      /systems\[0\]\.routing\.pagerdutyRoutingKeyEnv/,
    );
    expect(problems({ systems: [system({ routing: { subscriptions: ['Bad Name'] } })] })).toMatch(
      /systems\[0\]\.routing\.subscriptions\[0\]/,
    );
    expect(problems({ systems: [system({ routing: { channel: '#x' } })] })).toMatch(/systems\[0\]\.routing/);
    expect(problems({ systems: [system({ team: 'a\u0007b' })] })).toMatch(/systems\[0\]\.team/);
  });

  it('requires the PagerDuty key variable to be set and shaped like an integration key', () => {
    const inv = parseInventory({ systems: [system({ routing: { pagerdutyRoutingKeyEnv: 'PAY_PD_KEY' } })] });
    const env = { PAY_DB_URL: 'postgres://a@b/c' };
    expect(() => resolveInventoryEnv(inv, env)).toThrow(
      /systems\[0\]\.routing\.pagerdutyRoutingKeyEnv: environment variable PAY_PD_KEY is not set/,
    );
    expect(() => resolveInventoryEnv(inv, { ...env, PAY_PD_KEY: 'short' })).toThrow(
      /PAY_PD_KEY must be a PagerDuty integration key/,
    );
    const key = 'a'.repeat(32);
    const routes = routesOf(inv.systems, resolveInventoryEnv(inv, { ...env, PAY_PD_KEY: key }));
    expect(routes.get('pay-db')).toEqual({ pagerdutyRoutingKey: key, subscriptions: [] });
  });

  it('leaves systems without a team or routing out of the route table', () => {
    const inv = parseInventory({ systems: [system({}), system({ name: 'b', team: 'core' })] });
    const routes = routesOf(inv.systems, {});
    expect(routes.has('pay-db')).toBe(false);
    expect(routes.get('b')).toEqual({ team: 'core', subscriptions: [] });
  });
});

describe('routing at start', () => {
  it('stops the start naming each routed subscription that does not exist', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-routing-'));
    const db = await createPgliteDb(dir);
    try {
      await migrate(db);
      await db.query(
        `INSERT INTO killswitch_subscriptions (id, name, format, url, event_types) VALUES ('s1', 'pay-hook', 'json', 'https://a.example/h', '{*}')`,
      );
      await expect(
        checkRoutedSubscriptions(db, [{ routing: { subscriptions: ['pay-hook'] } }, {}]),
      ).resolves.toBeUndefined();
      await expect(
        checkRoutedSubscriptions(db, [{}, { routing: { subscriptions: ['pay-hook', 'pay-jira'] } }]),
      ).rejects.toThrow(/systems\[1\]\.routing\.subscriptions\[1\]: no subscription named pay-jira/);
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('who receives an event', () => {
  const broadcast = sub('all');
  const filtered = sub('other-team', { filters: { teams: ['core'] } });
  const team = sub('pay-hook', { routedOnly: true, eventTypes: ['run.*'] });
  const teamOutcomes = sub('pay-outcomes', { routedOnly: true, eventTypes: ['run.contained'] });
  const ruleTarget = sub('jira', { routedOnly: true, eventTypes: ['run.contained'] });
  const subs = [broadcast, filtered, team, teamOutcomes, ruleTarget];
  const routes = new Map([
    ['pay-db', { team: 'payments', subscriptions: ['pay-hook', 'pay-outcomes', 'gone'] }],
  ]);
  const rule = (over: Partial<RuleRow> = {}): RuleRow => ({
    id: 'r1',
    name: 'r1',
    trigger: ['run.escalated'],
    conditions: { teams: ['payments'] },
    actions: ['jira', 'gone'],
    ...over,
  });

  it('broadcasts to subscriptions that want it, routes to the system’s own (their event types apply), adds rule actions', () => {
    const t = targetsOf(subs, [rule()], routes, event());
    expect(t.subscriptionIds.sort()).toEqual(['id-all', 'id-jira', 'id-pay-hook']);
    expect(t.ruleIds).toEqual(['r1']);
  });

  it('gives a routed-only subscription nothing of another system, and a rule that does not fire adds nothing', () => {
    const t = targetsOf(
      subs,
      [rule()],
      routes,
      event({ owner: { system: 'core-db', kind: 'postgres', team: 'core' } }),
    );
    expect(t.subscriptionIds.sort()).toEqual(['id-all', 'id-other-team']);
    expect(t.ruleIds).toEqual([]);
  });

  it('without routes or rules, only broadcast subscriptions', () => {
    expect(targetsOf(subs, [], undefined, event()).subscriptionIds).toEqual(['id-all']);
  });
});

describe('rule conditions', () => {
  const r = (conditions: Record<string, unknown>, trigger = ['run.*']) =>
    ruleSchema.parse({ name: 'x', trigger, conditions, actions: [{ subscription: 'a' }] });

  it('matches the trigger by type, prefix or *', () => {
    expect(ruleMatches(r({}, ['run.escalated']), event())).toBe(true);
    expect(ruleMatches(r({}, ['run.*']), event())).toBe(true);
    expect(ruleMatches(r({}, ['*']), event())).toBe(true);
    expect(ruleMatches(r({}, ['run.contained']), event())).toBe(false);
  });

  it('requires every set condition, any of its values; an event without the field fails it', () => {
    expect(ruleMatches(r({ severities: ['critical'] }), event())).toBe(true);
    expect(ruleMatches(r({ severities: ['low', 'medium'] }), event())).toBe(false);
    expect(ruleMatches(r({ owningSystems: ['pay-db'], teams: ['payments'] }), event())).toBe(true);
    expect(ruleMatches(r({ owningSystems: ['pay-db'], teams: ['core'] }), event())).toBe(false);
    expect(ruleMatches(r({ teams: ['payments'] }), event({ owner: null }))).toBe(false);
    expect(ruleMatches(r({ credentialTypes: ['postgres_password'], sources: ['github'] }), event())).toBe(
      true,
    );
    expect(ruleMatches(r({ sources: ['gitleaks'] }), event())).toBe(false);
    expect(ruleMatches(r({ outcomes: ['escalated'] }), event())).toBe(true);
    // Unlike a subscription filter, an outcome condition does not let events without one through.
    expect(ruleMatches(r({ outcomes: ['escalated'] }), event({ outcome: undefined }, 'run.started'))).toBe(
      false,
    );
  });

  it('matches repositories by case-insensitive glob', () => {
    expect(ruleMatches(r({ repositories: ['acme/payments-*'] }), event())).toBe(true);
    expect(ruleMatches(r({ repositories: ['ACME/PAY?ENTS-API'] }), event())).toBe(true);
    expect(ruleMatches(r({ repositories: ['acme/ledger', 'other/*'] }), event())).toBe(false);
    expect(ruleMatches(r({ repositories: ['acme/*.api'] }), event())).toBe(false); // `.` is literal
    const noRepo = event({ detection: { id: 'd', source: 'github', severity: 'critical', location: {} } });
    expect(ruleMatches(r({ repositories: ['*'] }), noRepo)).toBe(false);
  });

  it('refuses more than three actions, unknown triggers and unknown conditions', () => {
    const bad = (doc: Record<string, unknown>) =>
      ruleSchema
        .safeParse({ name: 'x', trigger: ['run.*'], actions: [{ subscription: 'a' }], ...doc })
        .error?.issues.map((i) => i.path.join('.'));
    expect(bad({ actions: ['a', 'b', 'c', 'd'].map((s) => ({ subscription: s })) })).toEqual(['actions']);
    expect(bad({ trigger: ['run.exploded'] })).toEqual(['trigger.0']);
    expect(bad({ conditions: { color: ['red'] } })).toEqual(['conditions']);
    expect(bad({ actions: [{ subscription: 'a' }, { subscription: 'a' }] })).toEqual([
      'actions.1.subscription',
    ]);
  });
});

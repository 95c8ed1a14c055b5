/**
 * The activities as the worker builds them, for activity-level tests that reach real PostgreSQL and
 * the Slack / PagerDuty fakes: no inventory, no providers, nothing dispatched upstream.
 */
import { createActivities, type ActivityDeps } from '../../activities';
import { createPagerDutySender } from '../../activities/pagerduty';
import { createProviderRegistry } from '../../activities/providers';
import { createSlackSender } from '../../activities/slack';
import type { Db } from '../../lib/db';
import { createEvidenceStore } from '../../store/evidence';
import { parseInventory } from '../../lib/inventory';
import { createServerKeys, newServerKey } from '../../lib/keys';

export function notificationActivities(opts: {
  db: Db;
  slack: { token: string; apiUrl: string };
  channel: string;
  pagerDutyUrl: string;
  slackDigest?: ActivityDeps['slackDigest'];
  routes?: ActivityDeps['routes'];
  /** PAGERDUTY_ROUTING_KEY (default: none, events are logged). */
  pagerDutyRoutingKey?: string;
}) {
  const keys = createServerKeys(newServerKey());
  return createActivities({
    inventory: parseInventory({}),
    keys,
    dispatcher: { dispatch: () => Promise.reject(new Error('not used here')) },
    upstream: {
      enrich: () => Promise.reject(new Error('not used here')),
      closeLoop: () => Promise.resolve(false),
    },
    providers: createProviderRegistry(parseInventory({}), {}),
    db: opts.db,
    evidence: createEvidenceStore(opts.db, keys, 1),
    slack: createSlackSender({
      token: opts.slack.token,
      channel: opts.channel,
      apiUrl: opts.slack.apiUrl,
      log: () => undefined,
    }),
    pagerduty: createPagerDutySender({
      routingKey: opts.pagerDutyRoutingKey,
      eventsUrl: opts.pagerDutyUrl,
      log: () => undefined,
    }),
    temporalUi: { uiUrl: 'http://localhost:8233', namespace: 'default' },
    ...(opts.slackDigest ? { slackDigest: opts.slackDigest } : {}),
    ...(opts.routes ? { routes: opts.routes } : {}),
  });
}

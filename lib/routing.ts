/**
 * Routing per owning system: where a system's runs are told when its inventory entry says
 * (`team`, `routing.slackChannel`, `routing.pagerdutyRoutingKeyEnv`, `routing.subscriptions`),
 * the global SLACK_CHANNEL and PAGERDUTY_ROUTING_KEY otherwise. Resolved once at start from the
 * checked inventory and environment (resolveInventoryEnv has verified every named variable).
 */
import type { RoutingConfig } from './systems/common';

export interface Route {
  team?: string;
  /** The Slack channel of the system's run messages and digests. */
  slackChannel?: string;
  /** The PagerDuty integration key its escalations page (a secret: never logged or returned). */
  pagerdutyRoutingKey?: string;
  /** Subscriptions (by name) that receive its runs' events. */
  subscriptions: readonly string[];
}

export type RouteTable = ReadonlyMap<string, Route>;

export function routesOf(
  systems: ReadonlyArray<{ name: string; team?: string | undefined; routing?: RoutingConfig | undefined }>,
  env: Readonly<Record<string, string | undefined>>,
): RouteTable {
  const out = new Map<string, Route>();
  for (const s of systems) {
    const r = s.routing;
    if (!s.team && !r) continue;
    const key = r?.pagerdutyRoutingKeyEnv ? env[r.pagerdutyRoutingKeyEnv] : undefined;
    out.set(s.name, {
      ...(s.team ? { team: s.team } : {}),
      ...(r?.slackChannel ? { slackChannel: r.slackChannel } : {}),
      ...(key ? { pagerdutyRoutingKey: key } : {}),
      subscriptions: r?.subscriptions ?? [],
    });
  }
  return out;
}

/** Subscription name -> the systems whose routing names it (the admin API refuses to delete or rename those). */
export function routedBy(
  systems: ReadonlyArray<{ name: string; routing?: RoutingConfig | undefined }>,
): ReadonlyMap<string, readonly string[]> {
  const out = new Map<string, string[]>();
  for (const s of systems)
    for (const sub of s.routing?.subscriptions ?? []) out.set(sub, [...(out.get(sub) ?? []), s.name]);
  return out;
}

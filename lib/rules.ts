/**
 * Outbound rules ("when this happens to that, tell them"): a trigger (event types), conditions on
 * the event (severity, repository glob, owning system, team, credential type, source, outcome) and
 * up to three actions, each a subscription by name. A rule sends every event it matches to its
 * subscriptions, whatever those subscriptions' own event types and filters say (a subscription with
 * `routedOnly` receives nothing else). Rules live in killswitch_rules (the admin API) and in the
 * inventory file (`rules:`, config-as-code); each can be enabled or disabled at runtime and counts
 * its executions. Pure code: the schema and the matching.
 */
import { z } from 'zod';
import { CREDENTIAL_TYPES, SEVERITIES } from '../contracts/detection';
import { eventTypeMatches, isKnownEventPattern, type KillSwitchEvent } from '../contracts/events';
import { OUTCOMES } from '../contracts/outcomes';
import { subscriptionName } from './subscriptions';
import { glob } from './systems/common';

export const ruleName = subscriptionName;

const text = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

const eventPattern = z
  .string()
  .max(100)
  .refine(
    isKnownEventPattern,
    'not a known event type: *, a type of GET /api/events/types, or a prefix such as run.*',
  );

/** Every condition that is set must hold (any of its values); an event without the field fails it. */
export const ruleConditionsSchema = z
  .object({
    severities: z.array(z.enum(SEVERITIES)).min(1).max(10).optional(),
    /** Globs on the repository (`acme/payments-*`, `*`/`?` wildcards, case-insensitive). */
    repositories: z.array(text(300)).min(1).max(50).optional(),
    owningSystems: z.array(text(200)).min(1).max(100).optional(),
    teams: z.array(text(200)).min(1).max(100).optional(),
    credentialTypes: z.array(z.enum(CREDENTIAL_TYPES)).min(1).max(50).optional(),
    sources: z.array(text(200)).min(1).max(100).optional(),
    outcomes: z.array(z.enum(OUTCOMES)).min(1).max(20).optional(),
  })
  .strict();
export type RuleConditions = z.infer<typeof ruleConditionsSchema>;

export const RULE_MAX_ACTIONS = 3;

export const ruleActionSchema = z.object({ subscription: subscriptionName }).strict();

/** A rule as the admin API's body and the inventory's `rules:` entry. */
export const ruleSchema = z
  .object({
    name: ruleName,
    description: text(500).optional(),
    enabled: z.boolean().default(true),
    /** The event types (or `*`, or prefixes such as `run.*`) that trigger the rule. */
    trigger: z.array(eventPattern).min(1).max(50),
    conditions: ruleConditionsSchema.default({}),
    actions: z
      .array(ruleActionSchema)
      .min(1)
      .max(RULE_MAX_ACTIONS, `at most ${RULE_MAX_ACTIONS} actions`)
      .superRefine((actions, ctx) => {
        const seen = new Set<string>();
        actions.forEach((a, i) => {
          if (seen.has(a.subscription))
            ctx.addIssue({
              code: 'custom',
              path: [i, 'subscription'],
              message: `names ${a.subscription} twice`,
            });
          seen.add(a.subscription);
        });
      }),
  })
  .strict();
export type RuleSpec = z.output<typeof ruleSchema>;

/** A rule as the APIs show it. */
export interface RuleView extends RuleSpec {
  id: string;
  origin: 'api' | 'config';
  /** How many events the rule matched (each event counted once, however often it was emitted). */
  executionCount: number;
  lastExecutedAt: string | null;
  lastEventType: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What a request may send again (PATCH merges into this). */
export function editableRule(v: RuleView): RuleSpec {
  return {
    name: v.name,
    ...(v.description !== undefined ? { description: v.description } : {}),
    enabled: v.enabled,
    trigger: v.trigger,
    conditions: v.conditions,
    actions: v.actions,
  };
}

const globs = new Map<string, RegExp>();
function globOf(pattern: string): RegExp {
  let re = globs.get(pattern);
  if (!re) {
    re = new RegExp(glob(pattern.toLowerCase()).source);
    if (globs.size > 10_000) globs.clear();
    globs.set(pattern, re);
  }
  return re;
}

/** Whether a rule (enabled or not: the caller decides) fires for an event. */
export function ruleMatches(rule: Pick<RuleSpec, 'trigger' | 'conditions'>, e: KillSwitchEvent): boolean {
  if (!rule.trigger.some((p) => eventTypeMatches(p, e.type))) return false;
  const c = rule.conditions;
  const any = (list: readonly string[] | undefined, value: string | undefined) =>
    list === undefined || (value !== undefined && list.includes(value));
  const repo = e.data.detection?.location.repository?.toLowerCase();
  return (
    any(c.severities, e.data.detection?.severity) &&
    (c.repositories === undefined ||
      (repo !== undefined && c.repositories.some((g) => globOf(g).test(repo)))) &&
    any(c.owningSystems, e.data.owner?.system) &&
    any(c.teams, e.data.owner?.team) &&
    any(c.credentialTypes, e.data.credential?.type) &&
    any(c.sources, e.data.detection?.source) &&
    any(c.outcomes, e.data.outcome)
  );
}

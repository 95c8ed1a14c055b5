/**
 * What every owning system in the inventory has in common, whatever its kind: how it is killed
 * (emergency, graceful, quarantine), where a replacement goes (the secret sink), which user
 * sessions die with the credential, and how fast the kill switch may act on it.
 * Pure schemas and types: the workflow imports types from here, the ingress and worker the schemas.
 */
import { z } from 'zod';

export const systemName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, - and _, at most 63 characters');

export const envVarName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name (A-Z, 0-9, _)');

/** A Temporal duration string: 500ms, 30s, 10m, 2h, 1d. */
export const duration = z.string().regex(/^\d{1,6}(ms|s|m|h|d)$/, 'a duration such as 30s, 10m or 2h');

/** Milliseconds of a duration string; the one implementation lives with the workflow's pure helpers. */
export { durationToMs as durationMs } from '../../contracts/durations';

/** Where an AWS API lives and which credentials to use; every field optional (the SDK's default chain). */
export const awsConnectionSchema = z
  .object({
    region: z
      .string()
      .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'an AWS region such as us-east-1')
      .default('us-east-1'),
    /** Another endpoint (an emulator, a VPC endpoint, a partition). */
    endpointUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** Env vars holding static credentials; unset means the SDK's default provider chain. */
    accessKeyIdEnv: envVarName.optional(),
    secretAccessKeyEnv: envVarName.optional(),
  })
  .strict()
  .refine((a) => !a.accessKeyIdEnv === !a.secretAccessKeyEnv, {
    message: 'accessKeyIdEnv and secretAccessKeyEnv go together',
    path: ['secretAccessKeyEnv'],
  });
export type AwsConnection = z.infer<typeof awsConnectionSchema>;

/** Where a replacement value goes. `none`: a pure kill, nobody receives a new value. */
export const sinkSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('none') }).strict(),
  z
    .object({
      kind: z.literal('aws_secrets_manager'),
      /** Name or ARN of the secret the applications read. */
      secretId: z.string().min(1).max(2048),
      aws: awsConnectionSchema.default(awsConnectionSchema.parse({})),
    })
    .strict(),
]);
export type SinkConfig = z.infer<typeof sinkSchema>;

/** Users whose application sessions die with the credential, and where those sessions live. */
export const sessionTargetSchema = z.discriminatedUnion('kind', [
  z
    .object({
      /** An Express app's sessions in Redis, as connect-redis stores them (`<prefix><sid>` → JSON). */
      kind: z.literal('connect_redis'),
      urlEnv: envVarName,
      prefix: z.string().max(100).default('sess:'),
      /** Dotted path in the session JSON naming its user, e.g. `passport.user` or `userId`. */
      userField: z
        .string()
        .regex(/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/, 'a dotted path such as passport.user')
        .default('userId'),
      users: z.array(z.string().min(1).max(256)).min(1),
    })
    .strict(),
  z
    .object({
      /** An Express app's sessions in PostgreSQL, as connect-pg-simple stores them (sid, sess json, expire). */
      kind: z.literal('connect_pg_simple'),
      urlEnv: envVarName,
      schema: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
        .default('public'),
      table: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
        .default('session'),
      userField: z
        .string()
        .regex(/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/, 'a dotted path such as passport.user')
        .default('userId'),
      users: z.array(z.string().min(1).max(256)).min(1),
    })
    .strict(),
  z
    .object({
      /** Okta: clear every session of each user (DELETE /api/v1/users/{id}/sessions). */
      kind: z.literal('okta'),
      /** Your org URL, e.g. https://acme.okta.com. */
      baseUrl: z.url({ protocol: /^https?$/ }),
      /** Env var holding an API token (SSWS). */
      tokenEnv: envVarName,
      /** Also revoke the users' OAuth tokens (oauthTokens=true). */
      revokeOAuthTokens: z.boolean().default(true),
      users: z.array(z.string().min(1).max(256)).min(1),
    })
    .strict(),
]);
export type SessionTargetConfig = z.infer<typeof sessionTargetSchema>;

export const killModeSchema = z.enum(['emergency', 'graceful']);
export type KillMode = z.infer<typeof killModeSchema>;

/**
 * Where a system's runs are told, instead of the global defaults (SLACK_CHANNEL,
 * PAGERDUTY_ROUTING_KEY): its team's Slack channel, its team's PagerDuty service, and outbound
 * subscriptions that receive its runs' events (their own event types and filters still apply; a
 * `routedOnly` subscription receives nothing else).
 */
export const routingSchema = z
  .object({
    /** A channel ID (C0123ABCD; recommended: stable across renames) or a channel name (#sec-payments). */
    slackChannel: z
      .string()
      .regex(
        /^(#?[a-z0-9][a-z0-9._-]{0,79}|[CG][A-Z0-9]{8,20})$/,
        'a Slack channel ID such as C0123ABCD or a channel name such as #sec-payments',
      )
      .optional(),
    /** The env var holding the team's PagerDuty Events API v2 integration (routing) key. */
    pagerdutyRoutingKeyEnv: envVarName.optional(),
    /** Outbound subscriptions (by name) that receive the events of this system's runs. */
    subscriptions: z
      .array(
        z
          .string()
          .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a subscription name: lower-case letters, digits, - and _'),
      )
      .max(20)
      .default([]),
  })
  .strict();
export type RoutingConfig = z.infer<typeof routingSchema>;

/** Fields every system kind accepts. Spread into each kind's object schema. */
export const commonSystemFields = {
  name: systemName,
  description: z.string().max(500).optional(),
  /** The team that owns the system: carried by its runs' events (filters and rules match on it). */
  team: z
    .string()
    .trim()
    .min(1)
    .max(200)
    .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters')
    .optional(),
  routing: routingSchema.optional(),
  /**
   * emergency: kill the leaked credential now, then issue the replacement.
   * graceful: issue and deliver the replacement first, kill the leaked one after `overlap`.
   */
  mode: killModeSchema.default('emergency'),
  /** graceful only: how long both values stay valid (a durable timer in the run). */
  overlap: duration.default('10m'),
  /** Reversible quarantine instead of deletion, where the kind supports it (blast radius unknown). */
  quarantine: z.boolean().default(false),
  sink: sinkSchema.default({ kind: 'none' }),
  sessions: z.array(sessionTargetSchema).max(20).default([]),
  /** Per-system pacing of the provider's calls, per worker process. */
  limits: z
    .object({
      concurrency: z.number().int().min(1).max(100).default(4),
      perMinute: z.number().int().min(1).max(100_000).default(120),
    })
    .strict()
    .default({ concurrency: 4, perMinute: 120 }),
  /**
   * Mass-leak breaker: more than `threshold` detections for this system within `window` pauses
   * automatic rotation, pages, and holds the runs for a human decision.
   */
  breaker: z
    .object({
      threshold: z.number().int().min(1).max(100_000).default(25),
      window: duration.default('5m'),
      /** How long a held run waits for a human before it escalates. */
      holdTimeout: duration.default('24h'),
    })
    .strict()
    .default({ threshold: 25, window: '5m', holdTimeout: '24h' }),
};

/** The env vars a system needs, each with the config path that names it and a check of its shape. */
export interface EnvRequirement {
  path: string;
  name: string;
  /** Returns a problem, or undefined when the value is acceptable. */
  check?: (value: string) => string | undefined;
}

export function glob(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/** Env requirements common to every kind: the sink's and the session targets' credentials. */
export function commonEnv(
  s: { sink: SinkConfig; sessions: SessionTargetConfig[]; routing?: RoutingConfig | undefined },
  at: string,
): EnvRequirement[] {
  const out: EnvRequirement[] = [];
  if (s.routing?.pagerdutyRoutingKeyEnv)
    out.push({
      path: `${at}.routing.pagerdutyRoutingKeyEnv`,
      name: s.routing.pagerdutyRoutingKeyEnv,
      check: (v) =>
        /^[A-Za-z0-9]{32}$/.test(v)
          ? undefined
          : 'must be a PagerDuty integration key (32 letters and digits)',
    });
  if (s.sink.kind === 'aws_secrets_manager' && s.sink.aws.accessKeyIdEnv) {
    out.push({ path: `${at}.sink.aws.accessKeyIdEnv`, name: s.sink.aws.accessKeyIdEnv });
    out.push({ path: `${at}.sink.aws.secretAccessKeyEnv`, name: s.sink.aws.secretAccessKeyEnv! });
  }
  s.sessions.forEach((t, i) => {
    if (t.kind === 'okta') out.push({ path: `${at}.sessions[${i}].tokenEnv`, name: t.tokenEnv });
    else
      out.push({
        path: `${at}.sessions[${i}].urlEnv`,
        name: t.urlEnv,
        check: (v) =>
          t.kind === 'connect_redis'
            ? /^rediss?:\/\//.test(v)
              ? undefined
              : 'must be a redis:// URL'
            : /^postgres(ql)?:\/\//.test(v)
              ? undefined
              : 'must be a postgres:// connection string',
      });
  });
  return out;
}

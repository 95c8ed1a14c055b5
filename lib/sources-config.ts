/**
 * The `sources:` and `policy:` sections of the config file (the inventory file). Secrets are never
 * in the file: each source names the env vars that hold them.
 */
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import { CREDENTIAL_TYPES, SEVERITIES } from '../contracts/detection';

/** The generic source's secrets variable unless `sources.generic.secretsEnv` names another. */
export const DEFAULT_GENERIC_SECRETS_ENV = 'GENERIC_WEBHOOK_SECRETS';

export const envVarName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name (A-Z, 0-9, _)');

export const byteSize = z.union([
  z.number().int().min(1024),
  z
    .string()
    .regex(/^(\d+)\s*(b|kb|kib|mb|mib)?$/i, 'expected a size such as 1mb, 512kb or 1048576')
    .transform((v) => {
      const m = /^(\d+)\s*(b|kb|kib|mb|mib)?$/i.exec(v.trim())!;
      const unit = (m[2] ?? 'b').toLowerCase();
      return Number(m[1]) * (unit.startsWith('m') ? 1048576 : unit.startsWith('k') ? 1024 : 1);
    }),
]);

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'expected a duration such as 30s, 15m or 1h');

/** Settings every source shares (the full shape, as the ingress validates a section). */
export const sourceCommon = {
  enabled: z.boolean().default(true),
  /** The whole path runs; the provider is asked what it would do; nothing changes. */
  dryRun: z.boolean().default(false),
  bodyLimit: byteSize.optional(),
  rateLimit: z
    .object({ perMinute: z.number().int().min(1).max(1_000_000) })
    .strict()
    .default({ perMinute: 600 }),
};

/** Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), several secrets at once. */
export const standardWebhooksSourceSchema = z.object({ ...sourceCommon, secretsEnv: envVarName }).strict();

/** The name a sender of `sources.custom` is known by: its route and the source its detections carry. */
export const customSourceName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,40}$/, 'lower-case letters, digits and -');

/**
 * The parts of `sources.github` the worker reads too (its REST client fetches alerts and resolves
 * them): the ingress's schema for the section spreads this shape, so both read the same defaults.
 */
export const githubApiConfigSchema = z.object({
  /** Token that may read (and resolve) secret scanning alerts: fine-grained PAT or GitHub App token. */
  apiTokenEnv: envVarName,
  /** https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
  apiUrl: z.url().default('https://api.github.com'),
  /** Resolve the alert as `revoked` with a comment linking the run once the credential is dead. */
  resolveAlerts: z.boolean().default(true),
});
export type GitHubApiConfig = z.infer<typeof githubApiConfigSchema>;

/** The parts of `sources.gitguardian` the worker reads too (it resolves incidents after a kill). */
export const gitguardianApiConfigSchema = z.object({
  /** API token to resolve incidents after a kill (optional). */
  apiTokenEnv: envVarName.optional(),
  apiUrl: z.url().default('https://api.gitguardian.com'),
});
export type GitGuardianApiConfig = z.infer<typeof gitguardianApiConfigSchema>;

/**
 * What every process checks of a section without knowing the source: the shared settings, and that
 * each `…Env` field (at any depth) names an environment variable, since secrets are never in the
 * file. The rest of the section passes through as written (bodyLimit included, so the ingress
 * parses it once): each source's own schema (api/sources/<name>.ts) validates it when the ingress
 * builds, and the worker's scanner clients validate the parts they read.
 */
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
function envFieldIssues(value: unknown, path: PropertyKey[], ctx: z.RefinementCtx): void {
  if (Array.isArray(value)) value.forEach((v, i) => envFieldIssues(v, [...path, i], ctx));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (/Env$/.test(k) && typeof v === 'string' && !ENV_NAME.test(v))
        ctx.addIssue({
          code: 'custom',
          path: [...path, k],
          message: 'must be an environment variable name (A-Z, 0-9, _)',
        });
      else envFieldIssues(v, [...path, k], ctx);
    }
  }
}
const sectionBase = {
  enabled: sourceCommon.enabled,
  dryRun: sourceCommon.dryRun,
  rateLimit: sourceCommon.rateLimit,
};
const anySection = z
  .object(sectionBase)
  .catchall(z.unknown())
  .superRefine((v, ctx) => envFieldIssues(v, [], ctx));

export const sourcesSchema = z
  .object({
    generic: z
      .object({ ...sectionBase, secretsEnv: envVarName.default(DEFAULT_GENERIC_SECRETS_ENV) })
      .catchall(z.unknown())
      .superRefine((v, ctx) => envFieldIssues(v, [], ctx))
      .default({
        enabled: true,
        dryRun: false,
        rateLimit: { perMinute: 600 },
        secretsEnv: DEFAULT_GENERIC_SECRETS_ENV,
      }),
    custom: z
      .array(
        z
          .object({ ...sectionBase, name: customSourceName })
          .catchall(z.unknown())
          .superRefine((v, ctx) => envFieldIssues(v, [], ctx)),
      )
      .default([]),
  })
  .catchall(anySection);

export const POLICY_ACTIONS = ['rotate', 'require_approval', 'notify_only', 'ignore'] as const;
export type PolicyAction = (typeof POLICY_ACTIONS)[number];

const oneOrMany = <T extends z.ZodType>(t: T) =>
  z.union([t, z.array(t).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]) as z.infer<T>[]);

export const policyRuleSchema = z
  .object({
    name: z.string().min(1).max(100).optional(),
    match: z
      .object({
        source: oneOrMany(z.string().min(1)),
        credentialType: oneOrMany(z.enum(CREDENTIAL_TYPES)),
        owningSystem: oneOrMany(z.string().min(1)),
        /** `none` matches a detection no system owns. */
        severity: oneOrMany(z.enum(SEVERITIES)),
        /** true: the scanner verified the credential is live; false: it did not (or could not). */
        verified: z.boolean(),
        /** Globs on owner/repo, e.g. `acme/sandbox-*`. */
        repository: oneOrMany(z.string().min(1)),
        publiclyLeaked: z.boolean(),
      })
      .partial()
      .strict()
      .default({}),
    action: z.enum(POLICY_ACTIONS),
    /** require_approval: how long to wait for a human. */
    approvalTimeout: duration.default('30m'),
    /**
     * require_approval: what happens when nobody answers in time: escalate to PagerDuty, rotate
     * anyway, or a reversible quarantine (where the owner supports one; otherwise escalate).
     */
    onTimeout: z.enum(['escalate', 'rotate', 'quarantine']).default('escalate'),
  })
  .strict();

export const policySchema = z
  .object({
    /** Global dry run: every source, every system. */
    dryRun: z.boolean().default(false),
    /** Action when no rule matches. */
    default: z.enum(POLICY_ACTIONS).default('rotate'),
    rules: z.array(policyRuleSchema).default([]),
    /**
     * Who may approve, deny, retry or mark a false positive: Slack user ids (U…/W…) or e-mail
     * addresses. Empty: anyone who can reach the controls (Slack channel members, admin API).
     */
    approvers: z
      .array(
        z
          .string()
          .regex(/^([UW][A-Z0-9]{2,20}|[^\s@]+@[^\s@]+)$/, 'a Slack user id (U…) or an e-mail address'),
      )
      .default([]),
    /** After an escalation, how long the run waits for a human to retry it (0s: it ends at once). */
    retryWindow: duration.default('24h'),
  })
  .strict();

/**
 * The `sources:` section as every process sees it (lib/inventory.ts): `generic` and `custom` with
 * their shared settings, any other section by its shared settings; the ingress validates each
 * section with its source's own schema (api/sources/registry.ts).
 */
export type SourcesConfig = z.infer<typeof sourcesSchema>;
export type SourceSection = z.infer<typeof anySection>;
export type PolicyConfig = z.infer<typeof policySchema>;
export type PolicyRule = z.infer<typeof policyRuleSchema>;
export type StandardWebhooksSourceConfig = z.infer<typeof standardWebhooksSourceSchema>;

/**
 * A policy rule that names a source no detection can come from (a typo: `gitleak`) would never
 * match, silently: refused, naming the field. `known`: every name a detection may carry.
 */
export function policySourceProblems(policy: PolicyConfig, known: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  policy.rules.forEach((r, i) =>
    r.match.source?.forEach((name, j) => {
      if (!known.has(name))
        problems.push(
          `  policy.rules[${i}].match.source[${j}]: no such source (the built-in ones, or a sources.custom name)`,
        );
    }),
  );
  return problems;
}

/** The secrets a variable holds: comma- or space-separated, several at once during a rotation. */
export function secretList(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter(Boolean);
}

function standardWebhooksSecretProblem(secret: string): string | undefined {
  if (!/^whsec_[A-Za-z0-9+/=]{16,}$/.test(secret))
    return 'each secret must look like whsec_<base64>, at least 12 bytes';
  try {
    new Webhook(secret);
    return undefined;
  } catch {
    return 'each secret must be valid base64 after whsec_';
  }
}

/** An environment variable a source's section names (`name` undefined: the optional field is absent). */
export interface EnvRequirement {
  /** The field, e.g. `sources.github.apiTokenEnv`. */
  path: string;
  name: string | undefined;
  /** Its secrets are Standard Webhooks ones (whsec_…). */
  standardWebhooks?: boolean;
  /** The field is optional: the message says it may be removed instead. */
  optional?: boolean;
}

/**
 * What the file cannot check: every environment variable a section names is set (and, for Standard
 * Webhooks, holds whsec_ secrets). One line per problem, naming the field and the variable, never a
 * value.
 */
export function envProblems(
  requirements: readonly EnvRequirement[],
  env: Record<string, string | undefined>,
): string[] {
  const problems: string[] = [];
  for (const { path, name, standardWebhooks, optional } of requirements) {
    if (name === undefined) continue;
    const list = secretList(env[name]);
    if (list.length === 0) {
      problems.push(
        `  ${path}: environment variable ${name} is not set${optional ? ' (remove the field, or set the variable)' : ''}`,
      );
      continue;
    }
    if (standardWebhooks) {
      const bad = list.map(standardWebhooksSecretProblem).find(Boolean);
      if (bad) problems.push(`  ${path}: ${name}: ${bad}`);
    }
  }
  return problems;
}

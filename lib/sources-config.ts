/**
 * The `sources:` and `policy:` sections of the config file (the inventory file). Secrets are never
 * in the file: each source names the env vars that hold them.
 */
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import { CREDENTIAL_TYPES, SEVERITIES } from '../contracts/detection';

/** The generic source's secrets variable unless `sources.generic.secretsEnv` names another. */
export const DEFAULT_GENERIC_SECRETS_ENV = 'GENERIC_WEBHOOK_SECRETS';

const envVarName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name (A-Z, 0-9, _)');

const byteSize = z.union([
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

const duration = z
  .string()
  .regex(/^\d+(ms|s|m|h)$/, 'expected a duration such as 30s, 15m or 1h');

/** Settings every source shares. */
const common = {
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
const standardWebhooksSource = z
  .object({ ...common, secretsEnv: envVarName })
  .strict();

export const githubSourceSchema = z
  .object({
    ...common,
    /** Webhook secrets (X-Hub-Signature-256), comma-separated; several at once for rotation. */
    secretsEnv: envVarName,
    /** Token that may read (and resolve) secret scanning alerts: fine-grained PAT or GitHub App token. */
    apiTokenEnv: envVarName,
    /** https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
    apiUrl: z.url().default('https://api.github.com'),
    /** Resolve the alert as `revoked` with a comment linking the run once the credential is dead. */
    resolveAlerts: z.boolean().default(true),
    /**
     * While GitHub's API keeps failing, page a human after this long (the alert is escalated without
     * its value; the fetch goes on and the value joins when it comes). 10s to 1h.
     */
    escalateAfter: z
      .string()
      .regex(/^\d{1,4}(s|m|h)$/, 'a duration such as 30s, 2m or 1h')
      .refine((v) => {
        const n = Number(v.slice(0, -1)) * { s: 1, m: 60, h: 3600 }[v.slice(-1) as 's' | 'm' | 'h'];
        return n >= 10 && n <= 3600;
      }, 'between 10s and 1h')
      .default('2m'),
  })
  .strict();

export const githubPartnerSourceSchema = z
  .object({
    ...common,
    /** Where GitHub publishes the keys that sign partner deliveries. */
    keysUrl: z.url().default('https://api.github.com/meta/public_keys/secret_scanning'),
    /** Optional token for the keys URL (higher rate limit). */
    keysTokenEnv: envVarName.optional(),
    keysCacheSeconds: z.number().int().min(0).max(86400).default(3600),
  })
  .strict();

export const gitguardianSourceSchema = z
  .object({
    ...common,
    /** Custom webhook signature tokens (Gitguardian-Signature), comma-separated. */
    secretsEnv: envVarName,
    /** Allowed clock skew for the Timestamp header. */
    skewSeconds: z.number().int().min(1).max(3600).default(300),
    /** API token to resolve incidents after a kill (optional). */
    apiTokenEnv: envVarName.optional(),
    apiUrl: z.url().default('https://api.gitguardian.com'),
  })
  .strict();

export const gitlabSourceSchema = z
  .object({
    ...common,
    /** The pre-shared token GitLab sends in Authorization; comma-separated for rotation. */
    tokensEnv: envVarName,
  })
  .strict();

/** A path into a JSON payload: dot-separated keys and [n] indexes, e.g. `data.finding.secret`. */
const jsonPath = z.string().regex(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+|\[\d+\])*$/, 'a dotted path such as data.finding.secret');

export const customSourceSchema = z
  .object({
    ...common,
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,40}$/, 'lower-case letters, digits and -'),
    verify: z.discriminatedUnion('scheme', [
      z.object({ scheme: z.literal('standard-webhooks'), secretsEnv: envVarName }).strict(),
      z
        .object({
          scheme: z.literal('hmac-sha256'),
          secretsEnv: envVarName,
          /** Header carrying the hex (or base64) HMAC of the raw body. */
          header: z.string().regex(/^[A-Za-z0-9-]+$/),
          prefix: z.string().max(32).default(''),
          encoding: z.enum(['hex', 'base64']).default('hex'),
        })
        .strict(),
    ]),
    mapping: z
      .object({
        /** Path to an array of findings; omitted when the payload is one finding. */
        items: jsonPath.optional(),
        secret: jsonPath.optional(),
        credentialType: jsonPath.optional(),
        /**
         * Sender's type names to ours. A name not in the map is taken as is when it is one of ours,
         * else recognised by its wording or the value (a postgres:// URL); else the default below.
         */
        typeMap: z.record(z.string(), z.enum(CREDENTIAL_TYPES)).default({}),
        /** The type of a finding whose type is neither mapped nor recognised (or not sent at all). */
        defaultCredentialType: z.enum(CREDENTIAL_TYPES).default('generic'),
        credentialRef: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/), jsonPath).default({}),
        severity: jsonPath.optional(),
        dedupeId: jsonPath.optional(),
        verified: jsonPath.optional(),
        location: z
          .object({ repository: jsonPath, file: jsonPath, line: jsonPath, commit: jsonPath, url: jsonPath })
          .partial()
          .strict()
          .default({}),
      })
      .strict()
      .refine((m) => m.secret || Object.keys(m.credentialRef).length > 0, { message: 'map secret or at least one credentialRef field' }),
  })
  .strict();

export const sourcesSchema = z
  .object({
    generic: standardWebhooksSource.extend({ secretsEnv: envVarName.default(DEFAULT_GENERIC_SECRETS_ENV) }).strict().default({
      enabled: true,
      dryRun: false,
      rateLimit: { perMinute: 600 },
      secretsEnv: DEFAULT_GENERIC_SECRETS_ENV,
    }),
    github: githubSourceSchema.optional(),
    github_partner: githubPartnerSourceSchema.optional(),
    gitguardian: gitguardianSourceSchema.optional(),
    trufflehog: standardWebhooksSource.optional(),
    gitleaks: standardWebhooksSource.optional(),
    kingfisher: standardWebhooksSource.optional(),
    gitlab: gitlabSourceSchema.optional(),
    custom: z.array(customSourceSchema).default([]),
  })
  .strict();

export const POLICY_ACTIONS = ['rotate', 'require_approval', 'notify_only', 'ignore'] as const;
export type PolicyAction = (typeof POLICY_ACTIONS)[number];

const oneOrMany = <T extends z.ZodType>(t: T) => z.union([t, z.array(t).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]) as z.infer<T>[]);

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
    approvers: z.array(z.string().regex(/^([UW][A-Z0-9]{2,20}|[^\s@]+@[^\s@]+)$/, 'a Slack user id (U…) or an e-mail address')).default([]),
    /** After an escalation, how long the run waits for a human to retry it (0s: it ends at once). */
    retryWindow: duration.default('24h'),
  })
  .strict();

export type SourcesConfig = z.infer<typeof sourcesSchema>;
export type PolicyConfig = z.infer<typeof policySchema>;
export type PolicyRule = z.infer<typeof policyRuleSchema>;
export type CustomSourceConfig = z.infer<typeof customSourceSchema>;
export type StandardWebhooksSourceConfig = z.infer<typeof standardWebhooksSource>;
export type GitHubSourceConfig = z.infer<typeof githubSourceSchema>;

/** The built-in sources, by the name their detections carry (and their route). */
export const BUILTIN_SOURCES = ['generic', 'github', 'github_partner', 'gitguardian', 'trufflehog', 'gitleaks', 'kingfisher', 'gitlab'] as const;

/**
 * A policy rule that names a source no detection can come from (a typo: `gitleak`) would never
 * match, silently: refused, naming the field.
 */
export function policySourceProblems(sources: SourcesConfig, policy: PolicyConfig): string[] {
  const known = new Set<string>([...BUILTIN_SOURCES, ...sources.custom.map((c) => c.name)]);
  const problems: string[] = [];
  policy.rules.forEach((r, i) =>
    r.match.source?.forEach((name, j) => {
      if (!known.has(name)) problems.push(`  policy.rules[${i}].match.source[${j}]: no such source (the built-in ones, or a sources.custom name)`);
    }),
  );
  return problems;
}

/** The secrets a variable holds: comma- or space-separated, several at once during a rotation. */
export function secretList(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter(Boolean);
}

function standardWebhooksSecretProblem(secret: string): string | undefined {
  if (!/^whsec_[A-Za-z0-9+/=]{16,}$/.test(secret)) return 'each secret must look like whsec_<base64>, at least 12 bytes';
  try {
    new Webhook(secret);
    return undefined;
  } catch {
    return 'each secret must be valid base64 after whsec_';
  }
}

/**
 * What the file cannot check: every environment variable the `sources:` section names is set (and,
 * for Standard Webhooks, holds whsec_ secrets). One line per problem, naming the field and the
 * variable, never a value. The default generic variable is resolved by the boot code instead (it
 * may fall back to a generated local secret), so it is not listed here.
 */
export function sourcesEnvProblems(sources: SourcesConfig, env: Record<string, string | undefined>): string[] {
  const problems: string[] = [];
  const need = (path: string, name: string | undefined, opts: { standardWebhooks?: boolean; optional?: boolean } = {}) => {
    if (name === undefined) return;
    const list = secretList(env[name]);
    if (list.length === 0) {
      problems.push(`  ${path}: environment variable ${name} is not set${opts.optional ? ' (remove the field, or set the variable)' : ''}`);
      return;
    }
    if (opts.standardWebhooks) {
      const bad = list.map(standardWebhooksSecretProblem).find(Boolean);
      if (bad) problems.push(`  ${path}: ${name}: ${bad}`);
    }
  };
  if (sources.generic.secretsEnv !== DEFAULT_GENERIC_SECRETS_ENV) need('sources.generic.secretsEnv', sources.generic.secretsEnv, { standardWebhooks: true });
  for (const name of ['trufflehog', 'gitleaks', 'kingfisher'] as const) {
    const s = sources[name];
    if (s) need(`sources.${name}.secretsEnv`, s.secretsEnv, { standardWebhooks: true });
  }
  if (sources.github) {
    need('sources.github.secretsEnv', sources.github.secretsEnv);
    // Every alert names a finding the source must fetch with this token: without it none can be acted on.
    need('sources.github.apiTokenEnv', sources.github.apiTokenEnv);
  }
  if (sources.github_partner) need('sources.github_partner.keysTokenEnv', sources.github_partner.keysTokenEnv, { optional: true });
  if (sources.gitguardian) {
    need('sources.gitguardian.secretsEnv', sources.gitguardian.secretsEnv);
    need('sources.gitguardian.apiTokenEnv', sources.gitguardian.apiTokenEnv, { optional: true });
  }
  if (sources.gitlab) need('sources.gitlab.tokensEnv', sources.gitlab.tokensEnv);
  sources.custom.forEach((c, i) => need(`sources.custom[${i}].verify.secretsEnv`, c.verify.secretsEnv, { standardWebhooks: c.verify.scheme === 'standard-webhooks' }));
  return problems;
}

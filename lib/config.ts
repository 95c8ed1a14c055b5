/**
 * Process configuration, parsed once from the environment with a schema. Nothing else in the
 * project reads process.env: entry points call loadConfig() and pass the frozen result down.
 */
import { readFileSync } from 'node:fs';
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import { parseCodecKeys, type CodecKey } from './codec';
import { LOG_FORMATS, type LogFormat } from './logger';
import {
  resolveTemporalConnection,
  TemporalSettingsError,
  type TemporalConnection,
} from './temporal-connection';

const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

const port = (fallback: number) => z.coerce.number().int().min(1).max(65535).default(fallback);

const url = z.url({ protocol: /^https?$/ });

/** "1mb", "512kb", "1048576" -> bytes */
export function parseByteSize(value: string): number {
  const m = /^(\d+)\s*(b|kb|kib|mb|mib)?$/i.exec(value.trim());
  if (!m) throw new Error(`not a byte size: ${value}`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 'b').toLowerCase();
  const factor = unit.startsWith('m') ? 1024 * 1024 : unit.startsWith('k') ? 1024 : 1;
  return n * factor;
}

/** A duration such as 3s or 10m (ms, s, m, h), as milliseconds within [min, max]. */
function slackDuration(fallback: string, min: number, max: number) {
  return z
    .string()
    .trim()
    .default(fallback)
    .transform((v) => (v === '' ? fallback : v))
    .refine((v) => /^\d+(ms|s|m|h)$/.test(v), 'expected a duration such as 3s, 500ms or 10m')
    .transform((v) => {
      const m = /^(\d+)(ms|s|m|h)$/.exec(v)!;
      return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    })
    .refine((ms) => ms >= min && ms <= max, `must be between ${min} ms and ${max} ms`);
}

const byteSize = z
  .string()
  .refine(
    (v) => /^(\d+)\s*(b|kb|kib|mb|mib)?$/i.test(v.trim()),
    'expected a size such as 1mb, 512kb or 1048576',
  )
  .transform(parseByteSize);

const whsec = z
  .string()
  .regex(/^whsec_[A-Za-z0-9+/=]{16,}$/, 'each secret must look like whsec_<base64>, at least 12 bytes')
  .refine((s) => {
    try {
      new Webhook(s);
      return true;
    } catch {
      return false;
    }
  }, 'not valid base64 after whsec_');

const serverKey = z
  .string()
  .refine((v) => Buffer.from(v, 'base64').length >= 32, 'must be base64 of at least 32 random bytes');

export const API_ROLES = ['viewer', 'admin'] as const;
export type ApiRole = (typeof API_ROLES)[number];

/** A bearer token of the read and admin API; `label` names it in the admin audit, never the token. */
export interface ApiToken {
  readonly role: ApiRole;
  readonly token: string;
  readonly label: string;
}

const apiTokenEntry = z
  .string()
  .regex(/^(viewer|admin):/, 'each entry must be viewer:<token> or admin:<token>')
  .transform((v) => ({ role: v.slice(0, v.indexOf(':')) as ApiRole, token: v.slice(v.indexOf(':') + 1) }))
  .refine((t) => t.token.length >= 24, 'the token after the role must be at least 24 characters');

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export const envSchema = z.object({
  PORT: port(3000),
  HOST: z.string().default('0.0.0.0'),
  PUBLIC_BASE_URL: url.optional(),
  LOG_LEVEL: logLevel.default('info'),

  TEMPORAL_ADDRESS: optionalString,
  /** Unset: the profile's namespace (TEMPORAL_PROFILE), else `default` (lib/temporal-connection.ts). */
  TEMPORAL_NAMESPACE: optionalString,
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('kill-switch'),
  /** Base of the run links; default: the UI `npm start` serves, http://127.0.0.1:<TEMPORAL_DEV_UI_PORT>. */
  TEMPORAL_UI_URL: z.preprocess((v) => (v === '' ? undefined : v), url.optional()),
  TEMPORAL_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(60000).default(5000),
  TEMPORAL_DEV_PORT: port(7233),
  TEMPORAL_DEV_UI_PORT: port(8233),
  /** The Temporal UI's browser origin, allowed by the codec endpoint's CORS; default: the origin of TEMPORAL_UI_URL. */
  TEMPORAL_UI_ORIGIN: z.preprocess(
    (v) => (v === '' ? undefined : v),
    url
      .refine(
        (v) => new URL(v).origin === v.replace(/\/+$/, ''),
        'must be an origin only: scheme://host[:port], no path',
      )
      .optional(),
  ),
  /** Temporal payload keys, `<id>:<base64 32 bytes>`, comma-separated; the first encodes, all decode. */
  KILLSWITCH_CODEC_KEYS: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() === '' ? undefined : v),
    z
      .string()
      .transform((v, ctx) => {
        try {
          return parseCodecKeys(v);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
          return z.NEVER;
        }
      })
      .optional(),
  ),
  /** Bearer tokens for the codec endpoint (/codec/encode, /codec/decode), comma-separated. */
  CODEC_TOKENS: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() !== '' ? v.split(/[\s,]+/).filter(Boolean) : undefined),
    z.array(z.string().min(24, 'each codec token must be at least 24 characters')).optional(),
  ),

  /**
   * The Temporal UI forwards the signed-in engineer's access token (codec.passAccessToken): the
   * codec endpoint accepts a JWT signed by a key of this JWKS, with this issuer and audience.
   */
  CODEC_JWT_JWKS_URL: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.url({ protocol: /^https?$/ }).optional(),
  ),
  CODEC_JWT_ISSUER: optionalString,
  CODEC_JWT_AUDIENCE: optionalString,

  KILLSWITCH_DATA_DIR: z.string().min(1).default('.data'),
  KILLSWITCH_SERVER_KEY: z.preprocess((v) => (v === '' ? undefined : v), serverKey.optional()),
  INVENTORY_FILE: optionalString,

  DATABASE_URL: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// connection string')
      .optional(),
  ),
  EVIDENCE_TTL_HOURS: z.coerce
    .number()
    .min(1)
    .max(24 * 30)
    .default(24),

  GENERIC_WEBHOOK_SECRETS: z.preprocess(
    (v) =>
      typeof v === 'string' && v.trim() !== ''
        ? v
            .split(/[\s,]+/)
            .map((s) => s.trim())
            .filter(Boolean)
        : undefined,
    z.array(whsec).min(1).optional(),
  ),
  WEBHOOK_BODY_LIMIT: byteSize.default(1024 * 1024),

  SLACK_BOT_TOKEN: optionalString,
  SLACK_CHANNEL: optionalString,
  SLACK_API_URL: url.default('https://slack.com/api/'),
  /** Verifies Slack's interaction requests (buttons, /killswitch) on /slack/events; the app's Signing Secret. */
  SLACK_SIGNING_SECRET: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() === '' ? undefined : v),
    z
      .string()
      .trim()
      .regex(
        /^[A-Za-z0-9]{16,128}$/,
        "must be the Slack app's Signing Secret (Basic Information page), 16-128 letters and digits",
      )
      .optional(),
  ),

  /**
   * Burst digests: once this many run messages were posted within a minute (or Slack answers 429),
   * routine runs become lines of one digest message per channel; `off` gives every run its own message.
   */
  SLACK_DIGEST_AFTER: z.preprocess(
    (v) => (v === undefined || v === '' ? '10' : v),
    z.union([z.literal('off'), z.coerce.number().int().min(1).max(10_000)], {
      error: 'must be off or a whole number from 1 to 10000',
    }),
  ),
  /** Least time between two chat.update calls of one digest. */
  SLACK_DIGEST_UPDATE_INTERVAL: slackDuration('3s', 500, 60_000),
  /** How long one digest message gathers runs before the next one starts. */
  SLACK_DIGEST_WINDOW: slackDuration('10m', 60_000, 86_400_000),

  /** Bearer tokens for the admin API (/admin/sources), comma-separated; the admin API is off when unset. */
  ADMIN_TOKENS: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() !== '' ? v.split(/[\s,]+/).filter(Boolean) : undefined),
    z.array(z.string().min(24, 'each admin token must be at least 24 characters')).optional(),
  ),
  /** Bearer tokens with roles for the read and admin API: comma-separated `viewer:<token>` or `admin:<token>`. */
  API_TOKENS: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() !== '' ? v.split(/[\s,]+/).filter(Boolean) : undefined),
    z.array(apiTokenEntry).optional(),
  ),

  PAGERDUTY_ROUTING_KEY: optionalString,
  PAGERDUTY_EVENTS_URL: url.default('https://events.pagerduty.com'),

  /** Worker tuning (docs/performance.md); unset: the Temporal SDK's defaults. */
  WORKER_MAX_CACHED_WORKFLOWS: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.coerce.number().int().min(0).max(100_000).optional(),
  ),
  WORKER_MAX_CONCURRENT_ACTIVITY_TASK_EXECUTIONS: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.coerce.number().int().min(1).max(10_000).optional(),
  ),
  WORKER_MAX_CONCURRENT_WORKFLOW_TASK_EXECUTIONS: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.coerce.number().int().min(2).max(10_000).optional(),
  ),
  WORKER_MAX_CONCURRENT_ACTIVITY_TASK_POLLS: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.coerce.number().int().min(1).max(1_000).optional(),
  ),
  WORKER_MAX_CONCURRENT_WORKFLOW_TASK_POLLS: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.coerce.number().int().min(2).max(1_000).optional(),
  ),
  WORKER_REUSE_V8_CONTEXT: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z
      .enum(['true', 'false'])
      .transform((v) => v === 'true')
      .optional(),
  ),

  /** Logs and health (docs/observability.md): `auto` is pretty on a terminal, JSON otherwise. */
  LOG_FORMAT: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.enum(LOG_FORMATS, { error: 'must be auto, json or pretty' }).default('auto'),
  ),
  /** The worker's health endpoint (/livez, /readyz, /metrics); unset: none. */
  WORKER_HEALTH_PORT: z.preprocess(
    (v) => (v === '' ? undefined : v),
    z.coerce.number().int().min(1).max(65535).optional(),
  ),
  WORKER_HEALTH_HOST: z.preprocess((v) => (v === '' ? undefined : v), z.string().default('0.0.0.0')),
  /** Bearer token of /metrics: required on the ingress port (no /metrics there without it), and on the worker's health port when set. */
  METRICS_TOKEN: z.preprocess(
    (v) => (typeof v === 'string' && v.trim() === '' ? undefined : v),
    z
      .string()
      .regex(/^\S{24,}$/, 'must be at least 24 characters without spaces')
      .optional(),
  ),
});

export type Env = z.infer<typeof envSchema>;

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly publicBaseUrl: string | undefined;
  readonly logLevel: z.infer<typeof logLevel>;
  readonly temporal: {
    readonly address: string | undefined;
    readonly namespace: string;
    readonly taskQueue: string;
    readonly uiUrl: string;
    readonly connectTimeoutMs: number;
    readonly devPort: number;
    readonly devUiPort: number;
    /** The Temporal UI's browser origin (CORS of the codec endpoint). */
    readonly uiOrigin: string;
    /**
     * How to reach Temporal (TEMPORAL_* variables over an optional TOML profile: TLS, mTLS, API key);
     * `connectOptions()` serves both the client and the worker connection.
     */
    readonly connection: TemporalConnection;
  };
  readonly codec: {
    /** KILLSWITCH_CODEC_KEYS; undefined: one key derived from the server key. */
    readonly keys: readonly CodecKey[] | undefined;
    /** CODEC_TOKENS; undefined: no bearer token opens the codec endpoint. */
    readonly tokens: readonly string[] | undefined;
    /** CODEC_JWT_*: accept the UI's forwarded OIDC access tokens. */
    readonly jwt:
      { readonly jwksUrl: string; readonly issuer: string; readonly audience: string } | undefined;
  };
  readonly dataDir: string;
  readonly serverKey: string | undefined;
  readonly inventoryFile: string | undefined;
  readonly databaseUrl: string | undefined;
  readonly evidenceTtlHours: number;
  readonly webhook: {
    readonly genericSecrets: readonly string[] | undefined;
    readonly bodyLimitBytes: number;
  };
  readonly adminTokens: readonly string[] | undefined;
  /** API_TOKENS with their roles, then every ADMIN_TOKENS entry as an admin token; empty: API off. */
  readonly apiTokens: readonly ApiToken[];
  readonly slack: {
    readonly token: string | undefined;
    readonly channel: string | undefined;
    readonly apiUrl: string;
    /** Verifies Slack's requests to /slack/events (buttons, /killswitch). */
    readonly signingSecret: string | undefined;
    /** Burst digests; null when SLACK_DIGEST_AFTER=off. */
    readonly digest: {
      readonly after: number;
      readonly updateIntervalMs: number;
      readonly windowMs: number;
    } | null;
  };
  readonly pagerduty: { readonly routingKey: string | undefined; readonly eventsUrl: string };
  /** WORKER_* tuning; every field unset means the SDK's default. */
  readonly worker: WorkerTuning;
  /** LOG_FORMAT (lib/logger.ts). */
  readonly logFormat: LogFormat;
  /** Health and metrics (docs/observability.md). */
  readonly observability: {
    /** WORKER_HEALTH_PORT: the worker's /livez, /readyz and /metrics; undefined: none. */
    readonly workerHealthPort: number | undefined;
    readonly workerHealthHost: string;
    /** METRICS_TOKEN: /metrics on the ingress port only with it. */
    readonly metricsToken: string | undefined;
  };
}

export interface WorkerTuning {
  readonly maxCachedWorkflows?: number;
  readonly maxConcurrentActivityTaskExecutions?: number;
  readonly maxConcurrentWorkflowTaskExecutions?: number;
  readonly maxConcurrentActivityTaskPolls?: number;
  readonly maxConcurrentWorkflowTaskPolls?: number;
  readonly reuseV8Context?: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * The secret variables, each of which may instead name a file with `<VAR>_FILE` (Docker and
 * Kubernetes secrets mounted as files, docs/operating.md "Production stack").
 */
export const SECRET_FILE_VARS = [
  'KILLSWITCH_SERVER_KEY',
  'KILLSWITCH_CODEC_KEYS',
  'DATABASE_URL',
  'GENERIC_WEBHOOK_SECRETS',
  'CODEC_TOKENS',
  'ADMIN_TOKENS',
  'API_TOKENS',
  'METRICS_TOKEN',
  'SLACK_BOT_TOKEN',
  'SLACK_SIGNING_SECRET',
  'PAGERDUTY_ROUTING_KEY',
  'TEMPORAL_API_KEY',
] as const;

/**
 * `env` with each `<VAR>_FILE` of SECRET_FILE_VARS read into `<VAR>` (surrounding whitespace and
 * the trailing newline dropped; an empty file is an empty variable). A ConfigError names the
 * variable and the path, never the file's content.
 */
export function withSecretFiles(
  env: NodeJS.ProcessEnv | Record<string, string | undefined>,
): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  const problems: string[] = [];
  for (const name of SECRET_FILE_VARS) {
    const file = env[`${name}_FILE`]?.trim();
    if (!file) continue;
    if (env[name]?.trim()) {
      problems.push(`  ${name}_FILE: set either ${name} or ${name}_FILE, not both`);
      continue;
    }
    try {
      out[name] = readFileSync(file, 'utf8').trim();
    } catch (err) {
      problems.push(
        `  ${name}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  if (problems.length) throw new ConfigError(`invalid environment:\n${problems.join('\n')}`);
  return out;
}

/** Parses the environment (secrets also from `<VAR>_FILE`); throws a ConfigError naming every bad variable. */
export function loadConfig(rawEnv: NodeJS.ProcessEnv | Record<string, string | undefined>): Config {
  const env = withSecretFiles(rawEnv);
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const [name, ...rest] = i.path.map(String);
      return `  ${name ?? '(env)'}${rest.map((r) => `[${r}]`).join('')}: ${i.message}`;
    });
    throw new ConfigError(`invalid environment:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const jwtVars = {
    CODEC_JWT_JWKS_URL: e.CODEC_JWT_JWKS_URL,
    CODEC_JWT_ISSUER: e.CODEC_JWT_ISSUER,
    CODEC_JWT_AUDIENCE: e.CODEC_JWT_AUDIENCE,
  };
  const jwtSet = Object.entries(jwtVars).filter(([, v]) => v);
  if (jwtSet.length > 0 && jwtSet.length < 3) {
    const missing = Object.entries(jwtVars)
      .filter(([, v]) => !v)
      .map(([k]) => k);
    throw new ConfigError(
      `invalid environment:\n${missing.map((k) => `  ${k}: required when ${jwtSet.map(([n]) => n).join(' and ')} ${jwtSet.length === 1 ? 'is' : 'are'} set`).join('\n')}`,
    );
  }
  if (e.SLACK_BOT_TOKEN && !e.SLACK_CHANNEL) {
    throw new ConfigError('invalid environment:\n  SLACK_CHANNEL: required when SLACK_BOT_TOKEN is set');
  }
  if (e.SLACK_BOT_TOKEN && !e.SLACK_SIGNING_SECRET) {
    throw new ConfigError(
      'invalid environment:\n  SLACK_SIGNING_SECRET: required when SLACK_BOT_TOKEN is set (the Slack buttons and /killswitch are verified with it)',
    );
  }
  // One origin everywhere: the address npm start's UI gateway listens on (loopback only, api/local-ui.ts).
  const uiUrl = e.TEMPORAL_UI_URL ?? `http://127.0.0.1:${e.TEMPORAL_DEV_UI_PORT}`;
  const connection = temporalConnectionOf(env);
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    publicBaseUrl: e.PUBLIC_BASE_URL,
    logLevel: e.LOG_LEVEL,
    temporal: Object.freeze({
      address: connection.address,
      namespace: connection.namespace,
      connection,
      taskQueue: e.TEMPORAL_TASK_QUEUE,
      uiUrl: uiUrl.replace(/\/+$/, ''),
      connectTimeoutMs: e.TEMPORAL_CONNECT_TIMEOUT_MS,
      devPort: e.TEMPORAL_DEV_PORT,
      devUiPort: e.TEMPORAL_DEV_UI_PORT,
      uiOrigin: e.TEMPORAL_UI_ORIGIN ? new URL(e.TEMPORAL_UI_ORIGIN).origin : new URL(uiUrl).origin,
    }),
    codec: Object.freeze({
      keys: e.KILLSWITCH_CODEC_KEYS ? Object.freeze([...e.KILLSWITCH_CODEC_KEYS]) : undefined,
      tokens: e.CODEC_TOKENS ? Object.freeze([...e.CODEC_TOKENS]) : undefined,
      jwt: e.CODEC_JWT_JWKS_URL
        ? Object.freeze({
            jwksUrl: e.CODEC_JWT_JWKS_URL,
            issuer: e.CODEC_JWT_ISSUER!,
            audience: e.CODEC_JWT_AUDIENCE!,
          })
        : undefined,
    }),
    dataDir: e.KILLSWITCH_DATA_DIR,
    serverKey: e.KILLSWITCH_SERVER_KEY,
    inventoryFile: e.INVENTORY_FILE,
    databaseUrl: e.DATABASE_URL,
    evidenceTtlHours: e.EVIDENCE_TTL_HOURS,
    webhook: Object.freeze({
      genericSecrets: e.GENERIC_WEBHOOK_SECRETS ? Object.freeze([...e.GENERIC_WEBHOOK_SECRETS]) : undefined,
      bodyLimitBytes: e.WEBHOOK_BODY_LIMIT,
    }),
    adminTokens: e.ADMIN_TOKENS ? Object.freeze([...e.ADMIN_TOKENS]) : undefined,
    apiTokens: Object.freeze([
      ...(e.API_TOKENS ?? []).map((t, i) => Object.freeze({ ...t, label: `API_TOKENS[${i}]` })),
      ...(e.ADMIN_TOKENS ?? []).map((token, i) =>
        Object.freeze({ role: 'admin' as const, token, label: `ADMIN_TOKENS[${i}]` }),
      ),
    ]),
    slack: Object.freeze({
      token: e.SLACK_BOT_TOKEN,
      channel: e.SLACK_CHANNEL,
      apiUrl: ensureSlash(e.SLACK_API_URL),
      signingSecret: e.SLACK_SIGNING_SECRET,
      digest:
        e.SLACK_DIGEST_AFTER === 'off'
          ? null
          : Object.freeze({
              after: e.SLACK_DIGEST_AFTER,
              updateIntervalMs: e.SLACK_DIGEST_UPDATE_INTERVAL,
              windowMs: e.SLACK_DIGEST_WINDOW,
            }),
    }),
    pagerduty: Object.freeze({
      routingKey: e.PAGERDUTY_ROUTING_KEY,
      eventsUrl: e.PAGERDUTY_EVENTS_URL.replace(/\/+$/, ''),
    }),
    worker: Object.freeze(
      Object.fromEntries(
        Object.entries({
          maxCachedWorkflows: e.WORKER_MAX_CACHED_WORKFLOWS,
          maxConcurrentActivityTaskExecutions: e.WORKER_MAX_CONCURRENT_ACTIVITY_TASK_EXECUTIONS,
          maxConcurrentWorkflowTaskExecutions: e.WORKER_MAX_CONCURRENT_WORKFLOW_TASK_EXECUTIONS,
          maxConcurrentActivityTaskPolls: e.WORKER_MAX_CONCURRENT_ACTIVITY_TASK_POLLS,
          maxConcurrentWorkflowTaskPolls: e.WORKER_MAX_CONCURRENT_WORKFLOW_TASK_POLLS,
          reuseV8Context: e.WORKER_REUSE_V8_CONTEXT,
        }).filter(([, v]) => v !== undefined),
      ) as WorkerTuning,
    ),
    logFormat: e.LOG_FORMAT,
    observability: Object.freeze({
      workerHealthPort: e.WORKER_HEALTH_PORT,
      workerHealthHost: e.WORKER_HEALTH_HOST,
      metricsToken: e.METRICS_TOKEN,
    }),
  });
}

/** The Temporal connection settings (lib/temporal-connection.ts), their problems as a ConfigError. */
function temporalConnectionOf(env: Record<string, string | undefined>): TemporalConnection {
  try {
    return resolveTemporalConnection(env);
  } catch (err) {
    if (!(err instanceof TemporalSettingsError)) throw err;
    throw new ConfigError(
      `invalid environment:\n${err.issues.map((i) => `  ${i.field}: ${i.message}`).join('\n')}`,
    );
  }
}

function ensureSlash(u: string): string {
  return u.endsWith('/') ? u : `${u}/`;
}

/** Link to one run in the Temporal Web UI. */
export function temporalUiRunUrl(
  uiUrl: string,
  namespace: string,
  workflowId: string,
  runId: string,
): string {
  return `${uiUrl}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}/${encodeURIComponent(runId)}/history`;
}

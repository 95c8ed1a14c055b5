/**
 * `kind: http`: a homegrown system whose credentials are revoked (and optionally re-issued, their
 * sessions expired, their death verified) through its own admin HTTP API, described declaratively
 * as recipes of HTTP steps. Everything a recipe can reference is checked here, at startup: an
 * unknown template variable is a config error naming its path, never a surprise at 3 a.m.
 *
 * Each recipe is a short list of steps; a step may read values from an earlier step's JSON
 * response (lookup-then-delete).
 *
 * revoke  = the `revoke` recipe; a step answering an `alreadyDoneStatus` (404 on a delete) ends it
 *           successfully, so a re-run after the credential is gone is a no-op.
 * issue   = the `issue` recipe; its extracted values go straight to the sink, nowhere else.
 * expire  = the `expire` recipe (may extract `terminated`, a count).
 * verify  = the `verify` recipe, whose last step must be refused with a `deadStatus` (401).
 *
 * Secret hygiene: rendered URLs, headers and bodies may hold the admin token, the leaked value or a
 * replacement. They are never logged, returned or put in an error message; messages name the
 * recipe, the step and its URL *template* only.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { CREDENTIAL_TYPES, type CredentialRef } from '../../contracts/detection';
import { ErrorType } from '../../contracts/errors';
import { commonEnv, commonSystemFields, envVarName, glob } from './common';
import { defineKind } from './kind';
import type {
  CredentialProvider,
  ExpireResult,
  IssueRequest,
  IssueResult,
  ProviderRequest,
  RevokeRequest,
  RevokeResult,
  SecretSink,
  VerifyResult,
} from './provider';

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export const RECIPES = ['revoke', 'issue', 'expire', 'verify'] as const;
export type RecipeName = (typeof RECIPES)[number];

/** `{{ name }}` placeholders; the name is checked against what the recipe may use. */
export const TEMPLATE_RE = /\{\{\s*([^{}]*?)\s*\}\}/g;

const status = z.number().int().min(100).max(599);
const extractName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'a name of letters, digits and _');
/** A JSON pointer (`/items/0/id`) or a dotted path (`items.0.id`) into the response body. */
const extractPath = z
  .string()
  .min(1)
  .max(500)
  .refine(
    (p) => p.startsWith('/') || /^[^./][^.]*(\.[^.]+)*$/.test(p),
    'a JSON pointer (/a/0/b) or a dotted path (a.0.b)',
  );

export const httpStepSchema = z
  .object({
    /** Shown in errors and notes (defaults to the step number). */
    name: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,40}$/)
      .optional(),
    method: z.enum(HTTP_METHODS),
    /** A path resolved against baseUrl (`/admin/keys/{{ref.keyId}}`); interpolated values are URL-encoded. */
    url: z.string().min(1).max(2000).startsWith('/', 'a path beginning with / (resolved against baseUrl)'),
    headers: z
      .record(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'an HTTP header name'), z.string().max(4000))
      .default({}),
    /** A JSON value; every string in it is a template. Sent as application/json. */
    body: z.json().optional(),
    /** Statuses meaning "done, carry on". */
    expectStatus: z.array(status).min(1).default([200, 201, 202, 204]),
    /** Statuses meaning "already done by an earlier attempt" (404 on a delete): the recipe ends, successfully. */
    alreadyDoneStatus: z.array(status).default([]),
    /** A value missing from an extract path means the credential is already gone (a lookup returning an empty list). */
    alreadyDoneWhenMissing: z.boolean().default(false),
    /** Values to read from the JSON response for later steps (`{{steps.<name>}}`), or, in `issue`, for the sink. */
    extract: z.record(extractName, extractPath).default({}),
    /** verify only, last step: statuses that prove the leaked value is refused (401). */
    deadStatus: z.array(status).min(1).optional(),
  })
  .strict();
export type HttpStep = z.infer<typeof httpStepSchema>;

const recipeSchema = z.array(httpStepSchema).min(1).max(10);

export const httpSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('http'),
    /** Detection credential types this system owns. */
    credentialTypes: z.array(z.enum(CREDENTIAL_TYPES)).min(1).default(['generic']),
    /** credentialRef field → glob; every entry must match (and the field be present). */
    match: z
      .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/), z.string().min(1).max(500))
      .refine((m) => Object.keys(m).length > 0, 'at least one credentialRef field to match'),
    /** Env vars the recipes may read as `{{env.NAME}}` (an admin API token). */
    secretsEnv: z.array(envVarName).max(20).default([]),
    /** Where the admin API lives; every step's url is a path below it. */
    baseUrl: z.url({ protocol: /^https?$/ }),
    /** Per-request timeout. */
    timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
    revoke: recipeSchema,
    issue: recipeSchema.optional(),
    expire: recipeSchema.optional(),
    verify: recipeSchema.optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    for (const recipe of RECIPES) {
      const steps = s[recipe];
      if (!steps) continue;
      const extracted = new Set<string>();
      steps.forEach((step, i) => {
        const at = [recipe, i];
        const check = (text: string, path: PropertyKey[]) => {
          for (const problem of templateProblems(text, { recipe, secretsEnv: s.secretsEnv, extracted })) {
            ctx.addIssue({ code: 'custom', path: [...at, ...path], message: problem });
          }
        };
        check(step.url, ['url']);
        for (const [h, v] of Object.entries(step.headers)) check(v, ['headers', h]);
        if (step.body !== undefined) walkStrings(step.body, [], (text, p) => check(text, ['body', ...p]));
        const last = i === steps.length - 1;
        if (step.deadStatus && !(recipe === 'verify' && last)) {
          ctx.addIssue({
            code: 'custom',
            path: [...at, 'deadStatus'],
            message: 'only the last step of verify has deadStatus',
          });
        }
        if (recipe === 'verify' && last && !step.deadStatus) {
          ctx.addIssue({
            code: 'custom',
            path: [...at, 'deadStatus'],
            message:
              'the last verify step needs deadStatus (the statuses that prove the value is refused, e.g. [401])',
          });
        }
        const overlap = step.alreadyDoneStatus.filter(
          (x) => step.expectStatus.includes(x) || step.deadStatus?.includes(x),
        );
        if (overlap.length)
          ctx.addIssue({
            code: 'custom',
            path: [...at, 'alreadyDoneStatus'],
            message: `${overlap.join(', ')} also listed as expected`,
          });
        for (const name of Object.keys(step.extract)) {
          if (extracted.has(name))
            ctx.addIssue({
              code: 'custom',
              path: [...at, 'extract', name],
              message: `"${name}" is already extracted by an earlier step`,
            });
          extracted.add(name);
        }
      });
      if (recipe === 'issue') {
        steps.forEach((step, i) => {
          // An issue that "was already done" has no value to deliver: make the API idempotent instead ({{workflowId}} as its key).
          if (step.alreadyDoneStatus.length || step.alreadyDoneWhenMissing) {
            ctx.addIssue({
              code: 'custom',
              path: [recipe, i, 'alreadyDoneStatus'],
              message:
                'issue steps cannot be "already done"; send {{workflowId}} as the API\'s idempotency key instead',
            });
          }
        });
      }
      if (recipe === 'issue' && extracted.size === 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['issue'],
          message: 'issue must extract at least one value (what the sink receives)',
        });
      }
    }
    if (s.mode === 'graceful' && !s.issue) {
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'graceful mode needs an issue recipe' });
    }
  });
export type HttpSystem = z.infer<typeof httpSystemSchema>;

/** Template variables a recipe may not use, as config messages (empty: all good). */
export function templateProblems(
  text: string,
  c: { recipe: RecipeName; secretsEnv: readonly string[]; extracted: ReadonlySet<string> },
): string[] {
  const out: string[] = [];
  if (/\{\{(?![^{}]*\}\})/.test(text)) out.push('unclosed {{ in template');
  for (const m of text.matchAll(TEMPLATE_RE)) {
    const v = m[1]!;
    const problem = variableProblem(v, c);
    if (problem) out.push(`template variable {{${v}}}: ${problem}`);
  }
  return out;
}

function variableProblem(
  v: string,
  c: { recipe: RecipeName; secretsEnv: readonly string[]; extracted: ReadonlySet<string> },
): string | undefined {
  if (v === 'workflowId') return undefined;
  if (v === 'leaked')
    return c.recipe === 'revoke' || c.recipe === 'verify'
      ? undefined
      : 'the leaked value is only available to revoke and verify';
  const [scope, name, ...rest] = v.split('.');
  if (!name || rest.length)
    return 'unknown template variable (use ref.<field>, env.<NAME>, steps.<name>, leaked or workflowId)';
  switch (scope) {
    case 'ref':
      return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? undefined : 'not a credentialRef field name';
    case 'env':
      return c.secretsEnv.includes(name) ? undefined : `${name} is not listed in secretsEnv`;
    case 'steps':
      return c.extracted.has(name) ? undefined : `no earlier step of this recipe extracts "${name}"`;
    default:
      return 'unknown template variable (use ref.<field>, env.<NAME>, steps.<name>, leaked or workflowId)';
  }
}

function walkStrings(v: unknown, path: PropertyKey[], fn: (s: string, path: PropertyKey[]) => void): void {
  if (typeof v === 'string') fn(v, path);
  else if (Array.isArray(v)) v.forEach((x, i) => walkStrings(x, [...path, i], fn));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) walkStrings(x, [...path, k], fn);
}

/** True when a recipe reads the leaked value somewhere. */
export function usesLeaked(steps: readonly HttpStep[]): boolean {
  return JSON.stringify(steps).match(/\{\{\s*leaked\s*\}\}/) !== null;
}

const MAX_BODY_BYTES = 1_000_000;
const MAX_RETRY_AFTER_S = 900;
const SAFE_METHODS = new Set(['GET', 'HEAD']);

interface Vars {
  workflowId: string;
  ref: CredentialRef;
  leaked?: string;
  steps: Record<string, string>;
}

type RecipeOutcome =
  /** Every step answered an expected status. */
  | { kind: 'done'; extracted: Record<string, string> }
  /** A step said the work was done before (alreadyDoneStatus, or alreadyDoneWhenMissing). */
  | { kind: 'already_done'; step: string; extracted: Record<string, string> }
  /** verify: the last step was refused with a deadStatus. */
  | { kind: 'dead'; extracted: Record<string, string> }
  /** dry run: stopped before the first step that would change something. */
  | { kind: 'dry_run'; stoppedAt?: string; extracted: Record<string, string> };

class MissingLeakedValue extends Error {}

function permanent(type: string, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date). */
export function retryAfterSeconds(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** A transient failure, retried by Temporal; after the server's Retry-After when it sent one. */
function transient(message: string, retryAfter: number | undefined): Error {
  if (retryAfter === undefined) return new Error(message);
  return ApplicationFailure.create({
    type: 'UpstreamRateLimited',
    message,
    nextRetryDelay: `${Math.min(Math.max(retryAfter, 1), MAX_RETRY_AFTER_S)}s`,
  });
}

/** Reads `/a/0/b` (JSON pointer, RFC 6901) or `a.0.b` from a parsed body. */
export function readPath(doc: unknown, path: string): unknown {
  const parts = path.startsWith('/')
    ? path
        .slice(1)
        .split('/')
        .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    : path.split('.');
  let cur: unknown = doc;
  for (const p of parts) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(p)) return undefined;
      cur = cur[Number(p)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(cur, p)) return undefined;
      cur = (cur as Record<string, unknown>)[p];
    }
  }
  return cur;
}

export class HttpProvider implements CredentialProvider {
  readonly kind = 'http';
  private readonly base: URL;

  constructor(
    readonly system: HttpSystem,
    /** The checked environment; only the names in `secretsEnv` are ever read. */
    private readonly env: Readonly<Record<string, string | undefined>>,
  ) {
    this.base = new URL(system.baseUrl);
  }

  private render(template: string, vars: Vars, encode: boolean): string {
    return template.replace(TEMPLATE_RE, (_m, name: string) => {
      const value = this.lookup(name, vars);
      return encode ? encodeURIComponent(value) : value;
    });
  }

  private lookup(name: string, vars: Vars): string {
    if (name === 'workflowId') return vars.workflowId;
    if (name === 'leaked') {
      if (vars.leaked === undefined) throw new MissingLeakedValue();
      return vars.leaked;
    }
    const [scope, key] = name.split('.') as [string, string];
    if (scope === 'ref') {
      const v = vars.ref[key];
      if (v === undefined)
        throw permanent(
          ErrorType.UNKNOWN_CREDENTIAL,
          `${this.system.name}: the detection's credentialRef has no field "${key}"`,
        );
      return v;
    }
    if (scope === 'env') {
      // Checked at startup (resolveInventoryEnv); a value that vanished since is a configuration problem.
      const v = this.env[key];
      if (!v)
        throw permanent(
          ErrorType.MISCONFIGURED,
          `${this.system.name}: environment variable ${key} is not set`,
        );
      return v;
    }
    const v = vars.steps[key];
    if (v === undefined)
      throw permanent(ErrorType.MISCONFIGURED, `${this.system.name}: step value "${key}" was not extracted`);
    return v;
  }

  private renderBody(v: unknown, vars: Vars): unknown {
    if (typeof v === 'string') return this.render(v, vars, false);
    if (Array.isArray(v)) return v.map((x) => this.renderBody(x, vars));
    if (v && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.renderBody(x, vars)]));
    return v;
  }

  /** Runs one recipe; throws classified failures whose messages carry no rendered value. */
  private async run(
    recipe: RecipeName,
    steps: readonly HttpStep[],
    vars: Vars,
    opts: { dryRun?: boolean } = {},
  ): Promise<RecipeOutcome> {
    const extracted: Record<string, string> = {};
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      const label = `${this.system.name} ${recipe} step ${step.name ?? i + 1} (${step.method} ${step.url})`;
      const last = i === steps.length - 1;
      if (opts.dryRun && !SAFE_METHODS.has(step.method))
        return { kind: 'dry_run', stoppedAt: label, extracted };

      let url: URL;
      let headers: Record<string, string>;
      let body: string | undefined;
      try {
        url = new URL(this.base.href.replace(/\/$/, '') + this.render(step.url, vars, true));
        headers = Object.fromEntries(
          Object.entries(step.headers).map(([h, t]) => [h, this.render(t, vars, false)]),
        );
        if (step.body !== undefined) {
          body = JSON.stringify(this.renderBody(step.body, vars));
          if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
            headers['content-type'] = 'application/json';
        }
      } catch (err) {
        if (err instanceof MissingLeakedValue) {
          if (opts.dryRun) return { kind: 'dry_run', stoppedAt: label, extracted };
          throw err;
        }
        if (err instanceof ApplicationFailure) throw err;
        throw permanent(ErrorType.MISCONFIGURED, `${label}: the rendered URL is invalid`);
      }
      if (url.origin !== this.base.origin)
        throw permanent(ErrorType.MISCONFIGURED, `${label}: the rendered URL leaves ${this.base.origin}`);
      const badHeader = Object.entries(headers).find(([, v]) => /[\r\n\0]/.test(v));
      if (badHeader)
        throw permanent(
          ErrorType.MISCONFIGURED,
          `${label}: header ${badHeader[0]} rendered with a line break`,
        );

      let res: Response;
      let text: string;
      try {
        res = await fetch(url, {
          method: step.method,
          headers,
          ...(body !== undefined ? { body } : {}),
          redirect: 'manual',
          signal: AbortSignal.timeout(this.system.timeoutMs),
        });
        text = step.method === 'HEAD' ? '' : await res.text();
      } catch (err) {
        // Only the error's code: undici messages can quote the request.
        const e = err as { name?: string; cause?: { code?: string } };
        const why =
          e.name === 'TimeoutError'
            ? `no answer within ${this.system.timeoutMs} ms`
            : `network error ${e.cause?.code ?? e.name ?? 'unknown'}`;
        throw new Error(`${label}: ${why}`);
      }
      if (text.length > MAX_BODY_BYTES) text = '';
      const s = res.status;

      if (recipe === 'verify' && last && step.deadStatus?.includes(s)) return { kind: 'dead', extracted };
      if (step.alreadyDoneStatus.includes(s))
        return { kind: 'already_done', step: step.name ?? String(i + 1), extracted };
      if (step.expectStatus.includes(s)) {
        if (recipe === 'verify' && last) {
          throw ApplicationFailure.create({
            type: ErrorType.CREDENTIAL_STILL_VALID,
            message: `${label}: HTTP ${s}, the leaked credential is still accepted`,
            nonRetryable: false,
          });
        }
        let doc: unknown;
        if (Object.keys(step.extract).length) {
          try {
            doc = JSON.parse(text);
          } catch {
            doc = undefined;
          }
        }
        for (const [name, path] of Object.entries(step.extract)) {
          const v = readPath(doc, path);
          if (v === undefined || v === null || v === '') {
            if (step.alreadyDoneWhenMissing)
              return { kind: 'already_done', step: step.name ?? String(i + 1), extracted };
            throw permanent(
              recipe === 'issue' ? ErrorType.MISCONFIGURED : ErrorType.UNKNOWN_CREDENTIAL,
              `${label}: the response has no ${path} (for ${name})`,
            );
          }
          if (typeof v === 'object')
            throw permanent(
              ErrorType.MISCONFIGURED,
              `${label}: ${path} (for ${name}) is not a string or number`,
            );
          extracted[name] = String(v);
          vars.steps[name] = String(v);
        }
        continue;
      }
      throw this.classify(s, res.headers, label);
    }
    return { kind: opts.dryRun ? 'dry_run' : 'done', extracted };
  }

  private classify(status: number, headers: Headers, label: string): Error {
    const msg = `${label}: HTTP ${status}`;
    if (status === 401 || status === 403)
      return permanent(ErrorType.PERMISSION_DENIED, `${msg}: the admin credential was refused`);
    if (status === 404 || status === 410) return permanent(ErrorType.UNKNOWN_CREDENTIAL, `${msg}: not found`);
    if (status === 408 || status === 425 || status === 429 || status >= 500)
      return transient(msg, retryAfterSeconds(headers.get('retry-after')));
    // Other 4xx, an unexpected redirect or 1xx/2xx: the recipe does not fit the API.
    return permanent(ErrorType.MISCONFIGURED, `${msg}: not an expected status`);
  }

  private vars(req: ProviderRequest, leaked?: string): Vars {
    return {
      workflowId: req.workflowId,
      ref: req.credentialRef,
      steps: {},
      ...(leaked !== undefined ? { leaked } : {}),
    };
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    if (req.quarantine)
      throw permanent(
        ErrorType.MISCONFIGURED,
        `${this.system.name}: http systems have no reversible quarantine`,
      );
    let out: RecipeOutcome;
    try {
      out = await this.run(
        'revoke',
        this.system.revoke,
        this.vars(req, req.dryRun ? undefined : req.leakedValue),
        { dryRun: req.dryRun },
      );
    } catch (err) {
      if (err instanceof MissingLeakedValue) {
        throw permanent(
          ErrorType.UNKNOWN_CREDENTIAL,
          `${this.system.name}: the revoke recipe needs the leaked value ({{leaked}}) and the detection carried none`,
        );
      }
      throw err;
    }
    if (out.kind === 'dry_run')
      return {
        revokedAt: null,
        note: `dry run: lookups answered as expected; would continue with ${out.stoppedAt ?? 'nothing'}`,
      };
    if (out.kind === 'already_done')
      return {
        revokedAt: new Date().toISOString(),
        note: `already revoked (step ${out.step} answered that it was done)`,
      };
    return {
      revokedAt: new Date().toISOString(),
      note: `revoked through ${this.system.revoke.length} HTTP step(s)`,
    };
  }

  async issueReplacement(req: IssueRequest, sink: SecretSink): Promise<IssueResult> {
    const recipe = this.system.issue;
    if (!recipe) throw permanent(ErrorType.MISCONFIGURED, `${this.system.name} has no issue recipe`);
    if (sink.kind === 'none' && !req.dryRun) {
      return {
        issuedAt: null,
        delivered: false,
        note: 'no replacement issued: the sink is none, nobody would receive it',
      };
    }
    const out = await this.run('issue', recipe, this.vars(req), { dryRun: req.dryRun });
    if (out.kind === 'dry_run')
      return {
        issuedAt: null,
        delivered: false,
        note: `dry run: would continue with ${out.stoppedAt ?? 'nothing'}`,
      };
    const issuedAt = new Date().toISOString();
    // The extracted values are the replacement: straight to the sink, never returned.
    const put = await sink.put(out.extracted, { idempotencyToken: `${req.workflowId}-issue` });
    return {
      issuedAt,
      delivered: true,
      sinkRef: put.ref,
      note: `replacement (${Object.keys(out.extracted).join(', ')}) delivered to ${sink.kind}`,
    };
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    const recipe = this.system.expire;
    if (!recipe)
      return req.dryRun
        ? { sessionsExpiredAt: null, terminated: 0, wouldTerminate: 0 }
        : { sessionsExpiredAt: null, terminated: 0 };
    const out = await this.run('expire', recipe, this.vars(req), { dryRun: req.dryRun });
    const n = Number(out.extracted.terminated ?? 0);
    const count = Number.isFinite(n) && n >= 0 ? Math.floor(n) : 0;
    if (out.kind === 'dry_run') return { sessionsExpiredAt: null, terminated: 0, wouldTerminate: count };
    return {
      sessionsExpiredAt: new Date().toISOString(),
      terminated: out.kind === 'already_done' ? 0 : count,
    };
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    const recipe = this.system.verify;
    // Without a verify recipe the owner's answer to the revocation is all the evidence there is.
    if (!recipe) return { verifiedDeadAt: null, method: 'revoked_by_owner' };
    const withLeaked = usesLeaked(recipe);
    if (withLeaked && leakedValue === undefined)
      return { verifiedDeadAt: null, method: 'not_verifiable_no_leaked_value' };
    const out = await this.run('verify', recipe, this.vars(req, leakedValue));
    if (out.kind === 'dead')
      return {
        verifiedDeadAt: new Date().toISOString(),
        method: withLeaked ? 'login_rejected' : 'revoked_by_owner',
      };
    // A lookup said the credential is gone (alreadyDone): the owner confirms it.
    return { verifiedDeadAt: new Date().toISOString(), method: 'revoked_by_owner' };
  }

  async close(): Promise<void> {}
}

export const httpKind = defineKind({
  schema: httpSystemSchema,
  supports: (s) => ({
    graceful: s.issue !== undefined,
    quarantine: false,
    replacement: s.issue !== undefined,
  }),
  credentialTypes: (s) => s.credentialTypes,
  owns(s, ref) {
    return Object.entries(s.match).every(
      ([field, pattern]) => ref[field] !== undefined && glob(pattern).test(ref[field]!),
    );
  },
  env(s, at) {
    return [
      ...s.secretsEnv.map((name, i) => ({ path: `${at}.secretsEnv[${i}]`, name })),
      ...commonEnv(s, at),
    ];
  },
  describe(ref) {
    const fields = Object.keys(ref);
    return fields.length
      ? `the credential with ${fields.map((f) => `${f}="${ref[f]}"`).join(', ')}`
      : 'a credential with no credentialRef fields';
  },
  createProvider: (s, env) => new HttpProvider(s, env),
});

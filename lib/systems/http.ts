/**
 * `kind: http`: a homegrown system whose credentials are revoked (and optionally re-issued, their
 * sessions expired, their death verified) through its own admin HTTP API, described declaratively
 * as recipes of HTTP steps. Everything a recipe can reference is checked here, at startup: an
 * unknown template variable is a config error naming its path, never a surprise at 3 a.m.
 */
import { z } from 'zod';
import { CREDENTIAL_TYPES, type CredentialRef } from '../../contracts/detection';
import { commonEnv, commonSystemFields, envVarName, glob, type EnvRequirement } from './common';

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
  .refine((p) => p.startsWith('/') || /^[^./][^.]*(\.[^.]+)*$/.test(p), 'a JSON pointer (/a/0/b) or a dotted path (a.0.b)');

export const httpStepSchema = z
  .object({
    /** Shown in errors and notes (defaults to the step number). */
    name: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/).optional(),
    method: z.enum(HTTP_METHODS),
    /** A path resolved against baseUrl (`/admin/keys/{{ref.keyId}}`); interpolated values are URL-encoded. */
    url: z.string().min(1).max(2000).startsWith('/', 'a path beginning with / (resolved against baseUrl)'),
    headers: z.record(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'an HTTP header name'), z.string().max(4000)).default({}),
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
    match: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/), z.string().min(1).max(500)).refine((m) => Object.keys(m).length > 0, 'at least one credentialRef field to match'),
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
          ctx.addIssue({ code: 'custom', path: [...at, 'deadStatus'], message: 'only the last step of verify has deadStatus' });
        }
        if (recipe === 'verify' && last && !step.deadStatus) {
          ctx.addIssue({ code: 'custom', path: [...at, 'deadStatus'], message: 'the last verify step needs deadStatus (the statuses that prove the value is refused, e.g. [401])' });
        }
        const overlap = step.alreadyDoneStatus.filter((x) => step.expectStatus.includes(x) || step.deadStatus?.includes(x));
        if (overlap.length) ctx.addIssue({ code: 'custom', path: [...at, 'alreadyDoneStatus'], message: `${overlap.join(', ')} also listed as expected` });
        for (const name of Object.keys(step.extract)) {
          if (extracted.has(name)) ctx.addIssue({ code: 'custom', path: [...at, 'extract', name], message: `"${name}" is already extracted by an earlier step` });
          extracted.add(name);
        }
      });
      if (recipe === 'issue') {
        steps.forEach((step, i) => {
          // An issue that "was already done" has no value to deliver: make the API idempotent instead ({{workflowId}} as its key).
          if (step.alreadyDoneStatus.length || step.alreadyDoneWhenMissing) {
            ctx.addIssue({ code: 'custom', path: [recipe, i, 'alreadyDoneStatus'], message: 'issue steps cannot be "already done"; send {{workflowId}} as the API\'s idempotency key instead' });
          }
        });
      }
      if (recipe === 'issue' && extracted.size === 0) {
        ctx.addIssue({ code: 'custom', path: ['issue'], message: 'issue must extract at least one value (what the sink receives)' });
      }
    }
    if (s.mode === 'graceful' && !s.issue) {
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'graceful mode needs an issue recipe' });
    }
  });
export type HttpSystem = z.infer<typeof httpSystemSchema>;

/** Template variables a recipe may not use, as config messages (empty: all good). */
export function templateProblems(text: string, c: { recipe: RecipeName; secretsEnv: readonly string[]; extracted: ReadonlySet<string> }): string[] {
  const out: string[] = [];
  if (/\{\{(?![^{}]*\}\})/.test(text)) out.push('unclosed {{ in template');
  for (const m of text.matchAll(TEMPLATE_RE)) {
    const v = m[1]!;
    const problem = variableProblem(v, c);
    if (problem) out.push(`template variable {{${v}}}: ${problem}`);
  }
  return out;
}

function variableProblem(v: string, c: { recipe: RecipeName; secretsEnv: readonly string[]; extracted: ReadonlySet<string> }): string | undefined {
  if (v === 'workflowId') return undefined;
  if (v === 'leaked') return c.recipe === 'revoke' || c.recipe === 'verify' ? undefined : 'the leaked value is only available to revoke and verify';
  const [scope, name, ...rest] = v.split('.');
  if (!name || rest.length) return 'unknown template variable (use ref.<field>, env.<NAME>, steps.<name>, leaked or workflowId)';
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
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walkStrings(x, [...path, k], fn);
}

/** True when a recipe reads the leaked value somewhere. */
export function usesLeaked(steps: readonly HttpStep[]): boolean {
  return JSON.stringify(steps).match(/\{\{\s*leaked\s*\}\}/) !== null;
}

export const httpKind = {
  supports: (s: HttpSystem) => ({ graceful: s.issue !== undefined, quarantine: false }),
  credentialTypes: (s: HttpSystem) => s.credentialTypes,
  owns(s: HttpSystem, ref: CredentialRef): boolean {
    return Object.entries(s.match).every(([field, pattern]) => ref[field] !== undefined && glob(pattern).test(ref[field]!));
  },
  env(s: HttpSystem, at: string): EnvRequirement[] {
    return [...s.secretsEnv.map((name, i) => ({ path: `${at}.secretsEnv[${i}]`, name })), ...commonEnv(s, at)];
  },
  describe(ref: CredentialRef): string {
    const fields = Object.keys(ref);
    return fields.length ? `the credential with ${fields.map((f) => `${f}="${ref[f]}"`).join(', ')}` : 'a credential with no credentialRef fields';
  },
};

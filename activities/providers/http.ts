/**
 * Homegrown systems through their own admin HTTP API, driven by the inventory's recipes
 * (lib/systems/http.ts). Each recipe is a short list of steps; a step may read values from an
 * earlier step's JSON response (lookup-then-delete).
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
import { ErrorType } from '../../contracts/errors';
import { TEMPLATE_RE, usesLeaked, type HttpStep, type HttpSystem, type RecipeName } from '../../lib/systems/http';
import type { CredentialRef } from '../../contracts/detection';
import type { CredentialProvider, ExpireResult, IssueRequest, IssueResult, ProviderRequest, RevokeRequest, RevokeResult, SecretSink, VerifyResult } from './types';

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
  const parts = path.startsWith('/') ? path.slice(1).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~')) : path.split('.');
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
  readonly canIssueReplacement: boolean;
  readonly supportsGraceful: boolean;
  readonly supportsQuarantine = false;
  private readonly base: URL;

  constructor(
    readonly system: HttpSystem,
    /** The checked environment; only the names in `secretsEnv` are ever read. */
    private readonly env: Readonly<Record<string, string | undefined>>,
  ) {
    this.canIssueReplacement = system.issue !== undefined;
    this.supportsGraceful = system.issue !== undefined;
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
      if (v === undefined) throw permanent(ErrorType.UNKNOWN_CREDENTIAL, `${this.system.name}: the detection's credentialRef has no field "${key}"`);
      return v;
    }
    if (scope === 'env') {
      // Checked at startup (resolveInventoryEnv); a value that vanished since is a configuration problem.
      const v = this.env[key];
      if (!v) throw permanent(ErrorType.MISCONFIGURED, `${this.system.name}: environment variable ${key} is not set`);
      return v;
    }
    const v = vars.steps[key];
    if (v === undefined) throw permanent(ErrorType.MISCONFIGURED, `${this.system.name}: step value "${key}" was not extracted`);
    return v;
  }

  private renderBody(v: unknown, vars: Vars): unknown {
    if (typeof v === 'string') return this.render(v, vars, false);
    if (Array.isArray(v)) return v.map((x) => this.renderBody(x, vars));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.renderBody(x, vars)]));
    return v;
  }

  /** Runs one recipe; throws classified failures whose messages carry no rendered value. */
  private async run(recipe: RecipeName, steps: readonly HttpStep[], vars: Vars, opts: { dryRun?: boolean } = {}): Promise<RecipeOutcome> {
    const extracted: Record<string, string> = {};
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      const label = `${this.system.name} ${recipe} step ${step.name ?? i + 1} (${step.method} ${step.url})`;
      const last = i === steps.length - 1;
      if (opts.dryRun && !SAFE_METHODS.has(step.method)) return { kind: 'dry_run', stoppedAt: label, extracted };

      let url: URL;
      let headers: Record<string, string>;
      let body: string | undefined;
      try {
        url = new URL(this.base.href.replace(/\/$/, '') + this.render(step.url, vars, true));
        headers = Object.fromEntries(Object.entries(step.headers).map(([h, t]) => [h, this.render(t, vars, false)]));
        if (step.body !== undefined) {
          body = JSON.stringify(this.renderBody(step.body, vars));
          if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
        }
      } catch (err) {
        if (err instanceof MissingLeakedValue) {
          if (opts.dryRun) return { kind: 'dry_run', stoppedAt: label, extracted };
          throw err;
        }
        if (err instanceof ApplicationFailure) throw err;
        throw permanent(ErrorType.MISCONFIGURED, `${label}: the rendered URL is invalid`);
      }
      if (url.origin !== this.base.origin) throw permanent(ErrorType.MISCONFIGURED, `${label}: the rendered URL leaves ${this.base.origin}`);
      const badHeader = Object.entries(headers).find(([, v]) => /[\r\n\0]/.test(v));
      if (badHeader) throw permanent(ErrorType.MISCONFIGURED, `${label}: header ${badHeader[0]} rendered with a line break`);

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
        const why = e.name === 'TimeoutError' ? `no answer within ${this.system.timeoutMs} ms` : `network error ${e.cause?.code ?? e.name ?? 'unknown'}`;
        throw new Error(`${label}: ${why}`);
      }
      if (text.length > MAX_BODY_BYTES) text = '';
      const s = res.status;

      if (recipe === 'verify' && last && step.deadStatus?.includes(s)) return { kind: 'dead', extracted };
      if (step.alreadyDoneStatus.includes(s)) return { kind: 'already_done', step: step.name ?? String(i + 1), extracted };
      if (step.expectStatus.includes(s)) {
        if (recipe === 'verify' && last) {
          throw ApplicationFailure.create({ type: ErrorType.CREDENTIAL_STILL_VALID, message: `${label}: HTTP ${s}, the leaked credential is still accepted`, nonRetryable: false });
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
            if (step.alreadyDoneWhenMissing) return { kind: 'already_done', step: step.name ?? String(i + 1), extracted };
            throw permanent(recipe === 'issue' ? ErrorType.MISCONFIGURED : ErrorType.UNKNOWN_CREDENTIAL, `${label}: the response has no ${path} (for ${name})`);
          }
          if (typeof v === 'object') throw permanent(ErrorType.MISCONFIGURED, `${label}: ${path} (for ${name}) is not a string or number`);
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
    if (status === 401 || status === 403) return permanent(ErrorType.PERMISSION_DENIED, `${msg}: the admin credential was refused`);
    if (status === 404 || status === 410) return permanent(ErrorType.UNKNOWN_CREDENTIAL, `${msg}: not found`);
    if (status === 408 || status === 425 || status === 429 || status >= 500) return transient(msg, retryAfterSeconds(headers.get('retry-after')));
    // Other 4xx, an unexpected redirect or 1xx/2xx: the recipe does not fit the API.
    return permanent(ErrorType.MISCONFIGURED, `${msg}: not an expected status`);
  }

  private vars(req: ProviderRequest, leaked?: string): Vars {
    return { workflowId: req.workflowId, ref: req.credentialRef, steps: {}, ...(leaked !== undefined ? { leaked } : {}) };
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    if (req.quarantine) throw permanent(ErrorType.MISCONFIGURED, `${this.system.name}: http systems have no reversible quarantine`);
    let out: RecipeOutcome;
    try {
      out = await this.run('revoke', this.system.revoke, this.vars(req, req.dryRun ? undefined : req.leakedValue), { dryRun: req.dryRun });
    } catch (err) {
      if (err instanceof MissingLeakedValue) {
        throw permanent(ErrorType.UNKNOWN_CREDENTIAL, `${this.system.name}: the revoke recipe needs the leaked value ({{leaked}}) and the detection carried none`);
      }
      throw err;
    }
    if (out.kind === 'dry_run') return { revokedAt: null, note: `dry run: lookups answered as expected; would continue with ${out.stoppedAt ?? 'nothing'}` };
    if (out.kind === 'already_done') return { revokedAt: new Date().toISOString(), note: `already revoked (step ${out.step} answered that it was done)` };
    return { revokedAt: new Date().toISOString(), note: `revoked through ${this.system.revoke.length} HTTP step(s)` };
  }

  async issueReplacement(req: IssueRequest, sink: SecretSink): Promise<IssueResult> {
    const recipe = this.system.issue;
    if (!recipe) throw permanent(ErrorType.MISCONFIGURED, `${this.system.name} has no issue recipe`);
    if (sink.kind === 'none' && !req.dryRun) {
      return { issuedAt: null, delivered: false, note: 'no replacement issued: the sink is none, nobody would receive it' };
    }
    const out = await this.run('issue', recipe, this.vars(req), { dryRun: req.dryRun });
    if (out.kind === 'dry_run') return { issuedAt: null, delivered: false, note: `dry run: would continue with ${out.stoppedAt ?? 'nothing'}` };
    const issuedAt = new Date().toISOString();
    // The extracted values are the replacement: straight to the sink, never returned.
    const put = await sink.put(out.extracted, { idempotencyToken: `${req.workflowId}-issue` });
    return { issuedAt, delivered: true, sinkRef: put.ref, note: `replacement (${Object.keys(out.extracted).join(', ')}) delivered to ${sink.kind}` };
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    const recipe = this.system.expire;
    if (!recipe) return req.dryRun ? { sessionsExpiredAt: null, terminated: 0, wouldTerminate: 0 } : { sessionsExpiredAt: null, terminated: 0 };
    const out = await this.run('expire', recipe, this.vars(req), { dryRun: req.dryRun });
    const n = Number(out.extracted.terminated ?? 0);
    const count = Number.isFinite(n) && n >= 0 ? Math.floor(n) : 0;
    if (out.kind === 'dry_run') return { sessionsExpiredAt: null, terminated: 0, wouldTerminate: count };
    return { sessionsExpiredAt: new Date().toISOString(), terminated: out.kind === 'already_done' ? 0 : count };
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    const recipe = this.system.verify;
    // Without a verify recipe the owner's answer to the revocation is all the evidence there is.
    if (!recipe) return { verifiedDeadAt: null, method: 'revoked_by_owner' };
    const withLeaked = usesLeaked(recipe);
    if (withLeaked && leakedValue === undefined) return { verifiedDeadAt: null, method: 'not_verifiable_no_leaked_value' };
    const out = await this.run('verify', recipe, this.vars(req, leakedValue));
    if (out.kind === 'dead') return { verifiedDeadAt: new Date().toISOString(), method: withLeaked ? 'login_rejected' : 'revoked_by_owner' };
    // A lookup said the credential is gone (alreadyDone): the owner confirms it.
    return { verifiedDeadAt: new Date().toISOString(), method: 'revoked_by_owner' };
  }

  async close(): Promise<void> {}
}

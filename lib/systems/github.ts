/**
 * `kind: github`: GitHub tokens (personal access tokens, OAuth and GitHub App user tokens), killed
 * through GitHub's credential revocation API. A token can only be revoked: there is no replacement
 * to issue and no second value to overlap with, so no graceful mode and no quarantine.
 *
 * revoke  = POST /credentials/revoke { credentials: [token, …] } → 202. Concurrent revocations in
 *           this worker are batched (up to `batch.maxTokens` a request, GitHub's limit is 1000) and
 *           the endpoint's hourly budget is kept here. Revoking a revoked token is accepted again.
 * issue   = none: GitHub cannot re-issue a token to anyone but its owner.
 * expire  = nothing separate: a token is the session (terminated 0).
 * verify  = GET /user with the leaked token: 401 means GitHub refuses it.
 */
import { z } from 'zod';
import {
  GITHUB_REVOCABLE_PREFIXES,
  GITHUB_TOKEN_PREFIXES,
  githubTokenPrefix,
  type GitHubTokenPrefix,
} from '../../contracts/credentials';
import { ErrorType } from '../../contracts/errors';
import { commonEnv, commonSystemFields, envVarName } from './common';
import { defineKind } from './kind';
import type {
  CredentialProvider,
  ExpireResult,
  IssueResult,
  ProviderRequest,
  RevokeRequest,
  RevokeResult,
  VerifyResult,
} from './provider';
import {
  bodyMessage,
  call,
  joinUrl,
  permanent,
  rateLimited,
  retryAfterMs,
  stillValid,
  type HttpAnswer,
} from './token-http';

/** GitHub's documented per-request maximum for POST /credentials/revoke. */
export const GITHUB_MAX_TOKENS_PER_REQUEST = 1000;

export const githubSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('github'),
    /** The REST API root: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
    apiUrl: z.url({ protocol: /^https?$/ }).default('https://api.github.com'),
    /**
     * Env var holding a token to authenticate POST /credentials/revoke with. Leave unset for
     * github.com, which answers 403 to any authenticated request to this endpoint; GitHub
     * Enterprise Server documents it as an authenticated endpoint.
     */
    tokenEnv: envVarName.optional(),
    /** Token types this system revokes (credentialRef.tokenPrefix must be one of them). */
    tokenPrefixes: z
      .array(z.enum(GITHUB_TOKEN_PREFIXES))
      .min(1)
      .default([...GITHUB_REVOCABLE_PREFIXES]),
    /** Per-request timeout. */
    timeoutMs: z.number().int().min(100).max(25_000).default(10_000),
    /** Host names detections may name (credentialRef.host); when set, a detection naming another host does not match. */
    hosts: z.array(z.string().min(1).max(255)).optional(),
    /** Concurrent revocations in one worker are collected for `windowMs` and sent together, up to `maxTokens` a request. */
    batch: z
      .object({
        maxTokens: z
          .number()
          .int()
          .min(1)
          .max(GITHUB_MAX_TOKENS_PER_REQUEST)
          .default(GITHUB_MAX_TOKENS_PER_REQUEST),
        windowMs: z.number().int().min(0).max(5_000).default(250),
      })
      .strict()
      .default({ maxTokens: GITHUB_MAX_TOKENS_PER_REQUEST, windowMs: 250 }),
    /** Requests to POST /credentials/revoke per hour from this worker (GitHub allows 60 per IP). */
    rateLimit: z
      .object({ perHour: z.number().int().min(1).max(100_000).default(60) })
      .strict()
      .default({ perHour: 60 }),
    /** A token cannot be re-issued: nothing goes to a sink. */
    sink: z
      .object({
        kind: z.literal('none', {
          error: 'github systems revoke only; a token cannot be re-issued, so the sink is none',
        }),
      })
      .strict()
      .default({ kind: 'none' }),
    /**
     * Pacing of provider calls. The provider batches and rate-limits revocations itself, so the
     * defaults let every concurrent revocation reach the batch.
     */
    limits: z
      .object({
        concurrency: z.number().int().min(1).max(1000).default(1000),
        perMinute: z.number().int().min(1).max(100_000).default(60_000),
      })
      .strict()
      .default({ concurrency: 1000, perMinute: 60_000 }),
  })
  .strict();
export type GitHubSystem = z.infer<typeof githubSystemSchema>;

const HOUR_MS = 3_600_000;
const API_VERSION = '2022-11-28';

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Collects tokens for `windowMs` (or until `maxTokens` are waiting) and sends them in one call;
 * every caller of a batch gets that call's outcome. The same token submitted twice travels once.
 */
export class RevocationBatcher {
  private pending = new Map<string, Waiter[]>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: (tokens: string[]) => Promise<void>,
    private readonly maxTokens: number,
    private readonly windowMs: number,
  ) {}

  submit(token: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiters = this.pending.get(token);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(token, [{ resolve, reject }]);
      if (this.pending.size >= this.maxTokens) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = [...this.pending.entries()].slice(0, this.maxTokens);
    for (const [token] of batch) this.pending.delete(token);
    // The rest already waited a full window (or overflowed this batch): they go next, at once.
    if (this.pending.size) this.timer = setTimeout(() => this.flush(), 0);
    if (!batch.length) return;
    this.send(batch.map(([token]) => token)).then(
      () => batch.forEach(([, ws]) => ws.forEach((w) => w.resolve())),
      (err: unknown) => batch.forEach(([, ws]) => ws.forEach((w) => w.reject(err))),
    );
  }

  /** Rejects whatever still waits (worker shutdown): Temporal retries those activities elsewhere. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const err = new Error('worker shutting down before the GitHub revocation batch was sent');
    for (const ws of this.pending.values()) ws.forEach((w) => w.reject(err));
    this.pending.clear();
  }
}

/** The endpoint's hourly budget in this process: a log of send times, plus GitHub's own reset when it told us. */
class HourlyBudget {
  private sent: number[] = [];
  private blockedUntil = 0;

  constructor(
    private readonly perHour: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one request from the budget, or returns how long until one is free. */
  take(): { ok: true } | { ok: false; waitMs: number; why: string } {
    const t = this.now();
    if (this.blockedUntil > t)
      return { ok: false, waitMs: this.blockedUntil - t, why: 'GitHub reported the limit exhausted' };
    this.sent = this.sent.filter((s) => s > t - HOUR_MS);
    if (this.sent.length >= this.perHour)
      return {
        ok: false,
        waitMs: this.sent[0]! + HOUR_MS - t,
        why: `${this.perHour} requests in the last hour`,
      };
    this.sent.push(t);
    return { ok: true };
  }

  blockFor(ms: number): void {
    this.blockedUntil = Math.max(this.blockedUntil, this.now() + ms);
  }

  remaining(): number {
    const t = this.now();
    return this.blockedUntil > t
      ? 0
      : Math.max(0, this.perHour - this.sent.filter((s) => s > t - HOUR_MS).length);
  }
}

/** When a 403/429 is GitHub's rate limit, how long to wait (its headers, else the documented minute). */
function rateLimitWait(a: HttpAnswer, now = Date.now()): number | undefined {
  const retryAfter = retryAfterMs(a.headers, now);
  if (retryAfter !== undefined) return retryAfter;
  if (a.headers.get('x-ratelimit-remaining') === '0') {
    const reset = Number(a.headers.get('x-ratelimit-reset'));
    return Number.isFinite(reset) && reset > 0 ? Math.max(0, reset * 1000 - now) : 60_000;
  }
  if (a.status === 429 || /rate limit/i.test(bodyMessage(a.json, undefined))) return 60_000;
  return undefined;
}

export class GitHubProvider implements CredentialProvider {
  readonly kind = 'github';
  private readonly batcher: RevocationBatcher;
  private readonly budget: HourlyBudget;

  constructor(
    readonly system: GitHubSystem,
    /** Token for POST /credentials/revoke on GitHub Enterprise Server; unset for github.com. */
    private readonly adminToken?: string,
    now: () => number = Date.now,
  ) {
    this.budget = new HourlyBudget(system.rateLimit.perHour, now);
    this.batcher = new RevocationBatcher(
      (tokens) => this.sendBatch(tokens),
      system.batch.maxTokens,
      system.batch.windowMs,
    );
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      accept: 'application/vnd.github+json',
      'x-github-api-version': API_VERSION,
      'user-agent': 'secret-kill-switch',
      ...extra,
    };
  }

  private async sendBatch(tokens: string[]): Promise<void> {
    const slot = this.budget.take();
    if (!slot.ok) {
      throw rateLimited(
        `GitHub credential revocation of ${this.system.name} is rate limited (${slot.why}); retry in ${Math.ceil(slot.waitMs / 1000)} s`,
        slot.waitMs,
      );
    }
    const a = await call(
      joinUrl(this.system.apiUrl, 'credentials/revoke'),
      {
        method: 'POST',
        headers: this.headers({
          'content-type': 'application/json',
          ...(this.adminToken ? { authorization: `Bearer ${this.adminToken}` } : {}),
        }),
        body: JSON.stringify({ credentials: tokens }),
      },
      this.system.timeoutMs,
      `POST /credentials/revoke on ${this.system.name}`,
    );
    if (a.status >= 200 && a.status < 300) return;
    const scrubbed = tokens.length === 1 ? tokens[0] : undefined;
    const detail = `${a.status}${bodyMessage(a.json, scrubbed) ? ` ${bodyMessage(a.json, scrubbed)}` : ''}`;
    const what = `GitHub refused the revocation of ${tokens.length} token(s) on ${this.system.name} (${detail})`;
    if (a.status === 403 || a.status === 429 || a.status === 422) {
      const wait =
        a.status === 422
          ? a.headers.get('x-ratelimit-remaining') === '0'
            ? rateLimitWait(a)
            : undefined
          : rateLimitWait(a);
      if (wait !== undefined) {
        this.budget.blockFor(wait);
        throw rateLimited(`${what}: rate limited; retry in ${Math.ceil(wait / 1000)} s`, wait);
      }
    }
    switch (a.status) {
      case 401:
        throw permanent(ErrorType.MISCONFIGURED, `${what}: the token in tokenEnv is not accepted`);
      case 403:
        throw permanent(
          ErrorType.PERMISSION_DENIED,
          `${what}${this.adminToken ? ': github.com refuses authenticated calls to this endpoint; unset tokenEnv there' : ''}`,
        );
      case 404:
        throw permanent(
          ErrorType.MISCONFIGURED,
          `${what}: no credential revocation API at ${this.system.apiUrl}`,
        );
      case 422:
        // Validation failed: GitHub does not take (one of) these values as a credential it can revoke.
        throw permanent(ErrorType.UNKNOWN_CREDENTIAL, what);
      default:
        if (a.status >= 400 && a.status < 500) throw permanent(ErrorType.MISCONFIGURED, what);
        throw new Error(what);
    }
  }

  private leakedToken(req: RevokeRequest): { token: string; prefix: string } {
    if (req.leakedValue === undefined) {
      throw permanent(
        ErrorType.UNKNOWN_CREDENTIAL,
        `GitHub revokes a token only given the token itself, and no leaked value is held for this detection (${this.system.name})`,
      );
    }
    const token = req.leakedValue.trim();
    const prefix = githubTokenPrefix(token);
    if (!prefix || !this.system.tokenPrefixes.includes(prefix)) {
      throw permanent(
        ErrorType.UNKNOWN_CREDENTIAL,
        `the leaked value is not a GitHub token of a type ${this.system.name} revokes (${prefix ?? 'unrecognised prefix'}; accepted: ${this.system.tokenPrefixes.join(', ')})`,
      );
    }
    return { token, prefix };
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    if (req.dryRun) {
      return {
        revokedAt: null,
        note: `dry run: GitHub's revocation API has no test mode; the token would be sent to POST ${joinUrl(this.system.apiUrl, 'credentials/revoke')} (${this.budget.remaining()}/${this.system.rateLimit.perHour} requests left this hour)`,
      };
    }
    const { token, prefix } = this.leakedToken(req);
    await this.batcher.submit(token);
    return {
      revokedAt: new Date().toISOString(),
      note: `${prefix} token submitted to GitHub's credential revocation API (202 Accepted); GitHub notifies its owner`,
    };
  }

  async issueReplacement(): Promise<IssueResult> {
    throw permanent(
      ErrorType.MISCONFIGURED,
      `${this.system.name}: a GitHub token cannot be re-issued by the kill switch; its owner creates a new one`,
    );
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    // A token is a bearer credential: once revoked, nothing authenticated by it lives on.
    return req.dryRun
      ? { sessionsExpiredAt: null, terminated: 0, wouldTerminate: 0 }
      : { sessionsExpiredAt: new Date().toISOString(), terminated: 0 };
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    if (leakedValue === undefined) return { verifiedDeadAt: null, method: 'not_verifiable_no_leaked_value' };
    const token = leakedValue.trim();
    const a = await call(
      joinUrl(this.system.apiUrl, 'user'),
      { method: 'GET', headers: this.headers({ authorization: `Bearer ${token}` }) },
      this.system.timeoutMs,
      `GET /user on ${this.system.name}`,
    );
    if (a.status === 401) return { verifiedDeadAt: new Date().toISOString(), method: 'login_rejected' };
    if (a.status === 403 || a.status === 429) {
      const wait = rateLimitWait(a);
      if (wait !== undefined)
        throw rateLimited(
          `GET /user on ${this.system.name} is rate limited; retry in ${Math.ceil(wait / 1000)} s`,
          wait,
        );
    }
    if ((a.status >= 200 && a.status < 300) || a.status === 403) {
      // 403: GitHub authenticated the token and refused this resource (an installation token): it lives.
      throw stillValid(
        `the leaked GitHub token still authenticates on ${this.system.name} (GET /user: ${a.status}); revocation is asynchronous, retrying`,
      );
    }
    throw new Error(
      `GET /user on ${this.system.name} answered ${a.status} ${bodyMessage(a.json, token)}`.trim(),
    );
  }

  async close(): Promise<void> {
    this.batcher.close();
  }
}

export const githubKind = defineKind({
  schema: githubSystemSchema,
  supports: { graceful: false, quarantine: false, replacement: false },
  credentialTypes: ['github_token'],
  owns(s, ref) {
    const prefix = ref.tokenPrefix as GitHubTokenPrefix | undefined;
    if (!prefix || !s.tokenPrefixes.includes(prefix)) return false;
    const host = ref.host?.toLowerCase();
    return !host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host);
  },
  env(s, at) {
    return [...(s.tokenEnv ? [{ path: `${at}.tokenEnv`, name: s.tokenEnv }] : []), ...commonEnv(s, at)];
  },
  describe(ref) {
    return ref.tokenPrefix
      ? `GitHub token of type ${ref.tokenPrefix}${ref.host ? ` on ${ref.host}` : ''}`
      : 'no recognisable GitHub token prefix';
  },
  createProvider: (s, env) => new GitHubProvider(s, s.tokenEnv ? env[s.tokenEnv] : undefined),
});

/**
 * `kind: slack`: Slack API tokens (bot and user tokens), killed with the Web API method
 * `auth.revoke`, which revokes the very token that calls it. A token can only be revoked: there is
 * no replacement to issue and no second value to overlap with, so no graceful mode and no quarantine.
 *
 * Plain fetch: two methods, and the Web API client's own retries and logging would sit between
 * Temporal's retry policy and the token.
 * revoke  = auth.revoke called WITH the leaked token (Slack revokes the calling token). A token
 *           that is already dead answers invalid_auth / token_revoked / account_inactive /
 *           token_expired: that is success (the state is the same as after a revocation).
 * issue   = none: only the app's installation (OAuth) can mint a new token.
 * expire  = nothing separate: the token is the session (terminated 0).
 * verify  = auth.test with the leaked token fails with one of the "dead" errors.
 */
import { z } from 'zod';
import {
  SLACK_REVOCABLE_PREFIXES,
  SLACK_TOKEN_PREFIXES,
  slackTokenPrefix,
  type SlackTokenPrefix,
} from '../../contracts/credentials';
import { ErrorType } from '../../contracts/errors';
import { commonEnv, commonSystemFields } from './common';
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
import { bodyMessage, call, joinUrl, permanent, rateLimited, retryAfterMs, stillValid } from './token-http';

export const slackSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('slack'),
    /** The Web API root (methods are `<apiUrl>/auth.revoke`); another value only for a proxy or a test fake. */
    apiUrl: z.url({ protocol: /^https?$/ }).default('https://slack.com/api'),
    /** Token types this system revokes (credentialRef.tokenPrefix must be one of them). */
    tokenPrefixes: z
      .array(z.enum(SLACK_TOKEN_PREFIXES))
      .min(1)
      .default([...SLACK_REVOCABLE_PREFIXES]),
    /** Per-request timeout. */
    timeoutMs: z.number().int().min(100).max(25_000).default(10_000),
    /** A token cannot be re-issued: nothing goes to a sink. */
    sink: z
      .object({
        kind: z.literal('none', {
          error: 'slack systems revoke only; a token cannot be re-issued, so the sink is none',
        }),
      })
      .strict()
      .default({ kind: 'none' }),
  })
  .strict();
export type SlackSystem = z.infer<typeof slackSystemSchema>;

/** Errors meaning the token does not authenticate (any more). */
export const SLACK_DEAD_ERRORS: ReadonlySet<string> = new Set([
  'invalid_auth',
  'token_revoked',
  'account_inactive',
  'token_expired',
]);
const PERMISSION_ERRORS = new Set([
  'no_permission',
  'missing_scope',
  'ekm_access_denied',
  'access_denied',
  'team_access_not_granted',
]);
const UNREVOCABLE_ERRORS = new Set(['not_bearer_token', 'not_allowed_token_type']);
const CONFIG_ERRORS = new Set([
  'not_authed',
  'invalid_arguments',
  'invalid_arg_name',
  'invalid_charset',
  'invalid_form_data',
  'invalid_post_type',
  'missing_post_type',
  'unknown_method',
  'method_deprecated',
  'deprecated_endpoint',
]);

interface SlackAnswer {
  ok: boolean;
  error?: string;
  revoked?: boolean;
}

export class SlackProvider implements CredentialProvider {
  readonly kind = 'slack';

  constructor(readonly system: SlackSystem) {}

  /** One Web API call authenticated by `token`; HTTP-level throttling and outages are classified here. */
  private async method(
    name: string,
    token: string,
    params: Record<string, string> = {},
  ): Promise<SlackAnswer> {
    const a = await call(
      joinUrl(this.system.apiUrl, name),
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        },
        body: new URLSearchParams(params).toString(),
      },
      this.system.timeoutMs,
      `${name} on ${this.system.name}`,
    );
    if (a.status === 429) {
      const wait = retryAfterMs(a.headers) ?? 60_000;
      throw rateLimited(
        `${name} on ${this.system.name}: Slack answered 429; retry in ${Math.ceil(wait / 1000)} s`,
        wait,
      );
    }
    if (a.status >= 500) throw new Error(`${name} on ${this.system.name}: Slack answered ${a.status}`);
    const body = a.json as Partial<SlackAnswer> | undefined;
    if (!body || typeof body.ok !== 'boolean') {
      if (a.status === 404 || a.status === 410)
        throw permanent(
          ErrorType.MISCONFIGURED,
          `${name}: no Slack Web API at ${this.system.apiUrl} (${a.status})`,
        );
      throw new Error(`${name} on ${this.system.name}: not a Slack answer (HTTP ${a.status})`);
    }
    return {
      ok: body.ok,
      ...(typeof body.error === 'string' ? { error: bodyMessage(body, token, 'error') } : {}),
      ...(typeof body.revoked === 'boolean' ? { revoked: body.revoked } : {}),
    };
  }

  /** A Slack error other than "the token is dead", as a typed failure. */
  private failure(name: string, error: string | undefined): Error {
    const what = `${name} on ${this.system.name}: ${error ?? 'ok:false without an error'}`;
    if (error && PERMISSION_ERRORS.has(error)) return permanent(ErrorType.PERMISSION_DENIED, what);
    if (error && UNREVOCABLE_ERRORS.has(error))
      return permanent(
        ErrorType.UNKNOWN_CREDENTIAL,
        `${what} (this token type cannot be revoked with auth.revoke)`,
      );
    if (error && CONFIG_ERRORS.has(error)) return permanent(ErrorType.MISCONFIGURED, what);
    if (error === 'ratelimited') return rateLimited(what, 60_000);
    // internal_error, fatal_error, request_timeout, service_unavailable, org_login_required, …: transient.
    return new Error(what);
  }

  private leakedToken(req: RevokeRequest): { token: string; prefix: string } {
    if (req.leakedValue === undefined) {
      throw permanent(
        ErrorType.UNKNOWN_CREDENTIAL,
        `Slack revokes a token only when called with the token itself, and no leaked value is held for this detection (${this.system.name})`,
      );
    }
    const token = req.leakedValue.trim();
    const prefix = slackTokenPrefix(token);
    if (!prefix || !this.system.tokenPrefixes.includes(prefix)) {
      throw permanent(
        ErrorType.UNKNOWN_CREDENTIAL,
        `the leaked value is not a Slack token of a type ${this.system.name} revokes (${prefix ?? 'unrecognised prefix'}; accepted: ${this.system.tokenPrefixes.join(', ')})`,
      );
    }
    return { token, prefix };
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    if (req.dryRun) {
      // A dry run holds no leaked value, so not even auth.revoke's test mode can be tried.
      return {
        revokedAt: null,
        note: `dry run: the token would be revoked by calling ${joinUrl(this.system.apiUrl, 'auth.revoke')} with it`,
      };
    }
    const { token, prefix } = this.leakedToken(req);
    const r = await this.method('auth.revoke', token);
    if (r.ok && r.revoked === true)
      return { revokedAt: new Date().toISOString(), note: `${prefix} token revoked by auth.revoke` };
    if (r.ok) throw new Error(`auth.revoke on ${this.system.name} answered ok without revoked:true`);
    if (r.error && SLACK_DEAD_ERRORS.has(r.error)) {
      return {
        revokedAt: new Date().toISOString(),
        note: `${prefix} token already dead (auth.revoke: ${r.error})`,
      };
    }
    throw this.failure('auth.revoke', r.error);
  }

  async issueReplacement(): Promise<IssueResult> {
    throw permanent(
      ErrorType.MISCONFIGURED,
      `${this.system.name}: a Slack token cannot be re-issued by the kill switch; reinstall the app or re-authorise the user`,
    );
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    // The token is the session: once revoked, nothing authenticated by it lives on.
    return req.dryRun
      ? { sessionsExpiredAt: null, terminated: 0, wouldTerminate: 0 }
      : { sessionsExpiredAt: new Date().toISOString(), terminated: 0 };
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    if (leakedValue === undefined) return { verifiedDeadAt: null, method: 'not_verifiable_no_leaked_value' };
    const r = await this.method('auth.test', leakedValue.trim());
    if (r.ok)
      throw stillValid(`the leaked Slack token still authenticates on ${this.system.name} (auth.test ok)`);
    if (r.error && SLACK_DEAD_ERRORS.has(r.error))
      return { verifiedDeadAt: new Date().toISOString(), method: 'login_rejected' };
    throw this.failure('auth.test', r.error);
  }

  async close(): Promise<void> {}
}

export const slackKind = defineKind({
  schema: slackSystemSchema,
  supports: { graceful: false, quarantine: false, replacement: false },
  credentialTypes: ['slack_token'],
  owns(s, ref) {
    const prefix = ref.tokenPrefix as SlackTokenPrefix | undefined;
    return !!prefix && s.tokenPrefixes.includes(prefix);
  },
  // auth.revoke is called with the leaked token itself: no admin credential.
  env: (s, at) => commonEnv(s, at),
  describe(ref) {
    return ref.tokenPrefix ? `Slack token of type ${ref.tokenPrefix}` : 'no recognisable Slack token prefix';
  },
  createProvider: (s) => new SlackProvider(s),
});

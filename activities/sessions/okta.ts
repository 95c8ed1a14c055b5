/**
 * Okta: clear every IdP session of each configured user, so a stolen session dies with the leaked
 * credential. `DELETE /api/v1/users/{userId}/sessions` (+ `?oauthTokens=true` to also revoke the
 * OpenID Connect / OAuth tokens Okta issued to the user), `Authorization: SSWS <API token>`,
 * 204 No Content on success, also when the user had no session (so a re-run is a no-op).
 *
 * Okta cannot list a user's sessions: `expired` counts users whose sessions were cleared, and a
 * dry run checks each user exists (GET /api/v1/users/{userId}) and counts them.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType } from '../../contracts/errors';
import type { SessionTargetConfig } from '../../lib/systems';
import type { SessionTarget } from '../../lib/systems/provider';

type OktaConfig = Extract<SessionTargetConfig, { kind: 'okta' }>;

const TIMEOUT_MS = 10_000;
const MAX_RETRY_S = 900;

/** Seconds until Okta's rate-limit window resets: X-Rate-Limit-Reset is a UTC epoch in seconds. */
export function oktaRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const reset = Number(headers.get('x-rate-limit-reset'));
  if (Number.isFinite(reset) && reset > 0) return Math.max(1, Math.ceil(reset - now / 1000));
  const ra = headers.get('retry-after');
  return ra && /^\d+$/.test(ra.trim()) ? Math.max(1, Number(ra)) : undefined;
}

export class OktaSessionTarget implements SessionTarget {
  readonly kind = 'okta';
  private readonly base: string;

  constructor(
    readonly config: OktaConfig,
    private readonly token: string,
  ) {
    this.base = config.baseUrl.replace(/\/+$/, '');
  }

  private async call(method: 'GET' | 'DELETE', user: string): Promise<Response> {
    const path = `/api/v1/users/${encodeURIComponent(user)}${method === 'DELETE' ? `/sessions${this.config.revokeOAuthTokens ? '?oauthTokens=true' : ''}` : ''}`;
    try {
      return await fetch(this.base + path, {
        method,
        headers: { Authorization: `SSWS ${this.token}`, Accept: 'application/json' },
        redirect: 'manual',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      const e = err as { name?: string; cause?: { code?: string } };
      throw new Error(
        `okta ${method} sessions of user ${user}: ${e.name === 'TimeoutError' ? 'timed out' : `network error ${e.cause?.code ?? e.name ?? 'unknown'}`}`,
      );
    }
  }

  private failure(res: Response, user: string): Error {
    const what = `okta: user ${user}: HTTP ${res.status}`;
    if (res.status === 401 || res.status === 403) {
      return ApplicationFailure.create({
        type: ErrorType.PERMISSION_DENIED,
        message: `${what}: the API token was refused (needs okta.users.manage)`,
        nonRetryable: true,
      });
    }
    if (res.status === 404) {
      return ApplicationFailure.create({
        type: ErrorType.MISCONFIGURED,
        message: `${what}: Okta knows no such user (the inventory names it)`,
        nonRetryable: true,
      });
    }
    if (res.status === 429) {
      const s = oktaRetryAfter(res.headers);
      if (s !== undefined)
        return ApplicationFailure.create({
          type: 'UpstreamRateLimited',
          message: `${what}: rate limited`,
          nextRetryDelay: `${Math.min(s, MAX_RETRY_S)}s`,
        });
      return new Error(`${what}: rate limited`);
    }
    if (res.status >= 500) return new Error(`${what}: server error`);
    return ApplicationFailure.create({
      type: ErrorType.MISCONFIGURED,
      message: `${what}: unexpected status`,
      nonRetryable: true,
    });
  }

  async expire(opts: { dryRun?: boolean }): Promise<{ expired: number; wouldExpire?: number }> {
    let cleared = 0;
    let refused: Error | undefined;
    for (const user of this.config.users) {
      const res = await this.call(opts.dryRun ? 'GET' : 'DELETE', user);
      await res.body?.cancel().catch(() => undefined);
      if (res.status === (opts.dryRun ? 200 : 204)) {
        cleared += 1;
        continue;
      }
      const err = this.failure(res, user);
      // Transient: retry the whole target (clearing is idempotent). Permanent: still clear the other users first.
      if (!(err instanceof ApplicationFailure) || !err.nonRetryable) throw err;
      refused ??= err;
    }
    if (refused) throw refused;
    return opts.dryRun ? { expired: 0, wouldExpire: cleared } : { expired: cleared };
  }

  async close(): Promise<void> {}
}

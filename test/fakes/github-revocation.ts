/**
 * GitHub credential revocation fake, as documented for the REST API:
 *   POST /credentials/revoke { credentials: [...] } → 202; 422 on a malformed body or more than
 *   `maxPerRequest` tokens; 403 to any authenticated request (github.com) or, with `adminToken`
 *   set (GitHub Enterprise Server), 401 without that token; an hourly request budget with the
 *   x-ratelimit-* headers and 403 (or 429) once it is spent.
 *   GET /user → 200 for a live token, 401 "Bad credentials" otherwise.
 * Tokens die `revokeDelayMs` after acceptance (GitHub revokes asynchronously). Records every request.
 */
import { randomInt } from 'node:crypto';
import { startRecorder, type RecordingServer, type Reply } from './http-recorder';

export interface GitHubRevocationFakeOptions {
  maxPerRequest?: number;
  perHour?: number;
  /** Status once the hourly budget is spent: GitHub documents 403 or 429. */
  limitStatus?: 403 | 429;
  /** GitHub Enterprise Server: the revoke endpoint requires this bearer token. */
  adminToken?: string;
  revokeDelayMs?: number;
}

export interface GitHubRevocationFake extends RecordingServer {
  apiUrl: string;
  live: Set<string>;
  revoked: Set<string>;
  /** The credentials lists of every POST /credentials/revoke, accepted or not. */
  revokeCalls(): string[][];
}

export async function startGitHubRevocationFake(
  opts: GitHubRevocationFakeOptions = {},
): Promise<GitHubRevocationFake> {
  const maxPerRequest = opts.maxPerRequest ?? 1000;
  const perHour = opts.perHour ?? 60;
  const live = new Set<string>();
  const revoked = new Set<string>();
  let windowStart = 0;
  let used = 0;

  const rateHeaders = (): Record<string, string> => ({
    'x-ratelimit-limit': String(perHour),
    'x-ratelimit-remaining': String(Math.max(0, perHour - used)),
    'x-ratelimit-used': String(used),
    'x-ratelimit-reset': String(Math.ceil((windowStart + 3_600_000) / 1000)),
    'x-ratelimit-resource': 'core',
  });

  const rec = await startRecorder((r): Reply => {
    const path = r.path.split('?')[0];
    if (r.method === 'POST' && path === '/credentials/revoke') {
      const auth = r.headers.authorization;
      if (opts.adminToken ? auth !== `Bearer ${opts.adminToken}` : auth !== undefined) {
        return opts.adminToken
          ? { status: 401, body: { message: 'Requires authentication', status: '401' } }
          : {
              status: 403,
              body: { message: 'Authenticated requests are not accepted by this endpoint', status: '403' },
            };
      }
      const now = Date.now();
      if (now - windowStart >= 3_600_000) {
        windowStart = now;
        used = 0;
      }
      if (used >= perHour) {
        return {
          status: opts.limitStatus ?? 403,
          headers: rateHeaders(),
          body: {
            message: 'API rate limit exceeded for 127.0.0.1.',
            status: String(opts.limitStatus ?? 403),
          },
        };
      }
      used += 1;
      let body: { credentials?: unknown };
      try {
        body = JSON.parse(r.body) as { credentials?: unknown };
      } catch {
        return { status: 400, headers: rateHeaders(), body: { message: 'Problems parsing JSON' } };
      }
      const creds = body.credentials;
      if (
        !Array.isArray(creds) ||
        creds.length === 0 ||
        creds.length > maxPerRequest ||
        !creds.every((c) => typeof c === 'string' && c.length > 0)
      ) {
        return {
          status: 422,
          headers: rateHeaders(),
          body: {
            message: 'Validation Failed',
            status: '422',
            errors: [{ field: 'credentials', code: 'invalid' }],
          },
        };
      }
      for (const c of creds as string[]) {
        if (!live.has(c)) continue;
        const kill = () => {
          live.delete(c);
          revoked.add(c);
        };
        if (opts.revokeDelayMs) setTimeout(kill, opts.revokeDelayMs).unref();
        else kill();
      }
      return { status: 202, headers: rateHeaders(), body: {} };
    }
    if (r.method === 'GET' && path === '/user') {
      const token = /^(?:Bearer|token) (.+)$/.exec(String(r.headers.authorization ?? ''))?.[1];
      if (!token || !live.has(token))
        return {
          status: 401,
          body: {
            message: 'Bad credentials',
            documentation_url: 'https://docs.github.com/rest',
            status: '401',
          },
        };
      return { status: 200, body: { login: 'octocat', id: 1, type: 'User' } };
    }
    return { status: 404, body: { message: 'Not Found', status: '404' } };
  });
  return {
    ...rec,
    apiUrl: rec.url,
    live,
    revoked,
    revokeCalls: () =>
      rec.requests
        .filter((r) => r.method === 'POST' && r.path.startsWith('/credentials/revoke'))
        .map((r) => {
          try {
            return (JSON.parse(r.body) as { credentials: string[] }).credentials;
          } catch {
            return [];
          }
        }),
  };
}

/** A random token of the given GitHub type, shaped like the real ones (prefix + 36 base62). */
export function fakeGitHubToken(prefix = 'ghp_'): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const n = prefix === 'github_pat_' ? 82 : 36;
  let out = '';
  for (let i = 0; i < n; i++) out += alphabet[randomInt(alphabet.length)];
  return prefix + out;
}

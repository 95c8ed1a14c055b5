/**
 * GitHub's secret scanning REST API, for the activities: fetch the alert a webhook only names (the
 * one place its secret is) and, after a kill, resolve it as `revoked` with a comment linking the
 * run. The webhook itself is authenticated and parsed by the ingress (api/sources/github.ts).
 */
import { z } from 'zod';
import { credentialTypeOf } from '../../contracts/credential-types';
import type { EnrichmentRequest } from '../../contracts/enrichment';
import type { RawFinding } from '../../contracts/finding';

const API_VERSION = '2022-11-28';

/** Errors of GitHub's API: `permanent` for 401/403/404/410/422, `retryAfterSeconds` for rate limits. */
export class GitHubApiError extends Error {
  override name = 'GitHubApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly permanent: boolean,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

/**
 * The alert's API URL. A URL from the delivery is used only when it points at the configured API:
 * the request carries our token, and must never be steered to another host.
 */
export function alertApiUrl(
  req: { alertUrl?: string; repository: string; alertNumber: number },
  apiUrl: string,
): string {
  const base = apiUrl.replace(/\/+$/, '');
  const built = `${base}/repos/${req.repository}/secret-scanning/alerts/${req.alertNumber}`;
  if (
    req.alertUrl &&
    req.alertUrl.startsWith(`${base}/`) &&
    req.alertUrl.endsWith(`/secret-scanning/alerts/${req.alertNumber}`)
  )
    return req.alertUrl;
  return built;
}

async function call(
  fetchImpl: typeof fetch,
  url: string,
  token: string,
  init: RequestInit = {},
): Promise<Response> {
  let res: Response;
  try {
    res = await fetchImpl(url, {
      ...init,
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/vnd.github+json',
        'x-github-api-version': API_VERSION,
        'user-agent': 'secret-kill-switch',
        ...(init.body ? { 'content-type': 'application/json' } : {}),
      },
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new GitHubApiError(`GitHub unreachable: ${(err as Error).message}`, 0, false);
  }
  if (res.ok) return res;
  const body = (await res.text().catch(() => '')).slice(0, 300);
  const remaining = res.headers.get('x-ratelimit-remaining');
  const retryAfter = Number(res.headers.get('retry-after'));
  const reset = Number(res.headers.get('x-ratelimit-reset'));
  if (
    res.status === 429 ||
    (res.status === 403 && (remaining === '0' || (Number.isFinite(retryAfter) && retryAfter > 0)))
  ) {
    const wait =
      Number.isFinite(retryAfter) && retryAfter > 0
        ? retryAfter
        : Number.isFinite(reset) && reset > 0
          ? Math.max(1, reset - Date.now() / 1000)
          : 60;
    throw new GitHubApiError(`GitHub rate limit (${res.status})`, res.status, false, Math.ceil(wait));
  }
  const permanent = [400, 401, 403, 404, 410, 422].includes(res.status);
  throw new GitHubApiError(`GitHub answered ${res.status}: ${body}`, res.status, permanent);
}

const alertSchema = z
  .object({
    number: z.number().int(),
    url: z.string().optional(),
    html_url: z.string().optional(),
    secret_type: z.string().max(200),
    secret_type_display_name: z.string().max(200).nullish(),
    secret: z
      .string()
      .min(1)
      .max(16 * 1024),
    validity: z.enum(['active', 'inactive', 'unknown']).nullish(),
    publicly_leaked: z.boolean().nullish(),
    first_location_detected: z
      .object({
        path: z.string().nullish(),
        start_line: z.number().int().nullish(),
        commit_sha: z.string().nullish(),
        blob_url: z.string().nullish(),
      })
      .loose()
      .nullish(),
  })
  .loose();

/** GETs the alert (the only place its secret is) and returns it as a RawFinding. */
export async function fetchGitHubAlertFinding(
  req: Extract<EnrichmentRequest, { kind: 'github_alert' }>,
  opts: { apiUrl: string; token: string; fetch?: typeof fetch },
): Promise<RawFinding> {
  const url = alertApiUrl(req, opts.apiUrl);
  const res = await call(opts.fetch ?? fetch, url, opts.token);
  const r = alertSchema.safeParse(await res.json().catch(() => null));
  if (!r.success)
    throw new GitHubApiError(
      `unexpected alert shape: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`,
      200,
      true,
    );
  const a = r.data;
  const loc = a.first_location_detected;
  const credentialType = credentialTypeOf(a.secret_type, a.secret);
  // GitHub's validity: active = a live check succeeded; inactive = it failed; unknown = not checked.
  const validity =
    a.validity === 'active' ? 'verified' : a.validity === 'inactive' ? 'unverified' : 'unknown';
  return {
    source: 'github',
    scanner: 'github-secret-scanning',
    findingId: `${req.repository}#${a.number}`,
    credentialType,
    secret: a.secret,
    ...(credentialType === 'generic' ? { credentialRef: { secretType: a.secret_type } } : {}),
    location: {
      repository: req.repository,
      file: loc?.path ?? undefined,
      line: loc?.start_line ?? undefined,
      commit: loc?.commit_sha && /^[0-9a-f]{7,64}$/.test(loc.commit_sha) ? loc.commit_sha : undefined,
      url: a.html_url && /^https?:\/\//.test(a.html_url) ? a.html_url : undefined,
    },
    severity: a.publicly_leaked || validity === 'verified' ? 'critical' : 'high',
    validity,
    publiclyLeaked: a.publicly_leaked ?? false,
    closeLoop: { kind: 'github_alert', url },
  };
}

/** Resolves the alert as revoked, with a comment linking the run. Already resolved is success. */
export async function resolveGitHubAlert(opts: {
  url: string;
  apiUrl?: string;
  token: string;
  runUrl: string;
  fetch?: typeof fetch;
}): Promise<void> {
  if (opts.apiUrl && !opts.url.startsWith(`${opts.apiUrl.replace(/\/+$/, '')}/`)) {
    throw new GitHubApiError('alert URL is not on the configured GitHub API', 0, true);
  }
  const comment = `Revoked by Secret Kill Switch: ${opts.runUrl}`.slice(0, 280);
  try {
    await call(opts.fetch ?? fetch, opts.url, opts.token, {
      method: 'PATCH',
      body: JSON.stringify({ state: 'resolved', resolution: 'revoked', resolution_comment: comment }),
    });
  } catch (err) {
    // 422 on an alert that is already resolved: the loop is closed either way.
    if (err instanceof GitHubApiError && err.status === 422 && /resolved/i.test(err.message)) return;
    throw err;
  }
}

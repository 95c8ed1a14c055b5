/**
 * GitGuardian's REST API, for the activities: after a kill, resolve the incident with
 * `secret_revoked: true`. The webhook itself is authenticated and parsed by the ingress
 * (api/sources/gitguardian.ts).
 */

/** POST /v1/incidents/secrets/{id}/resolve with secret_revoked: true. Already resolved is success. */
export async function resolveGitGuardianIncident(opts: {
  apiUrl: string;
  token: string;
  incidentId: number;
  fetch?: typeof fetch;
}): Promise<void> {
  const url = `${opts.apiUrl.replace(/\/+$/, '')}/v1/incidents/secrets/${opts.incidentId}/resolve`;
  let res: Response;
  try {
    res = await (opts.fetch ?? fetch)(url, {
      method: 'POST',
      headers: {
        authorization: `Token ${opts.token}`,
        'content-type': 'application/json',
        'user-agent': 'secret-kill-switch',
      },
      body: JSON.stringify({ secret_revoked: true }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new Error(`GitGuardian unreachable: ${(err as Error).message}`);
  }
  if (res.ok || res.status === 409) return;
  const body = (await res.text().catch(() => '')).slice(0, 300);
  if (res.status === 429) {
    const ra = Number(res.headers.get('retry-after'));
    throw Object.assign(new Error('GitGuardian rate limit'), {
      retryAfterSeconds: Number.isFinite(ra) && ra > 0 ? ra : 60,
    });
  }
  const err = new Error(`GitGuardian answered ${res.status}: ${body}`);
  if ([400, 401, 403, 404].includes(res.status)) Object.assign(err, { permanent: true });
  throw err;
}

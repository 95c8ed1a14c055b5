/** GitGuardian public API fake: POST /v1/incidents/secrets/{id}/resolve (Token auth), recording requests. */
import { startRecorder, type RecordingServer } from './http-recorder';

export interface GitGuardianFake extends RecordingServer {
  token: string;
  resolved: Map<number, { secret_revoked: boolean }>;
}

export async function startGitGuardianFake(token = `gg-${'t'.repeat(40)}`): Promise<GitGuardianFake> {
  const resolved = new Map<number, { secret_revoked: boolean }>();
  const rec = await startRecorder((r) => {
    if (r.headers.authorization !== `Token ${token}`)
      return { status: 401, body: { detail: 'Invalid API key.' } };
    const m = /^\/v1\/incidents\/secrets\/(\d+)\/resolve$/.exec(r.path);
    if (r.method !== 'POST' || !m) return { status: 404, body: { detail: 'Not found.' } };
    const id = Number(m[1]);
    const body = JSON.parse(r.body || '{}') as { secret_revoked?: unknown };
    if (typeof body.secret_revoked !== 'boolean')
      return { status: 400, body: { secret_revoked: ['This field is required.'] } };
    if (resolved.has(id)) return { status: 409, body: { detail: 'Incident is already resolved.' } };
    resolved.set(id, { secret_revoked: body.secret_revoked });
    return { status: 200, body: { id, status: 'RESOLVED', secret_revoked: body.secret_revoked } };
  });
  return { ...rec, token, resolved };
}

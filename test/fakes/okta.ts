/**
 * Okta Management API fake, for the user-session target: `GET /api/v1/users/{id or login}` and
 * `DELETE /api/v1/users/{id or login}/sessions[?oauthTokens=true]` (204 No Content, also for a
 * user with no session), `Authorization: SSWS <token>` (401 E0000011 otherwise), 404 E0000007 for an
 * unknown user, and scripted 429s with Okta's X-Rate-Limit-* headers. Records every request and
 * keeps each user's live sessions and OAuth tokens.
 */
import { startRecorder, type RecordingServer } from './http-recorder';

export interface OktaUser {
  id: string;
  login: string;
  sessions: number;
  oauthTokens: number;
}

export interface OktaFake extends RecordingServer {
  token: string;
  users: Map<string, OktaUser>;
  addUser(login: string, sessions?: number, oauthTokens?: number): OktaUser;
}

const error = (status: number, code: string, summary: string) => ({
  status,
  body: {
    errorCode: code,
    errorSummary: summary,
    errorLink: code,
    errorId: `oae${Math.random().toString(36).slice(2, 12)}`,
    errorCauses: [],
  },
});

export async function startOktaFake(token = `00${'x'.repeat(20)}okta`): Promise<OktaFake> {
  const users = new Map<string, OktaUser>();
  const find = (idOrLogin: string) =>
    users.get(idOrLogin) ?? [...users.values()].find((u) => u.login === idOrLogin);
  const rec = await startRecorder((r) => {
    if (r.headers.authorization !== `SSWS ${token}`) return error(401, 'E0000011', 'Invalid token provided');
    const url = new URL(r.path, 'http://okta.local');
    const m = /^\/api\/v1\/users\/([^/]+)(\/sessions)?$/.exec(url.pathname);
    if (!m) return error(404, 'E0000022', 'The endpoint does not support the provided HTTP method');
    const user = find(decodeURIComponent(m[1]!));
    if (!user)
      return error(404, 'E0000007', `Not found: Resource not found: ${decodeURIComponent(m[1]!)} (User)`);
    if (!m[2] && r.method === 'GET')
      return { status: 200, body: { id: user.id, status: 'ACTIVE', profile: { login: user.login } } };
    if (m[2] && r.method === 'DELETE') {
      user.sessions = 0;
      if (url.searchParams.get('oauthTokens') === 'true') user.oauthTokens = 0;
      return { status: 204 };
    }
    return error(405, 'E0000022', 'The endpoint does not support the provided HTTP method');
  });
  return {
    ...rec,
    token,
    users,
    addUser(login, sessions = 2, oauthTokens = 1) {
      const u = { id: `00u${Math.random().toString(36).slice(2, 14)}`, login, sessions, oauthTokens };
      users.set(u.id, u);
      return u;
    },
  };
}

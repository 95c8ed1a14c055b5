/**
 * A homegrown service with its own admin API, for the http recipe provider. API keys look like
 * `hg_<prefix>_<secret>`; the prefix is public (scanners report it), the rest is the secret.
 *
 *   GET    /admin/keys/by-prefix/{prefix}  → 200 { key: { id, prefix, revoked } } for an active key, 404 otherwise;
 *                                            with ?include=revoked also a revoked one
 *   DELETE /admin/keys/{id}                → 204; 404 when no such active key
 *   POST   /admin/keys  { owner }          → 201 { id, prefix, secret }; the same Idempotency-Key returns the same key
 *   POST   /admin/keys/{id}/sessions/revoke → 200 { terminated: n }
 *   GET    /api/whoami (Bearer <api key>)  → 200 for a live key, 401 for a revoked or unknown one
 *
 * Admin calls need `Authorization: Bearer <admin token>` (401 otherwise, 403 for the read-only token).
 * Records every request.
 */
import { randomBytes } from 'node:crypto';
import { startRecorder, type RecordingServer } from './http-recorder';

export interface ApiKey {
  id: string;
  prefix: string;
  secret: string;
  revoked: boolean;
  sessions: number;
}

export interface HomegrownFake extends RecordingServer {
  adminToken: string;
  readOnlyToken: string;
  keys: Map<string, ApiKey>;
  /** Creates a live key; returns it with its full value. */
  createKey(sessions?: number): ApiKey & { value: string };
  valueOf(k: ApiKey): string;
}

export async function startHomegrownFake(): Promise<HomegrownFake> {
  const adminToken = `adm-${randomBytes(16).toString('hex')}`;
  const readOnlyToken = `ro-${randomBytes(16).toString('hex')}`;
  const keys = new Map<string, ApiKey>();
  const idempotent = new Map<string, string>();
  const valueOf = (k: ApiKey) => `hg_${k.prefix}_${k.secret}`;
  const newKey = (sessions = 0): ApiKey => {
    const k = {
      id: `key_${randomBytes(4).toString('hex')}`,
      prefix: randomBytes(4).toString('hex'),
      secret: randomBytes(18).toString('base64url'),
      revoked: false,
      sessions,
    };
    keys.set(k.id, k);
    return k;
  };
  const rec = await startRecorder((r) => {
    const url = new URL(r.path, 'http://homegrown.local');
    const p = url.pathname;
    if (p === '/api/whoami' && r.method === 'GET') {
      const presented = (r.headers.authorization ?? '').replace(/^Bearer /, '');
      const k = [...keys.values()].find((x) => valueOf(x) === presented);
      return k && !k.revoked
        ? { status: 200, body: { key: k.id } }
        : { status: 401, body: { error: 'invalid api key' } };
    }
    if (!p.startsWith('/admin/')) return { status: 404, body: { error: 'no route' } };
    const auth = r.headers.authorization;
    if (auth === `Bearer ${readOnlyToken}` && r.method !== 'GET')
      return { status: 403, body: { error: 'read-only token' } };
    if (auth !== `Bearer ${adminToken}` && auth !== `Bearer ${readOnlyToken}`)
      return { status: 401, body: { error: 'admin token required' } };

    let m: RegExpExecArray | null;
    if ((m = /^\/admin\/keys\/by-prefix\/([^/]+)$/.exec(p)) && r.method === 'GET') {
      const prefix = decodeURIComponent(m[1]!);
      const withRevoked = url.searchParams.get('include') === 'revoked';
      const k = [...keys.values()].find((x) => x.prefix === prefix && (withRevoked || !x.revoked));
      return k
        ? { status: 200, body: { key: { id: k.id, prefix: k.prefix, revoked: k.revoked } } }
        : { status: 404, body: { error: 'no such key' } };
    }
    if ((m = /^\/admin\/keys\/([^/]+)$/.exec(p)) && r.method === 'DELETE') {
      const k = keys.get(decodeURIComponent(m[1]!));
      if (!k || k.revoked) return { status: 404, body: { error: 'no such key' } };
      k.revoked = true;
      return { status: 204 };
    }
    if ((m = /^\/admin\/keys\/([^/]+)\/sessions\/revoke$/.exec(p)) && r.method === 'POST') {
      const k = keys.get(decodeURIComponent(m[1]!));
      if (!k) return { status: 404, body: { error: 'no such key' } };
      const terminated = k.sessions;
      k.sessions = 0;
      return { status: 200, body: { terminated } };
    }
    if (p === '/admin/keys' && r.method === 'POST') {
      let body: { owner?: unknown };
      try {
        body = JSON.parse(r.body);
      } catch {
        return { status: 400, body: { error: 'JSON body required' } };
      }
      if (typeof body.owner !== 'string' || !body.owner)
        return { status: 422, body: { error: 'owner required' } };
      const token = r.headers['idempotency-key'];
      const again = typeof token === 'string' ? keys.get(idempotent.get(token) ?? '') : undefined;
      const k = again ?? newKey();
      if (typeof token === 'string') idempotent.set(token, k.id);
      return { status: 201, body: { id: k.id, prefix: k.prefix, secret: valueOf(k) } };
    }
    return { status: 405, body: { error: 'method not allowed' } };
  });
  return {
    ...rec,
    adminToken,
    readOnlyToken,
    keys,
    valueOf,
    createKey(sessions = 0) {
      const k = newKey(sessions);
      return Object.assign(k, { value: valueOf(k) });
    },
  };
}

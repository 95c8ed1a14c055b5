/**
 * Slack Web API fake: `chat.postMessage` as documented (bearer token, form or JSON body, `ok`
 * envelope, 429 with Retry-After when scripted). Records every request.
 * `auth.test` and `auth.revoke` work over `live` (tokens that authenticate; the bot token is one):
 * auth.revoke revokes the calling token (`test=1`: only pretends), a revoked token then answers
 * `token_revoked`, an unknown one `invalid_auth`.
 */
import { startRecorder, type RecordedRequest, type RecordingServer } from './http-recorder';

export interface SlackFake extends RecordingServer {
  apiUrl: string;
  token: string;
  /** Tokens that authenticate auth.test / auth.revoke. */
  live: Set<string>;
  revoked: Set<string>;
  messages(): Array<{ channel: string; text: string; blocks: unknown[] }>;
}

export function parseSlackBody(r: RecordedRequest): Record<string, unknown> {
  const type = String(r.headers['content-type'] ?? '');
  if (type.includes('application/json')) return JSON.parse(r.body) as Record<string, unknown>;
  const params = new URLSearchParams(r.body);
  const out: Record<string, unknown> = {};
  for (const [k, v] of params) out[k] = k === 'blocks' ? JSON.parse(v) : v;
  return out;
}

export async function startSlackFake(token = 'xoxb-test-token'): Promise<SlackFake> {
  let ts = 1_700_000_000;
  const live = new Set<string>([token]);
  const revoked = new Set<string>();
  const rec = await startRecorder((r) => {
    if (r.method === 'POST' && (r.path.startsWith('/api/auth.test') || r.path.startsWith('/api/auth.revoke'))) {
      const body = parseSlackBody(r);
      const caller = /^Bearer (.+)$/.exec(String(r.headers.authorization ?? ''))?.[1] ?? (typeof body.token === 'string' ? body.token : undefined);
      if (!caller) return { status: 200, body: { ok: false, error: 'not_authed' } };
      if (!live.has(caller)) return { status: 200, body: { ok: false, error: revoked.has(caller) ? 'token_revoked' : 'invalid_auth' } };
      if (r.path.startsWith('/api/auth.test')) {
        return { status: 200, body: { ok: true, url: 'https://acme.slack.com/', team: 'Acme', user: 'leaky', team_id: 'T0001', user_id: 'U0001' } };
      }
      if (body.test === '1' || body.test === 'true' || body.test === true) return { status: 200, body: { ok: true, revoked: false } };
      live.delete(caller);
      revoked.add(caller);
      return { status: 200, body: { ok: true, revoked: true } };
    }
    if (r.headers.authorization !== `Bearer ${token}`) return { status: 200, body: { ok: false, error: 'invalid_auth' } };
    if (r.method !== 'POST' || !r.path.startsWith('/api/chat.postMessage')) return { status: 200, body: { ok: false, error: 'unknown_method' } };
    const body = parseSlackBody(r);
    if (!body.channel) return { status: 200, body: { ok: false, error: 'channel_not_found' } };
    if (!body.text && !body.blocks) return { status: 200, body: { ok: false, error: 'no_text' } };
    ts += 1;
    return { status: 200, body: { ok: true, channel: body.channel, ts: `${ts}.000100`, message: { text: body.text } } };
  });
  return {
    ...rec,
    apiUrl: `${rec.url}/api/`,
    token,
    live,
    revoked,
    messages: () =>
      rec.requests
        .filter((r) => r.path.startsWith('/api/chat.postMessage'))
        .map((r) => parseSlackBody(r) as { channel: string; text: string; blocks: unknown[] }),
  };
}

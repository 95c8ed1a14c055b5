/**
 * Slack Web API fake: `chat.postMessage` and `chat.update` as documented (bearer token, form or
 * JSON body, `ok` envelope, channel ids, `message_not_found`, 429 with Retry-After when scripted),
 * `users.info` over `users` (id -> e-mail), and the `response_url` endpoint Slack gives every
 * interaction (`/response/<anything>`). Records every request.
 * `auth.test` and `auth.revoke` work over `live` (tokens that authenticate; the bot token is one):
 * auth.revoke revokes the calling token (`test=1`: only pretends), a revoked token then answers
 * `token_revoked`, an unknown one `invalid_auth`.
 */
import { randomBytes } from 'node:crypto';
import { startRecorder, type RecordedRequest, type RecordingServer } from './http-recorder';

export interface SlackMessageState {
  /** The channel as the poster named it (`#security-incidents`). */
  channel: string;
  /** The channel id Slack answers with; chat.update needs it. */
  channelId: string;
  ts: string;
  text: string;
  blocks: unknown[];
}

export interface SlackMessageRequest {
  method: 'chat.postMessage' | 'chat.update';
  channel: string;
  ts?: string;
  text: string;
  blocks: unknown[];
  /** When the fake accepted it (ms since the epoch). */
  at: number;
}

export interface SlackFakeOptions {
  /**
   * Slack's documented chat.postMessage limit: about one message per second per channel, short
   * bursts tolerated. Beyond it: HTTP 429 `ratelimited` with Retry-After. Unset: no limit.
   */
  postMessagePerSecond?: number;
  /**
   * chat.update's documented tier (Tier 3: about 50 calls per minute per workspace). Beyond it: 429
   * with Retry-After. Unset: no limit.
   */
  updatePerMinute?: number;
}

export interface SlackFake extends RecordingServer {
  apiUrl: string;
  token: string;
  /** The app's signing secret: what the kill switch verifies interactions with. */
  signingSecret: string;
  /** Tokens that authenticate auth.test / auth.revoke. */
  live: Set<string>;
  revoked: Set<string>;
  /** Slack user id -> e-mail, for users.info. */
  users: Map<string, string>;
  /** While set, chat.postMessage and chat.update answer `{ ok: false, error }` (a channel that is gone). */
  refuse: string | null;
  /** The current state of every message, one entry per message (first post order). */
  messages(): SlackMessageState[];
  /** Every accepted chat.postMessage / chat.update, in order. */
  messageRequests(): SlackMessageRequest[];
  /** Every accepted state of the message `ts`: its post, then each update. */
  historyOf(ts: string): SlackMessageRequest[];
  /** What the kill switch posted to response_urls (ephemeral answers to buttons). */
  responses(): Array<{ path: string; body: Record<string, unknown> }>;
  /** How many chat.postMessage / chat.update calls were answered 429 by the rate limits. */
  rateLimited(): number;
}

export function parseSlackBody(r: RecordedRequest): Record<string, unknown> {
  const type = String(r.headers['content-type'] ?? '');
  if (type.includes('application/json')) return JSON.parse(r.body) as Record<string, unknown>;
  const params = new URLSearchParams(r.body);
  const out: Record<string, unknown> = {};
  for (const [k, v] of params) out[k] = k === 'blocks' ? JSON.parse(v) : v;
  return out;
}

export async function startSlackFake(
  token = 'xoxb-test-token',
  opts: SlackFakeOptions = {},
): Promise<SlackFake> {
  /** Accepted chat.postMessage times per channel, for the rate limit (a sliding one-second window). */
  const posted = new Map<string, number[]>();
  /** Accepted chat.update times (the workspace's sliding one-minute window). */
  const updated: number[] = [];
  let rateLimited = 0;
  let ts = 1_700_000_000;
  const live = new Set<string>([token]);
  const revoked = new Set<string>();
  const users = new Map<string, string>();
  const states = new Map<string, SlackMessageState>();
  const accepted: SlackMessageRequest[] = [];
  const channelIds = new Map<string, string>();
  const channelId = (name: string) => {
    if (/^[CGD][A-Z0-9]{6,}$/.test(name)) return name;
    if (!channelIds.has(name)) channelIds.set(name, `C${String(1_000_000 + channelIds.size)}`);
    return channelIds.get(name)!;
  };
  const fake = { refuse: null as string | null };
  const rec = await startRecorder((r) => {
    if (r.method === 'POST' && r.path.startsWith('/response/')) return { status: 200, body: { ok: true } };
    if (
      r.method === 'POST' &&
      (r.path.startsWith('/api/auth.test') || r.path.startsWith('/api/auth.revoke'))
    ) {
      const body = parseSlackBody(r);
      const caller =
        /^Bearer (.+)$/.exec(String(r.headers.authorization ?? ''))?.[1] ??
        (typeof body.token === 'string' ? body.token : undefined);
      if (!caller) return { status: 200, body: { ok: false, error: 'not_authed' } };
      if (!live.has(caller))
        return {
          status: 200,
          body: { ok: false, error: revoked.has(caller) ? 'token_revoked' : 'invalid_auth' },
        };
      if (r.path.startsWith('/api/auth.test')) {
        return {
          status: 200,
          body: {
            ok: true,
            url: 'https://acme.slack.com/',
            team: 'Acme',
            user: 'leaky',
            team_id: 'T0001',
            user_id: 'U0001',
          },
        };
      }
      if (body.test === '1' || body.test === 'true' || body.test === true)
        return { status: 200, body: { ok: true, revoked: false } };
      live.delete(caller);
      revoked.add(caller);
      return { status: 200, body: { ok: true, revoked: true } };
    }
    if (r.headers.authorization !== `Bearer ${token}`)
      return { status: 200, body: { ok: false, error: 'invalid_auth' } };
    if (r.method !== 'POST') return { status: 200, body: { ok: false, error: 'unknown_method' } };
    const body = parseSlackBody(r);
    if (r.path.startsWith('/api/users.info')) {
      const id = String(body.user ?? '');
      if (!users.has(id)) return { status: 200, body: { ok: false, error: 'user_not_found' } };
      return { status: 200, body: { ok: true, user: { id, profile: { email: users.get(id) } } } };
    }
    const post = r.path.startsWith('/api/chat.postMessage');
    const update = r.path.startsWith('/api/chat.update');
    if (!post && !update) return { status: 200, body: { ok: false, error: 'unknown_method' } };
    if (fake.refuse) return { status: 200, body: { ok: false, error: fake.refuse } };
    if (!body.channel) return { status: 200, body: { ok: false, error: 'channel_not_found' } };
    if (!body.text && !body.blocks) return { status: 200, body: { ok: false, error: 'no_text' } };
    const text = String(body.text ?? '');
    const blocks = (body.blocks ?? []) as unknown[];
    if (post && opts.postMessagePerSecond) {
      const now = Date.now();
      const recent = (posted.get(String(body.channel)) ?? []).filter((t) => now - t < 1000);
      posted.set(String(body.channel), recent);
      if (recent.length >= opts.postMessagePerSecond) {
        rateLimited += 1;
        const retryAfter = Math.max(1, Math.ceil((recent[0]! + 1000 - now) / 1000));
        return {
          status: 429,
          headers: { 'retry-after': String(retryAfter) },
          body: { ok: false, error: 'ratelimited' },
        };
      }
      recent.push(now);
    }
    if (update && opts.updatePerMinute) {
      const now = Date.now();
      while (updated.length && now - updated[0]! >= 60_000) updated.shift();
      if (updated.length >= opts.updatePerMinute) {
        rateLimited += 1;
        const retryAfter = Math.max(1, Math.ceil((updated[0]! + 60_000 - now) / 1000));
        return {
          status: 429,
          headers: { 'retry-after': String(retryAfter) },
          body: { ok: false, error: 'ratelimited' },
        };
      }
      updated.push(now);
    }
    if (post) {
      ts += 1;
      const id = channelId(String(body.channel));
      const state: SlackMessageState = {
        channel: String(body.channel),
        channelId: id,
        ts: `${ts}.000100`,
        text,
        blocks,
      };
      states.set(state.ts, state);
      accepted.push({
        method: 'chat.postMessage',
        channel: state.channel,
        ts: state.ts,
        text,
        blocks,
        at: Date.now(),
      });
      return { status: 200, body: { ok: true, channel: id, ts: state.ts, message: { text } } };
    }
    // chat.update: the channel must be the id Slack gave, the ts one of its messages there.
    const state = states.get(String(body.ts ?? ''));
    if (!state || state.channelId !== body.channel)
      return { status: 200, body: { ok: false, error: 'message_not_found' } };
    state.text = text;
    state.blocks = blocks;
    accepted.push({
      method: 'chat.update',
      channel: String(body.channel),
      ts: state.ts,
      text,
      blocks,
      at: Date.now(),
    });
    return { status: 200, body: { ok: true, channel: state.channelId, ts: state.ts, text } };
  });
  return Object.assign(fake, {
    ...rec,
    apiUrl: `${rec.url}/api/`,
    token,
    signingSecret: randomBytes(16).toString('hex'),
    live,
    revoked,
    users,
    messages: () => [...states.values()].map((m) => ({ ...m })),
    messageRequests: () => [...accepted],
    historyOf: (messageTs: string) => accepted.filter((m) => m.ts === messageTs),
    rateLimited: () => rateLimited,
    responses: () =>
      rec.requests
        .filter((r) => r.path.startsWith('/response/'))
        .map((r) => ({ path: r.path, body: JSON.parse(r.body || '{}') as Record<string, unknown> })),
  });
}

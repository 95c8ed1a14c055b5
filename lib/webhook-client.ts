/**
 * The client side of the kill switch, for the project's own tools (`npm run send-test-detection`,
 * `killswitch`): find the signing secret and post a body signed the Standard Webhooks way (`v1,` +
 * base64 HMAC-SHA256 over `id.timestamp.body`), find the API token, and say why a call failed.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';

/** The data folder as the server resolves it (lib/config.ts): KILLSWITCH_DATA_DIR, default .data. */
export function dataDirOf(env: Record<string, string | undefined>): string {
  return env.KILLSWITCH_DATA_DIR || '.data';
}

/** The local API token `npm start` generates (an admin token of this process only), in the data folder. */
export const LOCAL_API_TOKEN_FILE = 'api-token';

/**
 * The bearer for the read and admin API: KILLSWITCH_API_TOKEN when it is set (even empty: then
 * none), else the local token `npm start` keeps in the data folder, else undefined.
 */
export function resolveApiToken(env: Record<string, string | undefined>): {
  token?: string;
  from: string;
} {
  if (env.KILLSWITCH_API_TOKEN !== undefined) {
    const token = env.KILLSWITCH_API_TOKEN.trim();
    return { ...(token ? { token } : {}), from: 'KILLSWITCH_API_TOKEN' };
  }
  const file = path.resolve(dataDirOf(env), LOCAL_API_TOKEN_FILE);
  try {
    const token = readFileSync(file, 'utf8').trim();
    return { ...(token ? { token } : {}), from: file };
  } catch {
    return { from: file };
  }
}

/** `cannot reach <url>: ECONNREFUSED`, never undici's bare "fetch failed". */
export function describeFetchError(url: string, err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  const cause =
    e.name === 'TimeoutError'
      ? 'no answer in time'
      : (e.cause?.code ?? e.cause?.message ?? e.message ?? String(err));
  return `cannot reach ${url}: ${cause}`;
}

/**
 * The secret to sign with: the file given, else the first of GENERIC_WEBHOOK_SECRETS, else the
 * one `npm start` keeps in the data folder. Throws saying where it looked.
 */
export function resolveSigningSecret(opts: {
  secretFile?: string;
  env: Record<string, string | undefined>;
}): string {
  const fromFile = (file: string) => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new Error(
        `cannot read the signing secret from ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  };
  const secret = opts.secretFile
    ? fromFile(opts.secretFile)
    : (opts.env.GENERIC_WEBHOOK_SECRETS?.split(/[\s,]+/).find(Boolean) ??
      fromFile(path.join(dataDirOf(opts.env), 'generic-webhook-secret')));
  try {
    new Webhook(secret);
  } catch {
    throw new Error('the signing secret is not a Standard Webhooks secret (whsec_<base64>)');
  }
  return secret;
}

export interface SignedResponse {
  status: number;
  /** Parsed JSON, or the text when it is not JSON. */
  body: unknown;
  text: string;
}

/** Posts `body` (JSON) to `url` with a fresh webhook id, signed with `secret`. */
export async function postSigned(
  url: string,
  body: unknown,
  secret: string,
  opts: { timeoutMs?: number } = {},
): Promise<SignedResponse> {
  const raw = JSON.stringify(body);
  const id = `msg_${randomUUID()}`;
  const now = new Date();
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': new Webhook(secret).sign(id, now, raw),
    },
    body: raw,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed, text };
}

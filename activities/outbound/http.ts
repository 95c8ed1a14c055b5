/**
 * The HTTP destinations: `json` (the event envelope, signed) and every other Formatter, POSTed by
 * one transport. Success is a 2xx; 408, 429 and 5xx, timeouts and connection errors may succeed
 * later (retryable, honouring Retry-After); any other 4xx is the destination refusing the request
 * for good. The answer body is never read into a result (it could echo anything).
 *
 * Signing (`json` with a secret), so receivers can verify with either scheme:
 *   X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>
 *   webhook-id / webhook-timestamp / webhook-signature: Standard Webhooks (v1, HMAC-SHA256 of
 *   `<id>.<timestamp>.<body>`, keyed with the secret's bytes as given).
 */
import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { KillSwitchEvent } from '../../contracts/events';
import type { DeliveryResult, FormattedRequest, Formatter, OutboundSubscription, Transport } from './types';

/** The envelope as JSON, and its signatures when the subscription has a secret. */
export const jsonFormatter: Formatter = (event, sub) => {
  const body = JSON.stringify(event);
  return {
    contentType: 'application/json',
    body,
    headers: sub.secret ? signatureHeaders(event.id, body, sub.secret) : {},
  };
};

/** Both signature schemes over the exact bytes sent. `now` for tests. */
export function signatureHeaders(
  eventId: string,
  body: string,
  secret: string,
  now = new Date(),
): Record<string, string> {
  const hmac = createHmac('sha256', secret).update(body, 'utf8').digest('hex');
  const timestamp = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const standard = new Webhook(Buffer.from(secret, 'utf8'), { format: 'raw' }).sign(eventId, timestamp, body);
  return {
    'x-webhook-signature': `sha256=${hmac}`,
    'webhook-id': eventId,
    'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    'webhook-signature': standard,
  };
}

/** Milliseconds a Retry-After header asks for (seconds or an HTTP date), capped at 10 minutes. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const s = Number(value);
  const ms = Number.isFinite(s) ? s * 1000 : Date.parse(value) - now;
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), 600_000) : undefined;
}

const RETRYABLE_4XX = new Set([408, 429]);

export function httpTransport(format: Formatter, fetchImpl: typeof fetch = fetch): Transport {
  return {
    async deliver(
      event: KillSwitchEvent,
      sub: OutboundSubscription,
      signal: AbortSignal,
    ): Promise<DeliveryResult> {
      if (!sub.url) return { ok: false, retryable: false, error: 'the subscription has no url' };
      let req: FormattedRequest;
      try {
        req = format(event, sub);
      } catch (err) {
        return {
          ok: false,
          retryable: false,
          error: `could not format the event: ${(err as Error).message}`.slice(0, 300),
        };
      }
      try {
        const res = await fetchImpl(sub.url, {
          method: 'POST',
          headers: { 'content-type': req.contentType, 'user-agent': 'secret-kill-switch', ...req.headers },
          body: req.body,
          redirect: 'manual',
          signal: AbortSignal.any([signal, AbortSignal.timeout(sub.timeoutMs)]),
        });
        await res.body?.cancel().catch(() => undefined);
        if (res.status >= 200 && res.status < 300)
          return { ok: true, statusCode: res.status, retryable: false };
        const retryable = res.status >= 500 || RETRYABLE_4XX.has(res.status);
        const after = retryAfterMs(res.headers.get('retry-after'));
        return {
          ok: false,
          statusCode: res.status,
          retryable,
          ...(after !== undefined ? { retryAfterMs: after } : {}),
          error: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`.slice(0, 200),
        };
      } catch (err) {
        const e = err as Error & { cause?: { code?: string; message?: string } };
        // The cause names what failed (ECONNREFUSED, or "bad port" with no code); never the URL.
        const what =
          e.name === 'TimeoutError'
            ? `no answer within ${sub.timeoutMs} ms`
            : (e.cause?.code ?? e.cause?.message?.slice(0, 100) ?? e.name ?? 'error');
        return { ok: false, retryable: true, error: `could not deliver: ${what}` };
      }
    },
  };
}

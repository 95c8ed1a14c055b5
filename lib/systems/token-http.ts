/**
 * What the token providers (GitHub, Slack) share: one HTTP call with a deadline, and the two
 * failure shapes of a SaaS API. Messages never carry the token: it only ever travels in a header
 * or a request body, and anything echoed back is scrubbed before it becomes an error.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType } from '../../contracts/errors';

/**
 * Retryable: the owner throttled us (or our own budget is spent). Thrown with `nextRetryDelay`
 * so Temporal waits exactly as long as the owner asked instead of its usual backoff.
 */
export const RATE_LIMITED = 'RateLimited';

export function rateLimited(message: string, delayMs: number): ApplicationFailure {
  return ApplicationFailure.create({
    type: RATE_LIMITED,
    message,
    nextRetryDelay: Math.max(1_000, Math.ceil(delayMs)),
  });
}

export function permanent(type: ErrorType, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** The leaked value is still accepted by its owner; retryable (the owner may revoke asynchronously). */
export function stillValid(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: ErrorType.CREDENTIAL_STILL_VALID, message, nonRetryable: false });
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  /** Parsed JSON, or undefined when the body was empty or not JSON. */
  json: unknown;
}

/** Network failures and timeouts become plain (transient) errors whose message names only `what`. */
export async function call(
  url: string,
  init: RequestInit,
  timeoutMs: number,
  what: string,
): Promise<HttpAnswer> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const e = err as Error;
    const reason =
      e.name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : `${e.message}${(e.cause as Error | undefined)?.message ? ` (${(e.cause as Error).message})` : ''}`;
    throw new Error(`${what}: ${reason}`);
  }
  const text = await res.text().catch(() => '');
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json };
}

/** Retry-After in ms (seconds or an HTTP date), or undefined. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const v = headers.get('retry-after');
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A short, scrubbed message from an error body, for errors and notes. */
export function bodyMessage(json: unknown, secret: string | undefined, field = 'message'): string {
  const m = json && typeof json === 'object' ? (json as Record<string, unknown>)[field] : undefined;
  if (typeof m !== 'string') return '';
  const clean = secret ? m.split(secret).join('[redacted]') : m;
  return clean.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

/** Joins an API root and a path, whatever trailing slash the root has. */
export function joinUrl(root: string, path: string): string {
  return `${root.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

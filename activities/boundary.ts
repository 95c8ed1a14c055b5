/**
 * The activity boundary: every activity's input is made storable and every failure classified
 * here, once, so no activity retries for an hour on something a retry cannot fix.
 *
 * - Strings: a lone UTF-16 surrogate is valid in JSON and in a JS string, but PostgreSQL's json and
 *   jsonb refuse its escape, and U+0000 fits neither text nor jsonb. Both become U+FFFD before
 *   anything reaches the store, Slack or PagerDuty (a lone surrogate is what UTF-8 encoding would
 *   have sent anyway).
 * - Failures: permanent ones become non-retryable ApplicationFailures with an ErrorType, so the
 *   workflow takes its escalation branch at once; transient ones stay plain errors and are retried
 *   under the activity's profile.
 */
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { ErrorType, HttpProblem } from '../contracts/errors';

/** A lone high or low surrogate (code units, no `u` flag), or U+0000. */
// eslint-disable-next-line no-control-regex
const NOT_STORABLE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]|\u0000/g;

/** `s` with lone surrogates and U+0000 replaced by U+FFFD (String.prototype.toWellFormed, plus NUL). */
export function wellFormedString(s: string): string {
  return s.replace(NOT_STORABLE, '\ufffd');
}

/** A deep copy of plain data (activity inputs) with every string, key included, made well formed. */
export function wellFormed<T>(value: T): T {
  if (typeof value === 'string') return wellFormedString(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => wellFormed(v)) as T;
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[wellFormedString(k)] = wellFormed(v);
    return out as T;
  }
  return value;
}

/**
 * SQLSTATE classes a retry cannot fix: 22 data exception, 23 integrity constraint violation, 42
 * syntax error or access rule violation. 23505 (unique violation) stays retryable: the idempotent
 * inserts race on it, and the retry finds the row the other writer inserted.
 */
export function permanentSqlState(code: string): boolean {
  if (code === '23505') return false;
  return /^(22|23|42)/.test(code);
}

function sqlState(err: unknown): string | undefined {
  const e = err as { code?: unknown; severity?: unknown; routine?: unknown };
  if (typeof e?.code !== 'string' || !/^[0-9A-Z]{5}$/.test(e.code)) return undefined;
  // pg's DatabaseError (and PGlite's) carry the server's severity; Node's system errors do not.
  return typeof e.severity === 'string' || typeof e.routine === 'string' ? e.code : undefined;
}

/**
 * What an activity throws for `err`: an ApplicationFailure (or any Temporal failure) as it is; a
 * permanent condition as a non-retryable ApplicationFailure; anything else as a retryable error.
 * `context` prefixes the message (which call failed). Messages carry no values from the input:
 * a store refusal names its SQLSTATE and the table or column, an HttpProblem its field.
 */
export function classifyFailure(err: unknown, context?: string): Error {
  if (err instanceof TemporalFailure) return err;
  const at = (m: string) => (context ? `${context}: ${m}` : m);
  if (err instanceof HttpProblem && err.status >= 400 && err.status < 500) {
    return ApplicationFailure.create({
      type: ErrorType.INVALID_INPUT,
      message: at(`${err.title}: ${err.detail}`),
      nonRetryable: true,
    });
  }
  const code = sqlState(err);
  if (code && permanentSqlState(code)) {
    // PostgreSQL's message may quote the refused value: only the names it reports travel on.
    const e = err as { table?: string; column?: string; constraint?: string; dataType?: string };
    const where = (['table', 'column', 'constraint', 'dataType'] as const)
      .filter((k) => typeof e[k] === 'string' && e[k])
      .map((k) => `${k} ${e[k]}`)
      .join(', ');
    return ApplicationFailure.create({
      type: ErrorType.STORE_REJECTED,
      message: at(`PostgreSQL refused the statement (SQLSTATE ${code}${where ? `; ${where}` : ''})`),
      nonRetryable: true,
    });
  }
  // Errors of the scanners' API clients: `permanent` (401/403/404, a schema mismatch), `retryAfterSeconds` (429).
  const e = err as { permanent?: boolean; retryAfterSeconds?: number; message?: string };
  if (e?.permanent === true) {
    return ApplicationFailure.create({
      type: ErrorType.UPSTREAM_REFUSED,
      message: at(e.message ?? String(err)),
      nonRetryable: true,
    });
  }
  if (typeof e?.retryAfterSeconds === 'number' && e.retryAfterSeconds > 0) {
    return ApplicationFailure.create({
      type: 'UpstreamRateLimited',
      message: at(e.message ?? 'rate limited'),
      nextRetryDelay: `${Math.ceil(e.retryAfterSeconds)}s`,
    });
  }
  if (err instanceof Error) {
    if (context) err.message = at(err.message);
    return err;
  }
  return new Error(at(String(err)));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyActivity = (...args: any[]) => Promise<unknown>;

/** Wraps every activity: well-formed input in, classified failure out. */
export function atBoundary<A extends Record<string, AnyActivity>>(activities: A): A {
  const wrapped: Record<string, AnyActivity> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: unknown[]) => {
      try {
        return await fn(...args.map((a) => wellFormed(a)));
      } catch (err) {
        throw classifyFailure(err);
      }
    };
    Object.defineProperty(wrapped[name], 'name', { value: name });
  }
  return wrapped as A;
}

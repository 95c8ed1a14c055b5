/**
 * What an activity or provider call failed with, as the tests compare it: the ApplicationFailure's
 * type and retryability (a plain Error is `type: 'plain'`), optionally its message and the retry
 * delay it asked for. With a `secret`, also asserts the secret is nowhere in the error.
 */
import { ApplicationFailure } from '@temporalio/common';
import { expect } from 'vitest';

export interface FailureSeen {
  type?: string;
  nonRetryable?: boolean;
  message?: string;
  nextRetryDelay?: unknown;
}

/** A probe for one test file: `with` names the optional fields that file compares. */
export function failureProbe<W extends 'message' | 'nextRetryDelay' = never>(
  opts: { with?: readonly W[] } = {},
) {
  const want = new Set<string>(opts.with ?? []);
  type Seen = FailureSeen & ('message' extends W ? { message: string } : unknown);
  return async (p: Promise<unknown>, secret?: string): Promise<Seen> => {
    try {
      await p;
    } catch (err) {
      const e = err as Error;
      if (secret)
        expect(JSON.stringify({ m: e.message, s: e.stack, c: String(e.cause) })).not.toContain(secret);
      const seen: FailureSeen =
        err instanceof ApplicationFailure
          ? { type: err.type ?? undefined, nonRetryable: err.nonRetryable ?? undefined }
          : { type: 'plain' };
      if (want.has('message')) seen.message = e.message;
      if (want.has('nextRetryDelay') && err instanceof ApplicationFailure && err.nextRetryDelay !== undefined)
        seen.nextRetryDelay = err.nextRetryDelay;
      return seen as Seen;
    }
    throw new Error('expected a failure');
  };
}

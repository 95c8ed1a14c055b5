/** The subscription-wide backoff and how long a dead destination lasts before its breaker trips. */
import { describe, expect, it } from 'vitest';
import { retryDelayMs } from '../../activities/outbound';

describe('outbound backoff', () => {
  it('retries after 2, 5, 10 s, then parks at 1 min doubling to 5 min, never below Retry-After', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => retryDelayMs(n, 3))).toEqual([
      2_000, 5_000, 10_000, 60_000, 120_000, 240_000, 300_000, 300_000,
    ]);
    expect(retryDelayMs(1, 3, 30_000)).toBe(30_000);
    expect(retryDelayMs(1, 0)).toBe(60_000);
  });

  it('with the defaults (3 retries, breaker at 10 failures) a destination down for 2 minutes is never switched off', () => {
    // Failures 1..9 each wait their step before the next attempt; the 10th trips the breaker.
    const untilTrip = [1, 2, 3, 4, 5, 6, 7, 8, 9].reduce((ms, n) => ms + retryDelayMs(n, 3), 0);
    expect(untilTrip).toBeGreaterThan(20 * 60_000);
    const withinTwoMinutes = [1, 2, 3, 4, 5, 6, 7, 8, 9].filter(
      (_, i, all) => all.slice(0, i).reduce((ms, n) => ms + retryDelayMs(n, 3), 0) < 120_000,
    ).length;
    expect(withinTwoMinutes).toBeLessThan(10);
  });
});

/** Durations as the inventory and the workflow write them (500ms, 30s, 10m, 2h, 1d). Pure code. */

/** Milliseconds of a duration string (500ms, 30s, 10m, 2h, 1d); pure, for workflow code. */
export function durationToMs(d: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return (
    Number(m[1]) *
    { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd']
  );
}

/**
 * Per-system pacing of provider calls in this worker process: at most `concurrency` calls at once
 * and `perMinute` calls a minute (a token bucket refilled continuously). A burst of leaks for one
 * system queues here instead of hammering its admin API; other systems are unaffected.
 */
export interface Limits {
  concurrency: number;
  perMinute: number;
}

export function createPacer(limits: Limits, now: () => number = Date.now) {
  let active = 0;
  let tokens = limits.perMinute;
  let refilledAt = now();
  const waiting: Array<() => void> = [];
  let timer: NodeJS.Timeout | undefined;

  const refill = () => {
    const t = now();
    tokens = Math.min(limits.perMinute, tokens + ((t - refilledAt) * limits.perMinute) / 60_000);
    refilledAt = t;
  };
  const pump = () => {
    refill();
    while (waiting.length && active < limits.concurrency && tokens >= 1) {
      tokens -= 1;
      active += 1;
      waiting.shift()!();
    }
    if (waiting.length && active < limits.concurrency && !timer) {
      const ms = Math.ceil(((1 - tokens) * 60_000) / limits.perMinute);
      timer = setTimeout(
        () => {
          timer = undefined;
          pump();
        },
        Math.max(ms, 1),
      );
      timer.unref();
    }
  };

  return {
    async run<T>(fn: () => Promise<T>): Promise<T> {
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        pump();
      });
      try {
        return await fn();
      } finally {
        active -= 1;
        pump();
      }
    },
    stats: () => ({ active, queued: waiting.length, tokens: Math.floor(tokens) }),
  };
}
export type Pacer = ReturnType<typeof createPacer>;

/** Wraps every async method of a provider so its calls go through the pacer. */
export function paced<T extends object>(target: T, pacer: Pacer, methods: ReadonlyArray<keyof T>): T {
  const wrapped = Object.create(target) as T;
  for (const m of methods) {
    const fn = target[m];
    if (typeof fn === 'function') {
      (wrapped as Record<keyof T, unknown>)[m] = (...args: unknown[]) =>
        pacer.run(() => (fn as (...a: unknown[]) => Promise<unknown>).apply(target, args));
    }
  }
  return wrapped;
}

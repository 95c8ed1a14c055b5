/**
 * The mass-leak breaker's state in PostgreSQL, shared by every worker (killswitch_breaker_hits,
 * killswitch_breakers): one hit per run per system, and a breaker row per system that is tripped
 * until an operator resets it. Hits before the reset no longer count, so a reset does not trip
 * again on the same burst.
 */
import type { Db } from '../lib/db';

/** The PagerDuty dedup key of a system's breaker: one incident per tripped breaker. */
export const breakerDedupKey = (system: string) => `killswitch-breaker-${system}`;

export async function checkBreaker(
  db: Pick<Db, 'query'>,
  req: { system: string; workflowId: string; threshold: number; windowMs: number },
): Promise<{ tripped: boolean; newlyTripped: boolean; count: number }> {
  await db.query(
    'INSERT INTO killswitch_breaker_hits (system, workflow_id) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    [req.system, req.workflowId],
  );
  const state = await db.query<{ tripped: boolean; reset_at: Date | null }>(
    'SELECT (tripped_at IS NOT NULL AND reset_at IS NULL) AS tripped, reset_at FROM killswitch_breakers WHERE system = $1',
    [req.system],
  );
  const since = new Date(
    Math.max(
      Date.now() - req.windowMs,
      state.rows[0]?.reset_at ? new Date(state.rows[0].reset_at).getTime() : 0,
    ),
  );
  const counted = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM killswitch_breaker_hits WHERE system = $1 AND at > $2',
    [req.system, since],
  );
  const count = counted.rows[0]!.n;
  if (state.rows[0]?.tripped) return { tripped: true, newlyTripped: false, count };
  if (count <= req.threshold) return { tripped: false, newlyTripped: false, count };
  // Exactly one run wins the trip (and pages); the rest see it tripped.
  const won = await db.query(
    `INSERT INTO killswitch_breakers (system, tripped_at, tripped_by) VALUES ($1, now(), $2)
     ON CONFLICT (system) DO UPDATE SET tripped_at = now(), tripped_by = EXCLUDED.tripped_by, reset_at = NULL, reset_by = NULL
       WHERE killswitch_breakers.tripped_at IS NULL OR killswitch_breakers.reset_at IS NOT NULL
     RETURNING system`,
    [req.system, req.workflowId],
  );
  return { tripped: true, newlyTripped: won.rows.length === 1, count };
}

export interface BreakerState {
  system: string;
  tripped: boolean;
  trippedAt: string | null;
  trippedBy: string | null;
  resetAt: string | null;
  resetBy: string | null;
}

export async function listBreakers(db: Pick<Db, 'query'>): Promise<BreakerState[]> {
  const r = await db.query<{
    system: string;
    tripped_at: Date | null;
    tripped_by: string | null;
    reset_at: Date | null;
    reset_by: string | null;
  }>('SELECT system, tripped_at, tripped_by, reset_at, reset_by FROM killswitch_breakers ORDER BY system');
  const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);
  return r.rows.map((x) => ({
    system: x.system,
    tripped: x.tripped_at !== null && x.reset_at === null,
    trippedAt: iso(x.tripped_at),
    trippedBy: x.tripped_by,
    resetAt: iso(x.reset_at),
    resetBy: x.reset_by,
  }));
}

/** Lets automatic rotation resume for new runs. Runs already held still wait for their own decision. */
export async function resetBreaker(db: Pick<Db, 'query'>, system: string, by: string): Promise<boolean> {
  const r = await db.query(
    'UPDATE killswitch_breakers SET reset_at = now(), reset_by = $2 WHERE system = $1 AND reset_at IS NULL RETURNING system',
    [system, by],
  );
  return r.rows.length === 1;
}

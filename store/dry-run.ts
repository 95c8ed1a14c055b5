/**
 * killswitch_dry_run_state: the runtime dry-run switches (lib/dry-run.ts says what they mean),
 * read by the decidePolicy activity on every run and set by the admin API.
 */
import type { Db } from '../lib/db';
import { GLOBAL_SCOPE, type DryRunEntry, type DryRunOverrides } from '../lib/dry-run';

export async function dryRunOverrides(db: Pick<Db, 'query'>, source: string): Promise<DryRunOverrides> {
  const r = await db.query<{ scope: string; enabled: boolean }>(
    'SELECT scope, enabled FROM killswitch_dry_run_state WHERE scope = $1 OR scope = $2',
    [GLOBAL_SCOPE, source],
  );
  const out: DryRunOverrides = {};
  for (const row of r.rows) {
    if (row.scope === GLOBAL_SCOPE) out.global = row.enabled;
    else out.source = row.enabled;
  }
  return out;
}

export async function listDryRun(db: Pick<Db, 'query'>): Promise<DryRunEntry[]> {
  const r = await db.query<{
    scope: string;
    enabled: boolean;
    changed_by: string;
    changed_at: Date | string;
  }>('SELECT scope, enabled, changed_by, changed_at FROM killswitch_dry_run_state ORDER BY scope');
  return r.rows.map((x) => ({
    scope: x.scope,
    enabled: x.enabled,
    changedBy: x.changed_by,
    changedAt: new Date(x.changed_at).toISOString(),
  }));
}

/** Sets a scope's switch; returns the entry it replaced (undefined when the config value applied). */
export async function setDryRun(
  db: Pick<Db, 'query'>,
  scope: string,
  enabled: boolean,
  by: string,
): Promise<DryRunEntry | undefined> {
  const before = (await listDryRun(db)).find((e) => e.scope === scope);
  await db.query(
    `INSERT INTO killswitch_dry_run_state (scope, enabled, changed_by, changed_at) VALUES ($1, $2, $3, now())
     ON CONFLICT (scope) DO UPDATE SET enabled = EXCLUDED.enabled, changed_by = EXCLUDED.changed_by, changed_at = now()`,
    [scope, enabled, by],
  );
  return before;
}

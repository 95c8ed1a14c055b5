/**
 * Runtime dry-run switches (admin API `PUT /admin/dry-run`), persisted in killswitch_dry_run_state:
 * scope `global` or a source name. An entry overrides the config file's value for its scope; the
 * decidePolicy activity reads them on every run, so a change applies to the next run at once.
 */
import type { Db } from './db';

export const GLOBAL_SCOPE = 'global';

export interface DryRunOverrides {
  /** Overrides `policy.dryRun` when set. */
  global?: boolean;
  /** Overrides the source's `dryRun` when set. */
  source?: boolean;
}

export interface DryRunEntry {
  scope: string;
  enabled: boolean;
  changedBy: string;
  changedAt: string;
}

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

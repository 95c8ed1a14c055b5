/**
 * Runtime dry-run switches (admin API `PUT /admin/dry-run`), persisted in killswitch_dry_run_state
 * (store/dry-run.ts): scope `global` or a source name. An entry overrides the config file's value
 * for its scope; the decidePolicy activity reads them on every run, so a change applies to the next
 * run at once.
 */

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

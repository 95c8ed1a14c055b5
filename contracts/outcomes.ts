/** How a run ends: the audit row's outcome, the run result's and the KillSwitchOutcome search attribute's. */
export const OUTCOMES = [
  'contained',
  'escalated',
  'already_contained',
  'dry_run',
  'notified',
  'ignored',
  'denied',
  'false_positive',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

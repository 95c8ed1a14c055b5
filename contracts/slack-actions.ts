/** Slack block action ids: the run message's buttons (activities/slack.ts) and their handler (api/slack.ts). */
export const SlackAction = {
  approve: 'ks_approve',
  deny: 'ks_deny',
  retry: 'ks_retry',
  acknowledge: 'ks_acknowledge',
  falsePositive: 'ks_false_positive',
  openTemporalUi: 'open_temporal_ui',
} as const;

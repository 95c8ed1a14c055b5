/**
 * Token shapes the ingress recognises without a secret leaving it: the non-secret prefixes that
 * name a GitHub or Slack token's type, and which of them the owning system can revoke. Pure code.
 */

/** Every GitHub token prefix (not secret: it names the token type). Longest first for matching. */
export const GITHUB_TOKEN_PREFIXES = ['github_pat_', 'ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_'] as const;
export type GitHubTokenPrefix = (typeof GITHUB_TOKEN_PREFIXES)[number];

/** What POST /credentials/revoke accepts on github.com (GHES 3.19 accepts ghp_ and github_pat_ only). */
export const GITHUB_REVOCABLE_PREFIXES: readonly GitHubTokenPrefix[] = [
  'ghp_',
  'github_pat_',
  'gho_',
  'ghu_',
  'ghr_',
];

/** The non-secret prefix of a GitHub token, or undefined when the value is not shaped like one. */
export function githubTokenPrefix(value: string): GitHubTokenPrefix | undefined {
  const v = value.trim();
  const prefix = GITHUB_TOKEN_PREFIXES.find((p) => v.startsWith(p));
  if (!prefix) return undefined;
  return /^[A-Za-z0-9_]{20,255}$/.test(v.slice(prefix.length)) ? prefix : undefined;
}

/** Slack token prefixes (not secret: they name the token type). Longest first for matching. */
export const SLACK_TOKEN_PREFIXES = [
  'xoxe.xoxb-',
  'xoxe.xoxp-',
  'xoxb-',
  'xoxp-',
  'xoxa-',
  'xoxr-',
  'xoxs-',
  'xoxc-',
  'xoxe-',
  'xapp-',
] as const;
export type SlackTokenPrefix = (typeof SLACK_TOKEN_PREFIXES)[number];

/** Token types `auth.revoke` takes: bot and user tokens, plain or rotating. */
export const SLACK_REVOCABLE_PREFIXES: readonly SlackTokenPrefix[] = [
  'xoxb-',
  'xoxp-',
  'xoxe.xoxb-',
  'xoxe.xoxp-',
];

/** The non-secret prefix of a Slack token, or undefined when the value is not shaped like one. */
export function slackTokenPrefix(value: string): SlackTokenPrefix | undefined {
  const v = value.trim();
  const prefix = SLACK_TOKEN_PREFIXES.find((p) => v.startsWith(p));
  if (!prefix) return undefined;
  return /^[A-Za-z0-9-]{10,300}$/.test(v.slice(prefix.length)) ? prefix : undefined;
}

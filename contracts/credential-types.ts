/**
 * Scanner type names (TruffleHog detectors, Gitleaks rules, GitHub secret types, …) to our
 * credential types. The value itself is the strongest hint: a PostgreSQL URL is a PostgreSQL
 * password whatever rule found it.
 */
import type { CredentialType } from './detection';

const BY_NAME: Array<[RegExp, CredentialType]> = [
  [/postgres/i, 'postgres_password'],
  [/^aws|amazon|aws[-_ ]?access/i, 'aws_access_key'],
  [/github|gh[pousr]_/i, 'github_token'],
  // A Slack incoming-webhook URL is no token auth.revoke takes: generic.
  [/slack(?![\s_.-]*webhook)/i, 'slack_token'],
  [/redis/i, 'redis_password'],
];

/** A PostgreSQL URL that carries a password: only then can the provider act on it. */
export const POSTGRES_URL_WITH_PASSWORD = /^postgres(ql)?:\/\/[^:/?#\s]+:[^@/?#\s]+@/i;
/** A Redis URL that carries a password (the user may be empty: legacy AUTH <password>). */
export const REDIS_URL_WITH_PASSWORD = /^rediss?:\/\/[^:/?#@\s]*:[^@/?#\s]+@/i;

export function credentialTypeOf(name: string | undefined, value?: string): CredentialType {
  if (value && POSTGRES_URL_WITH_PASSWORD.test(value)) return 'postgres_password';
  if (value && REDIS_URL_WITH_PASSWORD.test(value)) return 'redis_password';
  for (const [re, type] of BY_NAME) {
    if (name && re.test(name)) {
      // A PostgreSQL detector whose value is not a URL cannot name the role: treat it as generic.
      return type === 'postgres_password' ? 'generic' : type;
    }
  }
  return 'generic';
}

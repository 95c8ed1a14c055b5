/**
 * `kind: slack`: Slack API tokens (bot and user tokens), killed with the Web API method
 * `auth.revoke`, which revokes the very token that calls it. A token can only be revoked: there is
 * no replacement to issue and no second value to overlap with, so no graceful mode and no quarantine.
 */
import { z } from 'zod';
import type { CredentialRef } from '../../contracts/detection';
import { commonEnv, commonSystemFields, type EnvRequirement } from './common';
import { SLACK_REVOCABLE_PREFIXES, SLACK_TOKEN_PREFIXES, type SlackTokenPrefix } from '../../contracts/credentials';

export const slackSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('slack'),
    /** The Web API root (methods are `<apiUrl>/auth.revoke`); another value only for a proxy or a test fake. */
    apiUrl: z.url({ protocol: /^https?$/ }).default('https://slack.com/api'),
    /** Token types this system revokes (credentialRef.tokenPrefix must be one of them). */
    tokenPrefixes: z.array(z.enum(SLACK_TOKEN_PREFIXES)).min(1).default([...SLACK_REVOCABLE_PREFIXES]),
    /** Per-request timeout. */
    timeoutMs: z.number().int().min(100).max(25_000).default(10_000),
    /** A token cannot be re-issued: nothing goes to a sink. */
    sink: z
      .object({ kind: z.literal('none', { error: 'slack systems revoke only; a token cannot be re-issued, so the sink is none' }) })
      .strict()
      .default({ kind: 'none' }),
  })
  .strict();
export type SlackSystem = z.infer<typeof slackSystemSchema>;

export const slackKind = {
  supports: { graceful: false, quarantine: false },
  credentialTypes: ['slack_token'] as const,
  owns(s: SlackSystem, ref: CredentialRef): boolean {
    const prefix = ref.tokenPrefix as SlackTokenPrefix | undefined;
    return !!prefix && s.tokenPrefixes.includes(prefix);
  },
  env(s: SlackSystem, at: string): EnvRequirement[] {
    // auth.revoke is called with the leaked token itself: no admin credential.
    return commonEnv(s, at);
  },
  describe(ref: CredentialRef): string {
    return ref.tokenPrefix ? `Slack token of type ${ref.tokenPrefix}` : 'no recognisable Slack token prefix';
  },
};

/**
 * `kind: github`: GitHub tokens (personal access tokens, OAuth and GitHub App user tokens), killed
 * through GitHub's credential revocation API. A token can only be revoked: there is no replacement
 * to issue and no second value to overlap with, so no graceful mode and no quarantine.
 */
import { z } from 'zod';
import type { CredentialRef } from '../../contracts/detection';
import { commonEnv, commonSystemFields, envVarName, type EnvRequirement } from './common';
import { GITHUB_REVOCABLE_PREFIXES, GITHUB_TOKEN_PREFIXES, type GitHubTokenPrefix } from '../../contracts/credentials';

/** GitHub's documented per-request maximum for POST /credentials/revoke. */
export const GITHUB_MAX_TOKENS_PER_REQUEST = 1000;

export const githubSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('github'),
    /** The REST API root: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
    apiUrl: z.url({ protocol: /^https?$/ }).default('https://api.github.com'),
    /**
     * Env var holding a token to authenticate POST /credentials/revoke with. Leave unset for
     * github.com, which answers 403 to any authenticated request to this endpoint; GitHub
     * Enterprise Server documents it as an authenticated endpoint.
     */
    tokenEnv: envVarName.optional(),
    /** Token types this system revokes (credentialRef.tokenPrefix must be one of them). */
    tokenPrefixes: z.array(z.enum(GITHUB_TOKEN_PREFIXES)).min(1).default([...GITHUB_REVOCABLE_PREFIXES]),
    /** Per-request timeout. */
    timeoutMs: z.number().int().min(100).max(25_000).default(10_000),
    /** Host names detections may name (credentialRef.host); when set, a detection naming another host does not match. */
    hosts: z.array(z.string().min(1).max(255)).optional(),
    /** Concurrent revocations in one worker are collected for `windowMs` and sent together, up to `maxTokens` a request. */
    batch: z
      .object({
        maxTokens: z.number().int().min(1).max(GITHUB_MAX_TOKENS_PER_REQUEST).default(GITHUB_MAX_TOKENS_PER_REQUEST),
        windowMs: z.number().int().min(0).max(5_000).default(250),
      })
      .strict()
      .default({ maxTokens: GITHUB_MAX_TOKENS_PER_REQUEST, windowMs: 250 }),
    /** Requests to POST /credentials/revoke per hour from this worker (GitHub allows 60 per IP). */
    rateLimit: z
      .object({ perHour: z.number().int().min(1).max(100_000).default(60) })
      .strict()
      .default({ perHour: 60 }),
    /** A token cannot be re-issued: nothing goes to a sink. */
    sink: z
      .object({ kind: z.literal('none', { error: 'github systems revoke only; a token cannot be re-issued, so the sink is none' }) })
      .strict()
      .default({ kind: 'none' }),
    /**
     * Pacing of provider calls. The provider batches and rate-limits revocations itself, so the
     * defaults let every concurrent revocation reach the batch.
     */
    limits: z
      .object({
        concurrency: z.number().int().min(1).max(1000).default(1000),
        perMinute: z.number().int().min(1).max(100_000).default(60_000),
      })
      .strict()
      .default({ concurrency: 1000, perMinute: 60_000 }),
  })
  .strict();
export type GitHubSystem = z.infer<typeof githubSystemSchema>;

export const githubKind = {
  supports: { graceful: false, quarantine: false },
  credentialTypes: ['github_token'] as const,
  owns(s: GitHubSystem, ref: CredentialRef): boolean {
    const prefix = ref.tokenPrefix as GitHubTokenPrefix | undefined;
    if (!prefix || !s.tokenPrefixes.includes(prefix)) return false;
    const host = ref.host?.toLowerCase();
    return !host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host);
  },
  env(s: GitHubSystem, at: string): EnvRequirement[] {
    return [...(s.tokenEnv ? [{ path: `${at}.tokenEnv`, name: s.tokenEnv }] : []), ...commonEnv(s, at)];
  },
  describe(ref: CredentialRef): string {
    return ref.tokenPrefix ? `GitHub token of type ${ref.tokenPrefix}${ref.host ? ` on ${ref.host}` : ''}` : 'no recognisable GitHub token prefix';
  },
};

/**
 * GitLab's Token Revocation API contract, so a self-managed GitLab uses the kill switch as its
 * revocation backend: GET /v1/revocable_token_types lists what we take; POST /v1/revoke_tokens
 * takes `[{ type, token, location }]` with the pre-shared token in Authorization and answers 204;
 * 400 for a malformed request; 429 with Retry-After when we cannot take it now.
 */
import { timingSafeEqual } from 'node:crypto';
import express from 'express';
import { z } from 'zod';
import { envVarName, sourceCommon } from '../../lib/sources-config';
import { HttpProblem } from '../../contracts/errors';
import { sendProblem } from '../problem';
import { MAX_FINDINGS_PER_DELIVERY, secretsFromEnv } from './ci-reports';
import type { CredentialType } from '../../contracts/detection';
import { POSTGRES_URL_WITH_PASSWORD, REDIS_URL_WITH_PASSWORD } from '../../contracts/credential-types';
import type { RawFinding } from '../../contracts/finding';
import type { AcceptFn, SourceContext } from './types';
import { readRawBody } from '../body';
import { validateJsonBody } from './validate';
import { defineSource } from './definition';

export const gitlabSourceSchema = z
  .object({
    ...sourceCommon,
    /** The pre-shared token GitLab sends in Authorization; comma-separated for rotation. */
    tokensEnv: envVarName,
  })
  .strict();

export type GitLabSourceConfig = z.infer<typeof gitlabSourceSchema>;

/**
 * The `type` GitLab sends is the secrets analyzer's primary identifier, type and value joined:
 * `(type + '_' + value.tr(' ', '_')).downcase` (GitLab's ScanSecurityReportSecretsWorker#revocation_type,
 * ee/app/workers/scan_security_report_secrets_worker.rb). The identifier type is `gitleaks_rule_id`;
 * its value is the rule's ID in GitLab's "Detected secrets" table
 * (doc/user/application_security/secret_detection/detected_secrets.md): `AWS`, `Slack token`,
 * `Github Personal Access Token`, `Password in URL`, `gitlab_personal_access_token`, …
 * `by_value`: the token decides (a postgres:// or redis:// URL with a password; anything else generic).
 */
type GitLabMapping = CredentialType | 'by_value';
export const GITLAB_TOKEN_TYPES: Readonly<Record<string, GitLabMapping>> = {
  gitleaks_rule_id_aws: 'aws_access_key',
  gitleaks_rule_id_github_personal_access_token: 'github_token',
  gitleaks_rule_id_githubfinegrainedpersonalaccesstoken: 'github_token',
  gitleaks_rule_id_github_oauth_access_token: 'github_token',
  gitleaks_rule_id_github_app_token: 'github_token',
  gitleaks_rule_id_githubappinstallationtoken: 'github_token',
  gitleaks_rule_id_github_refresh_token: 'github_token',
  gitleaks_rule_id_slack_token: 'slack_token',
  gitleaks_rule_id_slackappleveltoken: 'slack_token',
  gitleaks_rule_id_password_in_url: 'by_value',
  // GitLab's own example type; no system here revokes GitLab tokens, so it is escalated to a human
  // (or matched by an inventory rule on credentialRef.tokenType).
  gitleaks_rule_id_gitlab_personal_access_token: 'generic',
};

/** The names this API took before it spoke GitLab's: still accepted, no longer listed. */
export const GITLAB_TYPE_ALIASES: Readonly<Record<string, GitLabMapping>> = {
  postgres_connection_string: 'postgres_password',
  aws_access_key: 'aws_access_key',
  github_token: 'github_token',
  slack_token: 'slack_token',
  redis_connection_string: 'redis_password',
  generic_secret: 'by_value',
};

/** GitLab's normalisation, applied again so a type sent by hand with capitals or spaces still matches. */
const normaliseType = (t: string) => t.trim().replace(/ /g, '_').toLowerCase();

function mappingOf(type: string): GitLabMapping | undefined {
  const t = normaliseType(type);
  return Object.hasOwn(GITLAB_TOKEN_TYPES, t)
    ? GITLAB_TOKEN_TYPES[t]
    : Object.hasOwn(GITLAB_TYPE_ALIASES, t)
      ? GITLAB_TYPE_ALIASES[t]
      : undefined;
}

/** A leaked URL with a password names its system; any other token of a by-value type is generic. */
function byValue(token: string): CredentialType {
  if (POSTGRES_URL_WITH_PASSWORD.test(token)) return 'postgres_password';
  if (REDIS_URL_WITH_PASSWORD.test(token)) return 'redis_password';
  return 'generic';
}

const bodySchema = z
  .array(
    z.object({
      type: z.string().min(1).max(100),
      token: z
        .string()
        .min(1)
        .max(16 * 1024),
      location: z.string().max(4096).optional(),
    }),
  )
  .min(1)
  .max(MAX_FINDINGS_PER_DELIVERY);

function authorised(header: unknown, tokens: readonly string[]): boolean {
  if (typeof header !== 'string') return false;
  const given = Buffer.from(header.replace(/^(Bearer|Token)\s+/i, ''), 'utf8');
  let ok = false;
  for (const t of tokens) {
    const b = Buffer.from(t, 'utf8');
    if (b.length === given.length && timingSafeEqual(b, given)) ok = true;
  }
  return ok;
}

/**
 * GitLab's `location` is the blob URL of the finding (`https://HOST/GROUP/PROJECT/-/blob/SHA/PATH#L21`):
 * the repository, commit, file and line are read from it; any other URL is kept as the URL only.
 */
export function locationOf(location: string | undefined): NonNullable<RawFinding['location']> {
  if (!location || !/^https?:\/\//.test(location)) return {};
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return {};
  }
  const m = /^\/(.+?)\/-\/blob\/([0-9a-f]{7,64})\/(.+)$/.exec(url.pathname);
  if (!m) return { url: location };
  let file: string;
  try {
    file = decodeURIComponent(m[3]!);
  } catch {
    return { url: location };
  }
  const line = /^#L(\d{1,9})/.exec(url.hash)?.[1];
  return {
    url: location,
    repository: m[1]!.slice(0, 512),
    commit: m[2]!,
    file: file.slice(0, 2048),
    ...(line ? { line: Number(line) } : {}),
  };
}

export function createGitLabRouter(
  config: GitLabSourceConfig,
  ctx: SourceContext,
  accept: AcceptFn,
  defaultLimit: number,
): express.Router {
  const tokens = secretsFromEnv(ctx.env, config.tokensEnv);
  const router = express.Router();
  router.use((req, _res, next) => {
    if (!authorised(req.headers.authorization, tokens))
      return next(
        new HttpProblem(
          401,
          'unauthorized',
          'Unauthorized',
          'the Authorization token is not a configured revocation token',
        ),
      );
    next();
  });
  router.get('/v1/revocable_token_types', (_req, res) => {
    // GitLab sends only the types listed here; our older names (GITLAB_TYPE_ALIASES) are still taken.
    res.json({ types: Object.keys(GITLAB_TOKEN_TYPES) });
  });
  router.post(
    '/v1/revoke_tokens',
    readRawBody({ limit: config.bodyLimit ?? defaultLimit }),
    async (req, res) => {
      const receivedAt = new Date();
      const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      // GitLab's contract answers every malformed request with 400.
      const tokens = validateJsonBody(bodySchema, raw, {
        status: 400,
        slug: 'invalid-request',
        title: 'Invalid request',
      });
      const unknown = tokens.findIndex((t) => mappingOf(t.type) === undefined);
      if (unknown >= 0)
        throw new HttpProblem(
          400,
          'unknown-token-type',
          'Unknown token type',
          `[${unknown}].type: not a token type revocable here (GET /v1/revocable_token_types lists them)`,
        );
      const findings: RawFinding[] = tokens.map((t) => {
        const mapped = mappingOf(t.type)!;
        // A URL type whose token is no URL of ours, like any generic one, keeps GitLab's type name as
        // its reference: that is what an inventory rule or a human can match on.
        const credentialType = mapped === 'by_value' ? byValue(t.token.trim()) : mapped;
        return {
          source: 'gitlab',
          scanner: 'gitlab',
          credentialType,
          secret: mapped === 'by_value' ? t.token.trim() : t.token,
          ...(credentialType === 'generic'
            ? { credentialRef: { tokenType: normaliseType(t.type).slice(0, 100) } }
            : {}),
          location: locationOf(t.location),
          severity: 'critical',
          validity: 'unknown',
        };
      });
      try {
        await accept(
          'gitlab',
          { kind: 'findings', findings },
          { rawBody: raw, headers: req.headers, receivedAt },
        );
      } catch (err) {
        // GitLab retries on 429: a temporary inability to take the tokens is reported that way.
        if (err instanceof HttpProblem && err.status !== 429 && err.status !== 503) throw err;
        if (!(err instanceof HttpProblem) && !/Temporal/i.test((err as Error).message)) throw err;
        throw new HttpProblem(
          429,
          'try-later',
          'Try later',
          'the revocation could not be taken now; retry',
          {},
          { 'Retry-After': '10' },
        );
      }
      res.status(204).end();
    },
  );
  router.use((err: unknown, req: express.Request, res: express.Response, next: express.NextFunction) => {
    if (err instanceof HttpProblem)
      return sendProblem(res, err, typeof req.id === 'string' ? `urn:request:${req.id}` : undefined);
    next(err);
  });
  return router;
}

export const gitlabSource = defineSource({
  name: 'gitlab',
  schema: gitlabSourceSchema.optional(),
  env: (c, path) => (c ? [{ path: `${path}.tokensEnv`, name: c.tokensEnv }] : []),
  build: (c, ctx) =>
    c
      ? {
          routers: [
            {
              name: 'gitlab',
              enabled: c.enabled,
              perMinute: c.rateLimit.perMinute,
              build: (accept) => createGitLabRouter(c, ctx, accept, ctx.defaultBodyLimit),
            },
          ],
        }
      : {},
});

/**
 * GitLab's Token Revocation API contract, so a self-managed GitLab uses the kill switch as its
 * revocation backend: GET /v1/revocable_token_types lists what we take; POST /v1/revoke_tokens
 * takes `[{ type, token, location }]` with the pre-shared token in Authorization and answers 204;
 * 400 for a malformed request; 429 with Retry-After when we cannot take it now.
 */
import { timingSafeEqual } from 'node:crypto';
import express from 'express';
import { z } from 'zod';
import type { gitlabSourceSchema } from '../../lib/sources-config';
import { HttpProblem, sendProblem } from '../problem';
import { MAX_FINDINGS_PER_DELIVERY, secretsFromEnv } from './ci-reports';
import { credentialTypeOf } from './credential-types';
import type { RawFinding } from './finding';
import type { AcceptFn, SourceContext } from './types';
import { parseJsonBody, validateWith } from './validate';

export type GitLabSourceConfig = z.infer<typeof gitlabSourceSchema>;

/** GitLab's token type names we accept, and what they are to us. */
export const GITLAB_TOKEN_TYPES: Record<string, RawFinding['credentialType']> = {
  postgres_connection_string: 'postgres_password',
  aws_access_key: 'aws_access_key',
  github_token: 'github_token',
  slack_token: 'slack_token',
  redis_connection_string: 'redis_password',
  generic_secret: 'generic',
};

const bodySchema = z
  .array(
    z.object({
      type: z.string().min(1).max(100),
      token: z.string().min(1).max(16 * 1024),
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

export function createGitLabRouter(config: GitLabSourceConfig, ctx: SourceContext, accept: AcceptFn, defaultLimit: number): express.Router {
  const tokens = secretsFromEnv(ctx.env, config.tokensEnv);
  const router = express.Router();
  router.use((req, _res, next) => {
    if (!authorised(req.headers.authorization, tokens)) return next(new HttpProblem(401, 'unauthorized', 'Unauthorized', 'the Authorization token is not a configured revocation token'));
    next();
  });
  router.get('/v1/revocable_token_types', (_req, res) => {
    res.json({ types: Object.keys(GITLAB_TOKEN_TYPES) });
  });
  router.post('/v1/revoke_tokens', express.raw({ type: () => true, limit: config.bodyLimit ?? defaultLimit }), async (req, res) => {
    const receivedAt = new Date();
    const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    // GitLab's contract answers every malformed request with 400.
    const tokens = validateWith(bodySchema, parseJsonBody(raw), { status: 400, slug: 'invalid-request', title: 'Invalid request' });
    const unknown = tokens.findIndex((t) => !(t.type in GITLAB_TOKEN_TYPES));
    if (unknown >= 0) throw new HttpProblem(400, 'unknown-token-type', 'Unknown token type', `[${unknown}].type: ${tokens[unknown]!.type.slice(0, 100)} is not revocable here`);
    const findings: RawFinding[] = tokens.map((t) => {
      const mapped = GITLAB_TOKEN_TYPES[t.type]!;
      const credentialType = mapped === 'generic' ? credentialTypeOf(t.type, t.token) : mapped;
      return {
        source: 'gitlab',
        scanner: 'gitlab',
        credentialType,
        secret: t.token,
        ...(credentialType === 'generic' || (credentialType !== 'postgres_password' && credentialType !== mapped) ? { credentialRef: { tokenType: t.type } } : {}),
        location: t.location && /^https?:\/\//.test(t.location) ? { url: t.location } : {},
        severity: 'critical',
        validity: 'unknown',
      };
    });
    try {
      await accept('gitlab', { kind: 'findings', findings }, { rawBody: raw, headers: req.headers, receivedAt });
    } catch (err) {
      // GitLab retries on 429: a temporary inability to take the tokens is reported that way.
      if (err instanceof HttpProblem && err.status !== 429 && err.status !== 503) throw err;
      if (!(err instanceof HttpProblem) && !/Temporal/i.test((err as Error).message)) throw err;
      throw new HttpProblem(429, 'try-later', 'Try later', 'the revocation could not be taken now; retry', {}, { 'Retry-After': '10' });
    }
    res.status(204).end();
  });
  router.use((err: unknown, req: express.Request, res: express.Response, next: express.NextFunction) => {
    if (err instanceof HttpProblem) return sendProblem(res, err, typeof req.id === 'string' ? `urn:request:${req.id}` : undefined);
    next(err);
  });
  return router;
}

/**
 * GitHub secret scanning alerts (`secret_scanning_alert` webhooks). The delivery names an alert but
 * never carries the secret, so acted-on actions become an enrichment request: a durable workflow
 * fetches the alert through the REST API (where the value is), reduces it and dispatches it. After
 * a kill the loop is closed: the alert is resolved as `revoked` with a comment linking the run.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { envVarName, githubApiConfigSchema, sourceCommon } from '../../lib/sources-config';
import { HttpProblem } from '../../contracts/errors';
import { secretsFromEnv } from './ci-reports';
import type { EnrichmentRequest } from '../../contracts/enrichment';
import type { SourceContext, SourceHandler } from './types';
import { validateJsonBody } from './validate';
import { defineSource, registered } from './definition';

export const githubSourceSchema = z
  .object({
    ...sourceCommon,
    /** Webhook secrets (X-Hub-Signature-256), comma-separated; several at once for rotation. */
    secretsEnv: envVarName,
    // apiTokenEnv, apiUrl, resolveAlerts: the worker's alert client reads them too.
    ...githubApiConfigSchema.shape,
    /**
     * While GitHub's API keeps failing, page a human after this long (the alert is escalated without
     * its value; the fetch goes on and the value joins when it comes). 10s to 1h.
     */
    escalateAfter: z
      .string()
      .regex(/^\d{1,4}(s|m|h)$/, 'a duration such as 30s, 2m or 1h')
      .refine((v) => {
        const n = Number(v.slice(0, -1)) * { s: 1, m: 60, h: 3600 }[v.slice(-1) as 's' | 'm' | 'h'];
        return n >= 10 && n <= 3600;
      }, 'between 10s and 1h')
      .default('2m'),
  })
  .strict();
export type GitHubSourceConfig = z.infer<typeof githubSourceSchema>;

export const ACTED_ON = new Set(['created', 'reopened', 'publicly_leaked']);

/** `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, checked against every active secret. */
export function verifyGitHubSignature(secrets: readonly string[], body: Buffer, header: unknown): void {
  if (typeof header !== 'string' || !header.startsWith('sha256=')) {
    throw new HttpProblem(
      401,
      'missing-signature',
      'Missing signature',
      'X-Hub-Signature-256 (sha256=…) is required',
    );
  }
  const given = Buffer.from(header.slice('sha256='.length), 'utf8');
  let ok = false;
  for (const secret of secrets) {
    const expected = Buffer.from(createHmac('sha256', secret).update(body).digest('hex'), 'utf8');
    if (expected.length === given.length && timingSafeEqual(expected, given)) ok = true;
  }
  if (!ok)
    throw new HttpProblem(
      401,
      'invalid-signature',
      'Invalid webhook signature',
      'no active webhook secret produced a matching X-Hub-Signature-256',
    );
}

const webhookSchema = z
  .object({
    action: z.string().regex(/^[a-z_]{1,64}$/, 'a GitHub action name'),
    alert: z
      .object({
        number: z.number().int().positive(),
        secret_type: z.string().max(200).optional(),
        url: z.string().max(2048).optional(),
      })
      .loose(),
    repository: z.object({ full_name: z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'owner/name') }).loose(),
  })
  .loose();

function header(headers: Record<string, unknown>, name: string): string | undefined {
  const v = headers[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export function createGitHubSource(
  config: GitHubSourceConfig,
  ctx: SourceContext,
  defaultLimit: number,
): SourceHandler {
  const secrets = secretsFromEnv(ctx.env, config.secretsEnv);
  return {
    name: 'github',
    bodyLimitBytes: config.bodyLimit ?? defaultLimit,
    authenticate: (d) => verifyGitHubSignature(secrets, d.rawBody, d.headers['x-hub-signature-256']),
    parse: (d) => {
      const event = header(d.headers, 'x-github-event');
      const deliveryId = header(d.headers, 'x-github-delivery');
      if (!event) throw new HttpProblem(400, 'missing-event', 'Missing event', 'X-GitHub-Event is required');
      if (!deliveryId || !/^[\w-]{1,100}$/.test(deliveryId))
        throw new HttpProblem(
          400,
          'missing-delivery',
          'Missing delivery id',
          'X-GitHub-Delivery is required',
        );
      if (event === 'ping') return { kind: 'recorded', deliveryId, reason: 'ping' };
      if (event !== 'secret_scanning_alert')
        return { kind: 'recorded', deliveryId, reason: `event ${event} is not acted on` };
      const p = validateJsonBody(webhookSchema, d.rawBody, {
        slug: 'invalid-event',
        title: 'Invalid secret_scanning_alert',
      });
      if (!ACTED_ON.has(p.action))
        return { kind: 'recorded', deliveryId, reason: `action ${p.action} is recorded, not acted on` };
      const request: EnrichmentRequest = {
        kind: 'github_alert',
        repository: p.repository.full_name,
        alertNumber: p.alert.number,
        action: p.action,
        ...(p.alert.url ? { alertUrl: p.alert.url } : {}),
      };
      return { kind: 'enrich', deliveryId, request, escalateAfter: config.escalateAfter };
    },
  };
}

export const githubSource = defineSource({
  name: 'github',
  schema: githubSourceSchema.optional(),
  env: (c, path) =>
    c
      ? [
          { path: `${path}.secretsEnv`, name: c.secretsEnv },
          // Every alert names a finding the worker must fetch with this token: without it none can be acted on.
          { path: `${path}.apiTokenEnv`, name: c.apiTokenEnv },
        ]
      : [],
  build: (c, ctx) =>
    c ? { sources: [registered(createGitHubSource(c, ctx, ctx.defaultBodyLimit), c)] } : {},
});

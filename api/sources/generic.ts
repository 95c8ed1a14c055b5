/**
 * The generic source: our own documented JSON detection format, signed with Standard Webhooks.
 * This is where a raw secret value stops: it is reduced to a keyed fingerprint and the non-secret
 * identifiers a provider needs, and handed back only so the ingress can seal it as evidence.
 */
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { genericDetectionSchema, type GenericDetectionPayload } from '../../contracts/detection';
import { reduceFinding, type Sighting } from '../../contracts/finding';
import type { SourceHandler } from './types';
import { defineSource, registered } from './definition';
import {
  DEFAULT_GENERIC_SECRETS_ENV,
  envVarName,
  secretList,
  standardWebhooksSourceSchema,
} from '../../lib/sources-config';
import { headerId, parseJsonBody, validateJsonBody, validateWith } from './validate';
import type { ServerKeys } from '../../contracts/keys';
import { HttpProblem } from '../../contracts/errors';

export const GENERIC_SOURCE = 'generic';

/** Verifies against every active secret, so a signing secret can be rotated without downtime. */
export function verifyStandardWebhook(
  secrets: readonly string[],
  rawBody: Buffer,
  headers: Record<string, string | string[] | undefined>,
): void {
  const h: Record<string, string> = {};
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const v = headers[name];
    if (typeof v === 'string' && v !== '') h[name] = v;
  }
  const missing = ['webhook-id', 'webhook-timestamp', 'webhook-signature'].filter((n) => !h[n]);
  if (missing.length) {
    throw new HttpProblem(
      401,
      'missing-signature',
      'Missing signature headers',
      `missing header(s): ${missing.join(', ')}`,
    );
  }
  // The library parses the timestamp with parseInt, so `1700000000xyz` would pass as 1700000000.
  if (!/^\d{1,12}$/.test(h['webhook-timestamp']!)) {
    throw new HttpProblem(
      400,
      'invalid-signature-headers',
      'Malformed signature headers',
      'webhook-timestamp must be a Unix time in seconds (digits only)',
    );
  }
  // The id keys the delivery ledger: printable ASCII, so it is stored and logged as sent.
  headerId(h, 'webhook-id');
  let lastError: unknown;
  for (const secret of secrets) {
    try {
      new Webhook(secret).verify(rawBody, h, { jsonParse: false });
      return;
    } catch (err) {
      lastError = err;
      if (err instanceof WebhookVerificationError && /timestamp/i.test(err.message)) break;
    }
  }
  const msg = lastError instanceof Error ? lastError.message : 'verification failed';
  if (/too old|too new/i.test(msg)) {
    throw new HttpProblem(
      401,
      'stale-timestamp',
      'Webhook timestamp outside the tolerance',
      `${msg}: webhook-timestamp must be within 5 minutes of the server clock`,
    );
  }
  if (/Invalid Signature Headers/i.test(msg)) {
    throw new HttpProblem(
      400,
      'invalid-signature-headers',
      'Malformed signature headers',
      'webhook-timestamp must be a Unix time in seconds',
    );
  }
  throw new HttpProblem(
    401,
    'invalid-signature',
    'Invalid webhook signature',
    'no active signing secret produced a matching webhook-signature',
  );
}

export { parseJsonBody };

export function validateGeneric(doc: unknown): GenericDetectionPayload {
  return validateWith(genericDetectionSchema, doc, { slug: 'invalid-detection', title: 'Invalid detection' });
}

export type Normalised = Sighting;

export function normaliseGeneric(p: GenericDetectionPayload, keys: ServerKeys, now: Date): Sighting {
  return reduceFinding({ ...p, source: GENERIC_SOURCE }, keys, now);
}

/** The generic source as a SourceHandler: Standard Webhooks, one detection per delivery. */
export function createGenericSource(opts: {
  secrets: readonly string[];
  bodyLimitBytes: number;
  keys: ServerKeys;
}): SourceHandler {
  return {
    name: GENERIC_SOURCE,
    bodyLimitBytes: opts.bodyLimitBytes,
    authenticate: (d) => verifyStandardWebhook(opts.secrets, d.rawBody, d.headers),
    parse: (d) => {
      const payload = validateJsonBody(genericDetectionSchema, d.rawBody, {
        slug: 'invalid-detection',
        title: 'Invalid detection',
      });
      const webhookId = d.headers['webhook-id'];
      return {
        kind: 'findings',
        ...(typeof webhookId === 'string' ? { deliveryId: webhookId } : {}),
        findings: [{ ...payload, source: GENERIC_SOURCE }],
      };
    },
  };
}

/** `sources.generic`: always on; its secrets are GENERIC_WEBHOOK_SECRETS unless secretsEnv names another variable. */
export const genericSourceSchema = standardWebhooksSourceSchema
  .extend({ secretsEnv: envVarName.default(DEFAULT_GENERIC_SECRETS_ENV) })
  .strict()
  .default({
    enabled: true,
    dryRun: false,
    rateLimit: { perMinute: 600 },
    secretsEnv: DEFAULT_GENERIC_SECRETS_ENV,
  });

export const genericSource = defineSource({
  name: GENERIC_SOURCE,
  schema: genericSourceSchema,
  // The default variable is resolved by the boot code instead (it may fall back to a generated local secret).
  env: (c, path) =>
    c.secretsEnv === DEFAULT_GENERIC_SECRETS_ENV
      ? []
      : [{ path: `${path}.secretsEnv`, name: c.secretsEnv, standardWebhooks: true }],
  build: (c, ctx) => {
    const secrets =
      c.secretsEnv === DEFAULT_GENERIC_SECRETS_ENV ? ctx.genericSecrets : secretList(ctx.env[c.secretsEnv]);
    return {
      sources: [
        registered(
          createGenericSource({
            secrets,
            bodyLimitBytes: c.bodyLimit ?? ctx.defaultBodyLimit,
            keys: ctx.keys,
          }),
          c,
        ),
      ],
    };
  },
});

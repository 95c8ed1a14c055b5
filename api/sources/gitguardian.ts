/**
 * GitGuardian custom webhooks (event-based). Authenticated with `Gitguardian-Signature:
 * sha256=<hex>`, an HMAC-SHA256 of the raw body keyed by the `Timestamp` header concatenated with
 * the signature token, within a clock-skew window. Payloads never carry the secret, only its
 * hashes (`secret_hash`, `hmsl_hash`): they are matched against `knownSecrets` in the config file;
 * an unmatched incident is escalated to a human. After a kill the incident is resolved with
 * `secret_revoked: true`.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { KnownSecret } from '../../lib/known-secrets';
import { envVarName, gitguardianApiConfigSchema, sourceCommon } from '../../lib/sources-config';
import { HttpProblem } from '../../contracts/errors';
import { secretsFromEnv } from './ci-reports';
import { credentialTypeOf } from '../../contracts/credential-types';
import type { RawFinding } from '../../contracts/finding';
import type { Delivery, SourceContext, SourceHandler } from './types';
import { validateJsonBody } from './validate';
import { defineSource, registered } from './definition';

export const gitguardianSourceSchema = z
  .object({
    ...sourceCommon,
    /** Custom webhook signature tokens (Gitguardian-Signature), comma-separated. */
    secretsEnv: envVarName,
    /** Allowed clock skew for the Timestamp header. */
    skewSeconds: z.number().int().min(1).max(3600).default(300),
    // apiTokenEnv (optional), apiUrl: the worker resolves incidents with them.
    ...gitguardianApiConfigSchema.shape,
  })
  .strict();

export type GitGuardianSourceConfig = z.infer<typeof gitguardianSourceSchema>;

/** Actions that mean "a secret is (again) exposed". Everything else is recorded only. */
export const GG_ACTED_ON = new Set([
  'incident_triggered',
  'incident_reopened',
  'incident_regression',
  'new_occurrence',
]);

export function verifyGitGuardianSignature(
  tokens: readonly string[],
  d: Delivery,
  skewSeconds: number,
  now: Date,
): void {
  const sig = d.headers['gitguardian-signature'];
  const ts = d.headers['timestamp'];
  if (typeof sig !== 'string' || !sig.startsWith('sha256=') || typeof ts !== 'string') {
    throw new HttpProblem(
      401,
      'missing-signature',
      'Missing signature',
      'Gitguardian-Signature (sha256=…) and Timestamp are required',
    );
  }
  if (!/^\d{1,12}$/.test(ts) || Math.abs(now.getTime() / 1000 - Number(ts)) > skewSeconds) {
    throw new HttpProblem(
      401,
      'stale-timestamp',
      'Timestamp outside the tolerance',
      `Timestamp must be within ${skewSeconds} seconds of the server clock`,
    );
  }
  const given = Buffer.from(sig.slice('sha256='.length), 'utf8');
  let ok = false;
  for (const token of tokens) {
    const expected = Buffer.from(
      createHmac('sha256', `${ts}${token}`).update(d.rawBody).digest('hex'),
      'utf8',
    );
    if (expected.length === given.length && timingSafeEqual(expected, given)) ok = true;
  }
  if (!ok)
    throw new HttpProblem(
      401,
      'invalid-signature',
      'Invalid webhook signature',
      'no active signature token produced a matching Gitguardian-Signature',
    );
}

const text = z.string().max(4096);
const occurrence = z
  .object({
    kind: text.nullish(),
    sha: text.nullish(),
    filepath: text.nullish(),
    url: text.nullish(),
    source: z
      .object({ full_name: text.nullish(), url: text.nullish(), type: text.nullish() })
      .loose()
      .nullish(),
  })
  .loose();

export const gitguardianEventSchema = z
  .object({
    source: text.optional(),
    timestamp: text.optional(),
    action: z.string().min(1).max(100),
    incident: z
      .object({
        id: z.number().int().positive(),
        date: text.nullish(),
        detector: z.object({ name: text, display_name: text.nullish(), family: text.nullish() }).loose(),
        secret_hash: z.string().max(512).nullish(),
        hmsl_hash: z.string().max(512).nullish(),
        gitguardian_url: text.nullish(),
        severity: text.nullish(),
        validity: text.nullish(),
        status: text.nullish(),
        occurrences: z.array(occurrence).max(1000).nullish(),
      })
      .loose(),
  })
  .loose();

const SEVERITY: Record<string, RawFinding['severity']> = {
  critical: 'critical',
  high: 'high',
  medium: 'medium',
  low: 'low',
  info: 'low',
  unknown: 'high',
};

/** Known secrets matched by hash; hashes are not secret, but comparing them in constant time costs nothing. */
function findKnown(
  known: readonly KnownSecret[],
  secretHash?: string | null,
  hmslHash?: string | null,
): KnownSecret | undefined {
  const eq = (a: string, b: string) =>
    a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
  return known.find(
    (k) =>
      (secretHash && k.hashes.gitguardian && eq(k.hashes.gitguardian, secretHash)) ||
      (hmslHash && k.hashes.hmsl && eq(k.hashes.hmsl, hmslHash.toLowerCase())),
  );
}

export function parseGitGuardian(
  body: Buffer,
  known: readonly KnownSecret[],
): { deliveryId: string; findings: RawFinding[] } | { deliveryId: string; recorded: string } {
  const e = validateJsonBody(gitguardianEventSchema, body, {
    slug: 'invalid-event',
    title: 'Invalid GitGuardian event',
  });
  const deliveryId = `${e.action}:${e.incident.id}:${createHash('sha256').update(body).digest('hex').slice(0, 32)}`;
  if (!GG_ACTED_ON.has(e.action))
    return { deliveryId, recorded: `action ${e.action} is recorded, not acted on` };
  const inc = e.incident;
  const match = findKnown(known, inc.secret_hash, inc.hmsl_hash);
  const occ = inc.occurrences?.[0];
  const validity =
    inc.validity === 'valid' ? 'verified' : inc.validity === 'invalid' ? 'unverified' : 'unknown';
  return {
    deliveryId,
    findings: [
      {
        source: 'gitguardian',
        scanner: 'gitguardian',
        findingId: String(inc.id),
        credentialType: match ? match.credentialType : credentialTypeOf(inc.detector.name),
        // No value ever: the credential is named by the matching known secret, or by the incident.
        credentialRef: match
          ? { ...match.credentialRef }
          : { gitguardianIncident: String(inc.id), detector: inc.detector.name.slice(0, 200) },
        location: {
          repository: occ?.source?.full_name ?? undefined,
          file: occ?.filepath ?? undefined,
          commit: occ?.sha && /^[0-9a-f]{7,64}$/.test(occ.sha) ? occ.sha : undefined,
          url:
            inc.gitguardian_url && /^https?:\/\//.test(inc.gitguardian_url) ? inc.gitguardian_url : undefined,
        },
        severity: SEVERITY[inc.severity ?? 'unknown'] ?? 'high',
        validity,
        closeLoop: { kind: 'gitguardian_incident', incidentId: inc.id },
      },
    ],
  };
}

export function createGitGuardianSource(
  config: GitGuardianSourceConfig,
  ctx: SourceContext & { knownSecrets: readonly KnownSecret[] },
  defaultLimit: number,
  now: () => Date = () => new Date(),
): SourceHandler {
  const tokens = secretsFromEnv(ctx.env, config.secretsEnv);
  return {
    name: 'gitguardian',
    bodyLimitBytes: config.bodyLimit ?? defaultLimit,
    authenticate: (d) => verifyGitGuardianSignature(tokens, d, config.skewSeconds, now()),
    parse: (d) => {
      const r = parseGitGuardian(d.rawBody, ctx.knownSecrets);
      return 'recorded' in r
        ? { kind: 'recorded', deliveryId: r.deliveryId, reason: r.recorded }
        : { kind: 'findings', deliveryId: r.deliveryId, findings: r.findings };
    },
  };
}

export const gitguardianSource = defineSource({
  name: 'gitguardian',
  schema: gitguardianSourceSchema.optional(),
  env: (c, path) =>
    c
      ? [
          { path: `${path}.secretsEnv`, name: c.secretsEnv },
          { path: `${path}.apiTokenEnv`, name: c.apiTokenEnv, optional: true },
        ]
      : [],
  build: (c, ctx) =>
    c ? { sources: [registered(createGitGuardianSource(c, ctx, ctx.defaultBodyLimit), c)] } : {},
});

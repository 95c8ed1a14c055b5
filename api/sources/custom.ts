/**
 * Any other sender, by configuration: a platform that posts its own JSON ("New Secret Detected")
 * is described in `sources.custom` by how it signs (Standard Webhooks or plain HMAC-SHA256 of the
 * body) and where its fields are (dotted paths). Adding a sender is configuration, not code.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { CREDENTIAL_TYPES, SEVERITIES, type CredentialType, type Severity } from '../../contracts/detection';
import { z } from 'zod';
import { customSourceName, envVarName, sourceCommon } from '../../lib/sources-config';
import { HttpProblem } from '../../contracts/errors';
import { MAX_FINDINGS_PER_DELIVERY, secretsFromEnv } from './ci-reports';
import { credentialTypeOf } from '../../contracts/credential-types';
import type { RawFinding } from '../../contracts/finding';
import { verifyStandardWebhook } from './generic';
import type { Delivery, SourceContext, SourceHandler } from './types';
import { parseJsonBody } from './validate';
import { defineSource, registered } from './definition';

/** A path into a JSON payload: dot-separated keys and [n] indexes, e.g. `data.finding.secret`. */
const jsonPath = z
  .string()
  .regex(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+|\[\d+\])*$/, 'a dotted path such as data.finding.secret');

export const customSourceSchema = z
  .object({
    ...sourceCommon,
    name: customSourceName,
    verify: z.discriminatedUnion('scheme', [
      z.object({ scheme: z.literal('standard-webhooks'), secretsEnv: envVarName }).strict(),
      z
        .object({
          scheme: z.literal('hmac-sha256'),
          secretsEnv: envVarName,
          /** Header carrying the hex (or base64) HMAC of the raw body. */
          header: z.string().regex(/^[A-Za-z0-9-]+$/),
          prefix: z.string().max(32).default(''),
          encoding: z.enum(['hex', 'base64']).default('hex'),
        })
        .strict(),
    ]),
    mapping: z
      .object({
        /** Path to an array of findings; omitted when the payload is one finding. */
        items: jsonPath.optional(),
        secret: jsonPath.optional(),
        credentialType: jsonPath.optional(),
        /**
         * Sender's type names to ours. A name not in the map is taken as is when it is one of ours,
         * else recognised by its wording or the value (a postgres:// URL); else the default below.
         */
        typeMap: z.record(z.string(), z.enum(CREDENTIAL_TYPES)).default({}),
        /** The type of a finding whose type is neither mapped nor recognised (or not sent at all). */
        defaultCredentialType: z.enum(CREDENTIAL_TYPES).default('generic'),
        credentialRef: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/), jsonPath).default({}),
        severity: jsonPath.optional(),
        dedupeId: jsonPath.optional(),
        verified: jsonPath.optional(),
        location: z
          .object({ repository: jsonPath, file: jsonPath, line: jsonPath, commit: jsonPath, url: jsonPath })
          .partial()
          .strict()
          .default({}),
      })
      .strict()
      .refine((m) => m.secret || Object.keys(m.credentialRef).length > 0, {
        message: 'map secret or at least one credentialRef field',
      }),
  })
  .strict();
export type CustomSourceConfig = z.infer<typeof customSourceSchema>;

/** Reads `a.b[0].c` from a parsed document; own properties only (no prototype walking). */
export function getPath(doc: unknown, path: string): unknown {
  let cur: unknown = doc;
  for (const part of path.match(/[^.[\]]+|\[\d+\]/g) ?? []) {
    if (cur === null || typeof cur !== 'object') return undefined;
    const key = part.startsWith('[') ? Number(part.slice(1, -1)) : part;
    if (!Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
    cur = (cur as Record<string | number, unknown>)[key];
  }
  return cur;
}

const asText = (v: unknown): string | undefined =>
  typeof v === 'string' && v !== '' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined;

function verifyHmac(
  secrets: readonly string[],
  d: Delivery,
  header: string,
  prefix: string,
  encoding: 'hex' | 'base64',
): void {
  const raw = d.headers[header.toLowerCase()];
  if (typeof raw !== 'string' || !raw.startsWith(prefix))
    throw new HttpProblem(401, 'missing-signature', 'Missing signature', `${header} is required`);
  const given = Buffer.from(raw.slice(prefix.length), 'utf8');
  let ok = false;
  for (const s of secrets) {
    const expected = Buffer.from(createHmac('sha256', s).update(d.rawBody).digest(encoding), 'utf8');
    if (expected.length === given.length && timingSafeEqual(expected, given)) ok = true;
  }
  if (!ok)
    throw new HttpProblem(
      401,
      'invalid-signature',
      'Invalid webhook signature',
      `no active secret produced a matching ${header}`,
    );
}

/** The type the name or the value shows (a postgres:// URL); else the configured default, never a silent `generic`. */
function recognisedOr(
  typeName: string | undefined,
  secret: string | undefined,
  fallback: CredentialType,
): CredentialType {
  const recognised = typeName || secret ? credentialTypeOf(typeName, secret) : 'generic';
  return recognised === 'generic' ? fallback : recognised;
}

export function mapFindings(config: CustomSourceConfig, doc: unknown): RawFinding[] {
  const m = config.mapping;
  const items = m.items ? getPath(doc, m.items) : [doc];
  if (!Array.isArray(items))
    throw new HttpProblem(
      422,
      'invalid-detection',
      'Invalid detection',
      `${m.items}: expected an array of findings`,
      { errors: [{ field: m.items ?? '(body)', message: 'expected an array' }] },
    );
  if (items.length > MAX_FINDINGS_PER_DELIVERY)
    throw new HttpProblem(
      422,
      'invalid-detection',
      'Invalid detection',
      `more than ${MAX_FINDINGS_PER_DELIVERY} findings in one delivery`,
    );
  return items.map((item, i) => {
    const at = (field: string) => (m.items ? `${m.items}[${i}].${field}` : field);
    const secret = m.secret ? asText(getPath(item, m.secret)) : undefined;
    const typeName = m.credentialType ? asText(getPath(item, m.credentialType)) : undefined;
    const mapped = typeName ? m.typeMap[typeName] : undefined;
    const credentialType: CredentialType =
      mapped ??
      (typeName && (CREDENTIAL_TYPES as readonly string[]).includes(typeName)
        ? (typeName as CredentialType)
        : undefined) ??
      recognisedOr(typeName, secret, m.defaultCredentialType);
    const credentialRef: Record<string, string> = {};
    for (const [k, p] of Object.entries(m.credentialRef)) {
      const v = asText(getPath(item, p));
      if (v) credentialRef[k] = v.slice(0, 256);
    }
    if (!secret && Object.keys(credentialRef).length === 0) {
      throw new HttpProblem(
        422,
        'invalid-detection',
        'Invalid detection',
        `${at(m.secret ?? 'credentialRef')}: no secret and no credential reference in this finding`,
        {
          errors: [
            { field: at(m.secret ?? 'credentialRef'), message: 'no secret and no credential reference' },
          ],
        },
      );
    }
    const sev = m.severity ? asText(getPath(item, m.severity))?.toLowerCase() : undefined;
    const verified = m.verified ? getPath(item, m.verified) : undefined;
    const line = m.location.line ? Number(getPath(item, m.location.line)) : undefined;
    const commit = m.location.commit ? asText(getPath(item, m.location.commit)) : undefined;
    const url = m.location.url ? asText(getPath(item, m.location.url)) : undefined;
    const findingId = m.dedupeId ? asText(getPath(item, m.dedupeId)) : undefined;
    return {
      source: config.name,
      scanner: config.name,
      ...(findingId ? { findingId: findingId.slice(0, 256) } : {}),
      credentialType,
      ...(secret ? { secret } : {}),
      ...(Object.keys(credentialRef).length ? { credentialRef } : {}),
      location: {
        repository: m.location.repository
          ? asText(getPath(item, m.location.repository))?.slice(0, 512)
          : undefined,
        file: m.location.file ? asText(getPath(item, m.location.file))?.slice(0, 2048) : undefined,
        line: line !== undefined && Number.isInteger(line) && line >= 0 ? line : undefined,
        commit: commit && /^[0-9a-fA-F]{7,64}$/.test(commit) ? commit : undefined,
        url: url && /^https?:\/\//.test(url) ? url.slice(0, 4096) : undefined,
      },
      severity: sev && (SEVERITIES as readonly string[]).includes(sev) ? (sev as Severity) : 'high',
      ...(verified !== undefined
        ? {
            validity:
              verified === true || verified === 'true' || verified === 'valid' ? 'verified' : 'unverified',
          }
        : {}),
    } satisfies RawFinding;
  });
}

export function createCustomSource(
  config: CustomSourceConfig,
  ctx: SourceContext,
  defaultLimit: number,
): SourceHandler {
  const v = config.verify;
  const secrets = secretsFromEnv(ctx.env, v.secretsEnv);
  // The configured paths' keys are this source's own words: errors may name them.
  const m = config.mapping;
  const known = [
    m.items,
    m.secret,
    m.credentialType,
    m.severity,
    m.verified,
    m.dedupeId,
    ...Object.values(m.credentialRef),
    ...Object.values(m.location),
  ]
    .filter((p): p is string => typeof p === 'string')
    .flatMap((p) => p.match(/[^.[\]]+/g) ?? []);
  return {
    name: config.name,
    bodyLimitBytes: config.bodyLimit ?? defaultLimit,
    authenticate: (d) =>
      v.scheme === 'standard-webhooks'
        ? verifyStandardWebhook(secrets, d.rawBody, d.headers)
        : verifyHmac(secrets, d, v.header, v.prefix, v.encoding),
    parse: (d) => {
      const doc = parseJsonBody(d.rawBody, 'the body', { known });
      const id = d.headers['webhook-id'];
      const deliveryId =
        v.scheme === 'standard-webhooks' && typeof id === 'string'
          ? id
          : createHash('sha256').update(d.rawBody).digest('hex');
      return { kind: 'findings', deliveryId, findings: mapFindings(config, doc) };
    },
  };
}

/** `sources.custom`: senders described by configuration, each on its own route (/webhooks/<its name>). */
export const customSource = defineSource({
  name: 'custom',
  list: true,
  schema: z.array(customSourceSchema).default([]),
  names: (list) => list.map((c) => c.name),
  env: (list, path) =>
    list.map((c, i) => ({
      path: `${path}[${i}].verify.secretsEnv`,
      name: c.verify.secretsEnv,
      standardWebhooks: c.verify.scheme === 'standard-webhooks',
    })),
  build: (list, ctx) => ({
    sources: list.map((c) => registered(createCustomSource(c, ctx, ctx.defaultBodyLimit), c)),
  }),
});

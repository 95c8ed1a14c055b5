/**
 * GitHub's secret scanning partner format, so an organisation can register its own token formats
 * and be its own partner. Body: `[{ token, type, url, source }]`; signed with ECDSA P-256 SHA-256
 * (`Github-Public-Key-Signature`, base64 DER) by the key `Github-Public-Key-Identifier` names, taken
 * from the key list GitHub publishes (configurable URL, cached, refetched at most once a minute
 * when an unknown key id shows up). Accepted deliveries answer 204.
 */
import { createHash, verify } from 'node:crypto';
import { z } from 'zod';
import { envVarName, sourceCommon } from '../../lib/sources-config';
import { HttpProblem } from '../../contracts/errors';
import { MAX_FINDINGS_PER_DELIVERY } from './ci-reports';
import { credentialTypeOf } from '../../contracts/credential-types';
import type { RawFinding } from '../../contracts/finding';
import type { Delivery, SourceContext, SourceHandler } from './types';
import { validateJsonBody } from './validate';
import { defineSource, registered } from './definition';

export const githubPartnerSourceSchema = z
  .object({
    ...sourceCommon,
    /** Where GitHub publishes the keys that sign partner deliveries. */
    keysUrl: z.url().default('https://api.github.com/meta/public_keys/secret_scanning'),
    /** Optional token for the keys URL (higher rate limit). */
    keysTokenEnv: envVarName.optional(),
    keysCacheSeconds: z.number().int().min(0).max(86400).default(3600),
  })
  .strict();

export type GitHubPartnerSourceConfig = z.infer<typeof githubPartnerSourceSchema>;

const keyList = z.object({
  public_keys: z.array(
    z.object({
      key_identifier: z.string().min(1).max(512),
      key: z.string().min(1).max(8192),
      is_current: z.boolean().optional(),
    }),
  ),
});

const REFETCH_MIN_MS = 60_000;

export class PartnerKeyCache {
  private keys = new Map<string, string>();
  private fetchedAt = 0;
  private inflight: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly ttlMs: number,
    private readonly token: string | undefined,
    private readonly fetchImpl: typeof fetch = fetch,
    private readonly refetchMinMs = REFETCH_MIN_MS,
  ) {}

  private async refresh(): Promise<void> {
    this.inflight ??= (async () => {
      try {
        const res = await this.fetchImpl(this.url, {
          headers: {
            accept: 'application/json',
            'user-agent': 'secret-kill-switch',
            ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          },
          signal: AbortSignal.timeout(10_000),
        });
        if (!res.ok) throw new Error(`key list answered ${res.status}`);
        const parsed = keyList.parse(await res.json());
        this.keys = new Map(parsed.public_keys.map((k) => [k.key_identifier, k.key]));
        this.fetchedAt = Date.now();
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }

  /** The PEM for a key id; refetches when stale, or once a minute at most for an unknown id. */
  async get(id: string): Promise<string | undefined> {
    const age = Date.now() - this.fetchedAt;
    if (this.fetchedAt === 0 || age > this.ttlMs || (!this.keys.has(id) && age >= this.refetchMinMs)) {
      try {
        await this.refresh();
      } catch (err) {
        if (this.keys.size === 0)
          throw new HttpProblem(
            503,
            'keys-unavailable',
            'Signing keys unavailable',
            `GitHub's partner key list could not be fetched: ${(err as Error).message}`,
            {},
            { 'Retry-After': '30' },
          );
      }
    }
    return this.keys.get(id);
  }
}

const partnerSchema = z
  .array(
    z
      .object({
        token: z
          .string()
          .min(1)
          .max(16 * 1024),
        type: z.string().min(1).max(200),
        url: z.string().max(4096).optional(),
        source: z.string().max(100).optional(),
      })
      .loose(),
  )
  .max(MAX_FINDINGS_PER_DELIVERY);

export function createGitHubPartnerSource(
  config: GitHubPartnerSourceConfig,
  ctx: SourceContext,
  defaultLimit: number,
  fetchImpl?: typeof fetch,
): SourceHandler {
  const token = config.keysTokenEnv ? ctx.env[config.keysTokenEnv] : undefined;
  const cache = new PartnerKeyCache(config.keysUrl, config.keysCacheSeconds * 1000, token, fetchImpl);
  return {
    name: 'github_partner',
    bodyLimitBytes: config.bodyLimit ?? Math.max(defaultLimit, 5 * 1024 * 1024),
    acceptedStatus: 204,
    async authenticate(d: Delivery) {
      const id = d.headers['github-public-key-identifier'];
      const sig = d.headers['github-public-key-signature'];
      if (typeof id !== 'string' || typeof sig !== 'string' || !id || !sig) {
        throw new HttpProblem(
          401,
          'missing-signature',
          'Missing signature',
          'Github-Public-Key-Identifier and Github-Public-Key-Signature are required',
        );
      }
      const pem = await cache.get(id);
      if (!pem)
        throw new HttpProblem(
          401,
          'unknown-key',
          'Unknown signing key',
          'the signing key id is not in the published key list',
        );
      let ok = false;
      try {
        ok = verify('sha256', d.rawBody, { key: pem, dsaEncoding: 'der' }, Buffer.from(sig, 'base64'));
      } catch {
        ok = false;
      }
      if (!ok)
        throw new HttpProblem(
          401,
          'invalid-signature',
          'Invalid signature',
          'the ECDSA signature does not verify with the named key',
        );
    },
    parse(d: Delivery) {
      const batch = validateJsonBody(partnerSchema, d.rawBody, {
        slug: 'invalid-detection',
        title: 'Invalid partner batch',
      });
      const findings: RawFinding[] = batch.map((t) => {
        const credentialType = credentialTypeOf(t.type, t.token);
        return {
          source: 'github_partner',
          scanner: 'github-partner',
          credentialType,
          secret: t.token,
          // An organisation's own token formats: the type name is what identifies them.
          ...(credentialType === 'generic' ? { credentialRef: { tokenType: t.type } } : {}),
          location: { ...(t.url && /^https?:\/\//.test(t.url) ? { url: t.url } : {}) },
          severity: 'critical',
          // Partner reports come from public content (repositories, gists, issues, packages).
          publiclyLeaked: true,
        };
      });
      return { kind: 'findings', deliveryId: createHash('sha256').update(d.rawBody).digest('hex'), findings };
    },
  };
}

export const githubPartnerSource = defineSource({
  name: 'github_partner',
  schema: githubPartnerSourceSchema.optional(),
  env: (c, path) => (c ? [{ path: `${path}.keysTokenEnv`, name: c.keysTokenEnv, optional: true }] : []),
  build: (c, ctx) =>
    c ? { sources: [registered(createGitHubPartnerSource(c, ctx, ctx.defaultBodyLimit), c)] } : {},
});

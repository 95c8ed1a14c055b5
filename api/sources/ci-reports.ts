/**
 * Reports of CI scanners, posted as they come out of the tool and signed with Standard Webhooks:
 * TruffleHog `--json` (NDJSON, one finding a line) and Gitleaks `--report-format json` (an array).
 * Each finding becomes a RawFinding; findings of one secret (other files, other commits) collapse
 * downstream because the run id comes from the secret, never from Gitleaks' location Fingerprint.
 * The repository can be named with the `X-Scan-Repository` header when the report lacks it.
 */
import { z } from 'zod';
import { standardWebhooksSourceSchema, type StandardWebhooksSourceConfig } from '../../lib/sources-config';
import { HttpProblem } from '../../contracts/errors';
import { credentialTypeOf } from '../../contracts/credential-types';
import type { RawFinding } from '../../contracts/finding';
import { verifyStandardWebhook } from './generic';
import type { Delivery, SourceContext, SourceHandler } from './types';
import { defineSource, registered, type SourceDefinition } from './definition';
import { decodeUtf8, parseJsonBody, parseJsonText, schemaKeys, validateWith } from './validate';

export const MAX_FINDINGS_PER_DELIVERY = 1000;

export function secretsFromEnv(env: Record<string, string | undefined>, name: string): string[] {
  const list = (env[name] ?? '').split(/[\s,]+/).filter(Boolean);
  if (list.length === 0) throw new Error(`${name} is not set: it must hold the source's signing secret(s)`);
  return list;
}

function invalid(field: string, message: string): HttpProblem {
  return new HttpProblem(422, 'invalid-report', 'Invalid report', `${field}: ${message}`, {
    errors: [{ field, message }],
  });
}

/** A finding checked against its schema: 422 naming the field, never a value or an unknown key. */
const validateFinding = <S extends z.ZodType>(schema: S, doc: unknown, prefix: string): z.infer<S> =>
  validateWith(schema, doc, { slug: 'invalid-report', title: 'Invalid report', prefix });

function repositoryHeader(d: Delivery): string | undefined {
  const v = d.headers['x-scan-repository'];
  return typeof v === 'string' && /^[\w.-]+\/[\w.-]+$/.test(v) ? v : undefined;
}

/**
 * The repository a report names, only when it names a remote: `https://github.com/acme/api.git`,
 * `ssh://git@host/acme/api`, `git@github.com:acme/api.git` → `acme/api` (GitLab subgroups kept:
 * `group/sub/api`). A local scan's `.`, a relative or absolute path or a file:// URL names no
 * repository: undefined, so the X-Scan-Repository header is used instead.
 */
export function repoName(url: string | undefined): string | undefined {
  const v = url?.trim();
  if (!v) return undefined;
  let path: string;
  const scp = /^[\w.-]+@[^/:\s]+:(?!\/)(\S+)$/.exec(v);
  if (scp) path = scp[1]!;
  else if (/^(?:https?|ssh|git):\/\//i.test(v)) {
    try {
      const u = new URL(v);
      if (!u.hostname) return undefined;
      path = decodeURIComponent(u.pathname);
    } catch {
      return undefined;
    }
  } else return undefined;
  const name = path.replace(/^\/+|\/+$/g, '').replace(/\.git$/i, '');
  return /^[^/\s]+(?:\/[^/\s]+)+$/.test(name) ? name.slice(0, 512) : undefined;
}

const str = z.string().max(16 * 1024);
const lineNo = z.union([z.number().int().min(0), z.string().regex(/^\d+$/).transform(Number)]);

// ---------------------------------------------------------------------------------------------
// TruffleHog

const truffleLocation = z
  .object({
    commit: str.optional(),
    file: str.optional(),
    repository: str.optional(),
    link: str.optional(),
    line: lineNo.optional(),
    email: str.optional(),
    timestamp: str.optional(),
  })
  .loose();

export const truffleHogFindingSchema = z
  .object({
    SourceMetadata: z
      .object({ Data: z.record(z.string(), truffleLocation) })
      .loose()
      .optional(),
    SourceName: str.optional(),
    DetectorName: z.string().min(1).max(200),
    DetectorType: z.number().int().optional(),
    Verified: z.boolean().default(false),
    VerificationError: str.optional(),
    Raw: z.string().max(16 * 1024),
    RawV2: z
      .string()
      .max(16 * 1024)
      .optional(),
    Redacted: str.optional(),
  })
  .loose();

export function parseTruffleHog(body: Buffer, repoHint?: string): RawFinding[] {
  const lines = decodeUtf8(body)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (lines.length === 0) throw invalid('(body)', 'no findings: expected one JSON object a line');
  if (lines.length > MAX_FINDINGS_PER_DELIVERY)
    throw invalid(
      '(body)',
      `more than ${MAX_FINDINGS_PER_DELIVERY} findings in one delivery; split the report`,
    );
  const known = new Set([...schemaKeys(truffleHogFindingSchema), ...schemaKeys(truffleHogV2FindingSchema)]);
  const findings = lines.flatMap((line, i) => {
    const doc = parseJsonText(line, `line ${i + 1}`, { known, prefix: `line[${i + 1}]` });
    if (isTruffleHogV2(doc))
      return truffleHogV2Findings(
        validateFinding(truffleHogV2FindingSchema, doc, `line[${i + 1}]`),
        repoHint,
      );
    const f = validateFinding(truffleHogFindingSchema, doc, `line[${i + 1}]`);
    // RawV2 carries the whole credential when the detector needs two parts (id + secret, URL).
    const secret = f.RawV2 && f.RawV2.length > 0 ? f.RawV2 : f.Raw;
    if (!secret) throw invalid(`line[${i + 1}].Raw`, 'empty');
    const loc = Object.values(f.SourceMetadata?.Data ?? {})[0] ?? {};
    const credentialType = credentialTypeOf(f.DetectorName, f.Raw);
    return {
      source: 'trufflehog',
      scanner: 'trufflehog',
      credentialType,
      secret: credentialType === 'postgres_password' ? f.Raw : secret,
      ...(credentialType === 'generic' ? { credentialRef: { detector: f.DetectorName } } : {}),
      location: {
        repository: repoName(loc.repository) ?? repoHint,
        file: loc.file,
        line: loc.line,
        commit: loc.commit && /^[0-9a-fA-F]{7,64}$/.test(loc.commit) ? loc.commit : undefined,
        url: loc.link && /^https?:\/\//.test(loc.link) ? loc.link : undefined,
      },
      severity: f.Verified ? 'critical' : 'high',
      validity: f.Verified ? 'verified' : 'unverified',
    } satisfies RawFinding;
  });
  if (findings.length > MAX_FINDINGS_PER_DELIVERY)
    throw invalid(
      '(body)',
      `more than ${MAX_FINDINGS_PER_DELIVERY} findings in one delivery; split the report`,
    );
  return findings;
}

/**
 * TruffleHog v2 (`trufflehog --json`, the PyPI package `truffleHog` 2.x): one object a line, keyed
 * by commit and file, the matched strings in `stringsFound` and the rule in `reason` (a regex name
 * such as "AWS API Key", "Password in URL", or "High Entropy"). `diff` and `printDiff` carry the
 * whole changed text, other secrets included: never read, never kept.
 */
export const truffleHogV2FindingSchema = z
  .object({
    branch: str.optional(),
    commit: str.optional(),
    commitHash: str.optional(),
    date: str.optional(),
    path: str.optional(),
    reason: z.string().min(1).max(200),
    stringsFound: z
      .array(z.string().max(16 * 1024))
      .min(1)
      .max(MAX_FINDINGS_PER_DELIVERY),
  })
  .loose();

const isTruffleHogV2 = (doc: unknown): boolean =>
  !!doc && typeof doc === 'object' && !('DetectorName' in doc) && ('stringsFound' in doc || 'reason' in doc);

/**
 * The credential in a v2 match. Most of v2's regexes match a whole assignment (`github…"<token>"`,
 * `secret…'<value>'`): the quoted value is the credential. "Password in URL" ends on the quote or
 * white space after the URL: trimmed off.
 */
function truffleHogV2Value(reason: string, found: string): string {
  const s = found.trim();
  if (/password in url/i.test(reason)) return s.replace(/["'\s]+$/, '');
  return /['"]([^'"\s]{8,})['"]$/.exec(s)?.[1] ?? s;
}

function truffleHogV2Findings(f: z.infer<typeof truffleHogV2FindingSchema>, repoHint?: string): RawFinding[] {
  const commit = f.commitHash && /^[0-9a-fA-F]{7,64}$/.test(f.commitHash) ? f.commitHash : undefined;
  return f.stringsFound
    .map((found) => truffleHogV2Value(f.reason, found))
    .filter((v) => v.length > 0)
    .map((secret) => {
      const credentialType = credentialTypeOf(f.reason, secret);
      return {
        source: 'trufflehog',
        scanner: 'trufflehog-v2',
        credentialType,
        secret,
        ...(credentialType === 'generic' ? { credentialRef: { detector: f.reason.slice(0, 200) } } : {}),
        location: { repository: repoHint, file: f.path, commit },
        severity: 'high',
        // v2 never checks whether a secret is live.
        validity: 'unknown',
      } satisfies RawFinding;
    });
}

// ---------------------------------------------------------------------------------------------
// Gitleaks

export const gitleaksFindingSchema = z
  .object({
    RuleID: z.string().min(1).max(200),
    Description: str.optional(),
    Secret: z
      .string()
      .min(1)
      .max(16 * 1024),
    Match: str.optional(),
    File: str.optional(),
    StartLine: lineNo.optional(),
    Commit: str.optional(),
    Author: str.optional(),
    Date: str.optional(),
    Fingerprint: str.optional(),
    Link: str.optional(),
  })
  .loose();

export function parseGitleaks(body: Buffer, repoHint?: string): RawFinding[] {
  const doc = parseJsonBody(body, 'the report', { known: gitleaksFindingSchema });
  if (!Array.isArray(doc))
    throw invalid('(body)', 'expected the JSON array gitleaks writes with --report-format json');
  if (doc.length > MAX_FINDINGS_PER_DELIVERY)
    throw invalid(
      '(body)',
      `more than ${MAX_FINDINGS_PER_DELIVERY} findings in one delivery; split the report`,
    );
  return doc.map((item, i) => {
    const f = validateFinding(gitleaksFindingSchema, item, `[${i}]`);
    // Gitleaks' Secret is the captured group; a PostgreSQL URL may only be whole in Match.
    // A quote closes the URL only at its end ('…' in YAML); inside, it may be part of the password.
    const urlInMatch = f.Match
      ? /postgres(?:ql)?:\/\/[^\s"`]+/i.exec(f.Match)?.[0]?.replace(/['),;]+$/, '')
      : undefined;
    const credentialType = credentialTypeOf(f.RuleID, urlInMatch ?? f.Secret);
    return {
      source: 'gitleaks',
      scanner: 'gitleaks',
      credentialType,
      secret: credentialType === 'postgres_password' ? (urlInMatch ?? f.Secret) : f.Secret,
      ...(credentialType === 'generic' ? { credentialRef: { rule: f.RuleID } } : {}),
      location: {
        repository: repoHint,
        file: f.File,
        line: f.StartLine,
        commit: f.Commit && /^[0-9a-fA-F]{7,64}$/.test(f.Commit) ? f.Commit : undefined,
        url: f.Link && /^https?:\/\//.test(f.Link) ? f.Link : undefined,
      },
      severity: 'high',
      // Gitleaks does not check whether a secret is live.
      validity: 'unknown',
    } satisfies RawFinding;
  });
}

// ---------------------------------------------------------------------------------------------
// Kingfisher: `kingfisher scan … --format json` writes the report object, then a summary object on
// its own line. Findings carry the matched value in `snippet`; for URIs with an embedded password the
// snippet is the password alone and the whole URI sits in `validate_command`.

const kingfisherFindingSchema = z
  .object({
    rule: z.object({ id: z.string().min(1).max(300), name: z.string().max(300).optional() }).loose(),
    finding: z
      .object({
        snippet: z
          .string()
          .min(1)
          .max(16 * 1024),
        /** Other parts of the credential a rule captured with it, e.g. the AWS secret access key. */
        dependent_captures: z.record(z.string().max(200), str).optional(),
        path: str.optional(),
        line: lineNo.optional(),
        validation: z.object({ outcome: str.optional(), status: str.optional() }).loose().optional(),
        validate_command: str.optional(),
        git_metadata: z
          .object({
            repository_url: str.optional(),
            commit: z.object({ id: str.optional(), url: str.optional() }).loose().optional(),
            file: z.object({ url: str.optional() }).loose().optional(),
          })
          .loose()
          .optional(),
      })
      .loose(),
  })
  .loose();

export function parseKingfisher(body: Buffer, repoHint?: string): RawFinding[] {
  const docs: unknown[] = [];
  for (const [i, line] of decodeUtf8(body, 'the report').split(/\r?\n/).entries()) {
    if (!line.trim()) continue;
    docs.push(
      parseJsonText(line, `line ${i + 1} of the report`, {
        known: kingfisherFindingSchema,
        prefix: `line[${i + 1}]`,
      }),
    );
  }
  const report = docs.find(
    (d): d is { findings: unknown[] } =>
      !!d && typeof d === 'object' && Array.isArray((d as { findings?: unknown }).findings),
  );
  if (!report) throw invalid('findings', 'no report with a findings array (kingfisher scan --format json)');
  if (report.findings.length > MAX_FINDINGS_PER_DELIVERY)
    throw invalid(
      'findings',
      `more than ${MAX_FINDINGS_PER_DELIVERY} findings in one delivery; split the report`,
    );
  return report.findings.map((item, i) => {
    const { rule, finding: f } = validateFinding(kingfisherFindingSchema, item, `findings[${i}]`);
    const uri = f.validate_command
      ? /postgres(?:ql)?:\/\/[^\s'"]+/i.exec(f.validate_command)?.[0]
      : undefined;
    const credentialType = credentialTypeOf(rule.id, uri ?? f.snippet);
    const outcome = (f.validation?.outcome ?? '').toLowerCase();
    const commit = f.git_metadata?.commit?.id;
    // An AWS key pair: the snippet is the access key id, the secret access key is a dependent
    // capture. Sent as `id:secret`, like TruffleHog's RawV2, so the pair is split where every pair is
    // (reduceFinding) and the secret is kept as evidence to prove the key dead.
    const awsSecret =
      credentialType === 'aws_access_key'
        ? Object.entries(f.dependent_captures ?? {}).find(
            ([k, v]) => /SECRET/i.test(k) && /^[A-Za-z0-9/+]{40}$/.test(v),
          )?.[1]
        : undefined;
    return {
      source: 'kingfisher',
      scanner: 'kingfisher',
      credentialType,
      secret:
        credentialType === 'postgres_password' && uri
          ? uri
          : awsSecret
            ? `${f.snippet}:${awsSecret}`
            : f.snippet,
      ...(credentialType === 'generic' ? { credentialRef: { rule: rule.id.slice(0, 200) } } : {}),
      location: {
        repository: repoName(f.git_metadata?.repository_url) ?? repoHint,
        file: f.path?.replace(/^\.\//, ''),
        line: f.line,
        commit: commit && /^[0-9a-fA-F]{7,64}$/.test(commit) ? commit : undefined,
        url:
          f.git_metadata?.file?.url && /^https?:\/\//.test(f.git_metadata.file.url)
            ? f.git_metadata.file.url
            : undefined,
      },
      severity: outcome === 'valid' ? 'critical' : 'high',
      validity: outcome === 'valid' ? 'verified' : outcome === 'invalid' ? 'unverified' : 'unknown',
    } satisfies RawFinding;
  });
}

// ---------------------------------------------------------------------------------------------

function reportSource(
  name: string,
  parse: (body: Buffer, repo?: string) => RawFinding[],
  config: StandardWebhooksSourceConfig,
  ctx: SourceContext,
  defaultLimit: number,
): SourceHandler & { contentTypes: string[] } {
  const secrets = secretsFromEnv(ctx.env, config.secretsEnv);
  return {
    name,
    bodyLimitBytes: config.bodyLimit ?? defaultLimit,
    contentTypes: ['application/x-ndjson', 'application/jsonl', 'text/plain'],
    authenticate: (d) => verifyStandardWebhook(secrets, d.rawBody, d.headers),
    parse: (d) => {
      const id = d.headers['webhook-id'];
      return {
        kind: 'findings',
        ...(typeof id === 'string' ? { deliveryId: id } : {}),
        findings: parse(d.rawBody, repositoryHeader(d)),
      };
    },
  };
}

/**
 * A CI report source: `sources.<name>` names the Standard Webhooks secrets, POST /webhooks/<name>
 * takes the report as the tool writes it, `parse` turns it into RawFindings.
 */
export function ciReportSource(
  name: string,
  parse: (body: Buffer, repo?: string) => RawFinding[],
): SourceDefinition {
  return defineSource({
    name,
    schema: standardWebhooksSourceSchema.optional(),
    env: (c, path) => (c ? [{ path: `${path}.secretsEnv`, name: c.secretsEnv, standardWebhooks: true }] : []),
    build: (c, ctx) => {
      if (!c) return {};
      const h = reportSource(name, parse, c, ctx, ctx.defaultBodyLimit);
      return { sources: [registered(h, c, h.contentTypes)] };
    },
  });
}

export const truffleHogSource = ciReportSource('trufflehog', parseTruffleHog);
export const gitleaksSource = ciReportSource('gitleaks', parseGitleaks);
export const kingfisherSource = ciReportSource('kingfisher', parseKingfisher);

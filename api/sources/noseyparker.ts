/**
 * Nosey Parker (praetorian-inc/noseyparker): `noseyparker report --format json` (an array of
 * findings) or `--format jsonl` (one finding a line), posted as written and signed with Standard
 * Webhooks like the other CI reports. A finding is one rule's match content; its capture groups come
 * base64-encoded in `groups`, its locations in `matches` (provenance: a file path, or a git repo with
 * the commit and blob path where it first appeared). The format is the one the tool's JSON schema
 * (`noseyparker generate json-schema`) describes: the report carries the secret itself.
 */
import { z } from 'zod';
import { credentialTypeOf } from '../../contracts/credential-types';
import type { CredentialType } from '../../contracts/detection';
import { HttpProblem } from '../../contracts/errors';
import type { RawFinding } from '../../contracts/finding';
import { ciReportSource, MAX_FINDINGS_PER_DELIVERY, repoName } from './ci-reports';
import { decodeUtf8, parseJsonText, validateWith } from './validate';

const str = z.string().max(16 * 1024);
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const provenance = z.union([
  z.object({ kind: z.literal('file'), path: str }).loose(),
  z
    .object({
      kind: z.literal('git_repo'),
      repo_path: str,
      first_commit: z
        .object({ blob_path: str, commit_metadata: z.object({ commit_id: str }).loose() })
        .loose()
        .nullish(),
    })
    .loose(),
  z.object({ kind: z.literal('extended'), payload: z.unknown() }).loose(),
]);

const reportMatch = z
  .object({
    provenance: z.array(provenance).min(1).max(100),
    location: z
      .object({
        source_span: z.object({ start: z.object({ line: z.number().int().min(0) }).loose() }).loose(),
      })
      .loose()
      .optional(),
    structural_id: str.optional(),
  })
  .loose();

export const noseyParkerFindingSchema = z
  .object({
    finding_id: str.optional(),
    rule_name: z.string().min(1).max(300),
    /** np.github.1, np.aws.6, …: the rule's stable id (Nosey Parker 0.17 and later). */
    rule_text_id: z.string().min(1).max(300).optional(),
    groups: z
      .array(
        z
          .string()
          .max(32 * 1024)
          .regex(BASE64, 'base64 of the captured text'),
      )
      .min(1)
      .max(16),
    matches: z.array(reportMatch).max(MAX_FINDINGS_PER_DELIVERY).default([]),
  })
  .loose();

type Finding = z.infer<typeof noseyParkerFindingSchema>;

/** The rules whose match names a credential we act on, by rule id; any other is typed by its value. */
const RULES: Readonly<Record<string, CredentialType>> = {
  'np.aws.1': 'aws_access_key', // the access key id alone: a reference
  'np.aws.6': 'aws_access_key', // id and secret access key: groups [id, secret]
  'np.github.1': 'github_token',
  'np.github.2': 'github_token',
  'np.github.3': 'github_token',
  'np.github.4': 'github_token',
  'np.github.7': 'github_token',
  'np.slack.2': 'slack_token',
  'np.slack.4': 'slack_token',
  'np.slack.5': 'slack_token',
  'np.slack.6': 'slack_token',
  'np.postgres.1': 'postgres_password', // groups [user, password, host[:port]]
};

function invalid(field: string, message: string): HttpProblem {
  return new HttpProblem(422, 'invalid-report', 'Invalid report', `${field}: ${message}`, {
    errors: [{ field, message }],
  });
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function groupText(b64: string, field: string): string {
  let text: string;
  try {
    text = UTF8.decode(Buffer.from(b64, 'base64'));
  } catch {
    throw invalid(field, 'not base64 of UTF-8 text');
  }
  // eslint-disable-next-line no-control-regex
  if (/\u0000/.test(text)) throw invalid(field, 'contains U+0000, which cannot be stored');
  return text;
}

/** The credential a finding's capture groups spell, and its type. */
function credentialOf(f: Finding, at: string): { credentialType: CredentialType; secret: string } {
  const groups = f.groups.map((g, j) => groupText(g, `${at}.groups[${j}]`));
  const rule = f.rule_text_id;
  // The URI rule captures user, password and host: the URL they spell names the role to act on.
  // Any other rule of several groups (the AWS pair: id, secret access key) is the groups together.
  const secret =
    rule === 'np.postgres.1' && groups.length === 3
      ? `postgres://${groups[0]}:${groups[1]}@${groups[2]}`
      : groups.join(':');
  if (!secret) throw invalid(`${at}.groups`, 'empty');
  const byValue = credentialTypeOf(undefined, secret);
  if (byValue !== 'generic') return { credentialType: byValue, secret };
  if (rule) return { credentialType: RULES[rule] ?? 'generic', secret };
  return { credentialType: credentialTypeOf(f.rule_name, secret), secret };
}

function locationOf(
  m: z.infer<typeof reportMatch> | undefined,
  repoHint: string | undefined,
): NonNullable<RawFinding['location']> {
  if (!m) return { repository: repoHint };
  const p = m.provenance[0]!;
  const line = m.location?.source_span.start.line;
  const base = { repository: repoHint, ...(line ? { line } : {}) };
  if (p.kind === 'file') return { ...base, file: (p.path as string).replace(/^\.\//, '').slice(0, 2048) };
  if (p.kind === 'git_repo') {
    const c = p.first_commit;
    const commit = c?.commit_metadata.commit_id;
    return {
      ...base,
      // repo_path is where the scanner had the clone (a local path): a repository only when it is a remote.
      repository: repoName(p.repo_path) ?? repoHint,
      file: c?.blob_path.slice(0, 2048),
      commit: commit && /^[0-9a-f]{7,64}$/.test(commit) ? commit : undefined,
    };
  }
  const path = (p.payload as { path?: unknown } | null)?.path;
  return { ...base, ...(typeof path === 'string' ? { file: path.slice(0, 2048) } : {}) };
}

export function parseNoseyParker(body: Buffer, repoHint?: string): RawFinding[] {
  const text = decodeUtf8(body, 'the report');
  let docs: Array<{ doc: unknown; at: string }>;
  if (text.trimStart().startsWith('[')) {
    const doc = parseJsonText(text, 'the report', { known: noseyParkerFindingSchema });
    if (!Array.isArray(doc))
      throw invalid('(body)', 'expected the JSON array of noseyparker report --format json');
    docs = doc.map((d, i) => ({ doc: d, at: `[${i}]` }));
  } else {
    docs = [];
    for (const [i, line] of text.split(/\r?\n/).entries()) {
      if (line.trim())
        docs.push({
          doc: parseJsonText(line, `line ${i + 1} of the report`, {
            known: noseyParkerFindingSchema,
            prefix: `line[${i + 1}]`,
          }),
          at: `line[${i + 1}]`,
        });
    }
  }
  if (docs.length === 0)
    throw invalid('(body)', 'no findings: expected noseyparker report --format json (or jsonl)');
  const findings = docs.flatMap(({ doc, at }) => {
    const f = validateWith(noseyParkerFindingSchema, doc, {
      slug: 'invalid-report',
      title: 'Invalid report',
      prefix: at,
    });
    const { credentialType, secret } = credentialOf(f, at);
    const base = {
      source: 'noseyparker',
      scanner: 'noseyparker',
      credentialType,
      secret,
      ...(credentialType === 'generic'
        ? { credentialRef: { rule: (f.rule_text_id ?? f.rule_name).slice(0, 200) } }
        : {}),
      severity: 'high',
      // Nosey Parker does not check whether a secret is live.
      validity: 'unknown',
    } satisfies Omit<RawFinding, 'location'>;
    // One sighting per location the report lists; the run is one per credential either way.
    return (f.matches.length ? f.matches : [undefined]).map(
      (m) => ({ ...base, location: locationOf(m, repoHint) }) satisfies RawFinding,
    );
  });
  if (findings.length > MAX_FINDINGS_PER_DELIVERY)
    throw invalid(
      '(body)',
      `more than ${MAX_FINDINGS_PER_DELIVERY} findings in one delivery; split the report`,
    );
  return findings;
}

export const noseyParkerSource = ciReportSource('noseyparker', parseNoseyParker);

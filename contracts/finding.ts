/**
 * Every source turns its payload into RawFindings; this is the one place a RawFinding becomes a
 * Detection. Here a raw secret value stops: it is reduced to a keyed fingerprint and the non-secret
 * identifiers a provider needs, scrubbed from every field that travels, and handed back only so the
 * ingress can seal it as evidence.
 */
import { parse as parseConnectionString } from 'pg-connection-string';
import type {
  CloseLoopRef,
  CredentialRef,
  CredentialType,
  Detection,
  DetectionLocation,
  Severity,
  Validity,
} from './detection';
import type { ServerKeys } from './keys';
import { githubTokenPrefix, slackTokenPrefix } from './credentials';
import { HttpProblem } from './errors';

export interface RawFinding {
  /** The source (route) that received it: generic, github, trufflehog, ... */
  source: string;
  /** The tool that found it, when the source is a transport for several. */
  scanner?: string;
  /** The scanner's own id of this finding, when it has one (dedupes re-deliveries of one finding). */
  findingId?: string;
  credentialType: CredentialType;
  /** The leaked value as found. Never leaves this module except as evidence. */
  secret?: string;
  credentialRef?: Record<string, string | number>;
  location?: DetectionLocation;
  severity: Severity;
  detectedAt?: string;
  validity?: Validity;
  publiclyLeaked?: boolean;
  closeLoop?: CloseLoopRef;
}

export interface Sighting {
  detection: Detection;
  /** The leaked value, for the evidence store only. Never logged, never sent to Temporal. */
  leakedValue?: string;
  /** Keyed hash the workflow id derives from: the fingerprint, or a hash of the reference. */
  credentialKey: string;
}

/**
 * Replaces every occurrence of the secret in a string that is about to travel, and control
 * characters (a NUL cannot even be stored in PostgreSQL's jsonb) with U+FFFD.
 */
export function scrub(value: string, needles: readonly string[]): string {
  let out = value;
  for (const n of needles) if (n) out = out.split(n).join('[redacted]');
  // eslint-disable-next-line no-control-regex
  return out.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '\ufffd');
}

function problem(field: string, message: string): HttpProblem {
  return new HttpProblem(422, 'invalid-detection', 'Invalid detection', `${field}: ${message}`, {
    errors: [{ field, message }],
  });
}

/** `fieldPrefix` names the finding in errors, e.g. `[3]` for the fourth finding of a batch. */
export function reduceFinding(f: RawFinding, keys: ServerKeys, now: Date, fieldPrefix = ''): Sighting {
  const at = (field: string) => (fieldPrefix ? `${fieldPrefix}.${field}` : field);
  const ref: CredentialRef = {};
  for (const [k, v] of Object.entries(f.credentialRef ?? {})) ref[k] = String(v);

  let leakedValue: string | undefined = f.secret;
  if (f.secret && f.credentialType === 'postgres_password' && /^postgres(ql)?:\/\//i.test(f.secret)) {
    // A leaked connection string: the password is the secret, the rest identifies the role.
    let parsed: ReturnType<typeof parseConnectionString>;
    try {
      parsed = parseConnectionString(f.secret);
    } catch {
      throw problem(at('secret'), 'not a parseable connection string');
    }
    if (!parsed.password) throw problem(at('secret'), 'the connection string carries no password');
    leakedValue = parsed.password;
    if (parsed.user && ref.role && ref.role !== parsed.user) {
      throw problem(at('credentialRef.role'), 'differs from the user in the leaked connection string');
    }
    if (parsed.user) ref.role ??= parsed.user;
    if (parsed.host && !parsed.host.startsWith('/')) ref.host ??= parsed.host;
    if (parsed.port) ref.port ??= String(parsed.port);
    if (parsed.database) ref.database ??= parsed.database;
  }
  if (f.secret && f.credentialType === 'redis_password' && /^rediss?:\/\//i.test(f.secret)) {
    // A leaked Redis URL: the password is the secret, the user (`default` when the URL names none,
    // as with a legacy AUTH <password>) and host identify the ACL user.
    let url: URL;
    try {
      url = new URL(f.secret);
    } catch {
      throw problem(at('secret'), 'not a parseable redis:// URL');
    }
    let user: string;
    try {
      leakedValue = decodeURIComponent(url.password);
      user = decodeURIComponent(url.username) || 'default';
    } catch {
      throw problem(at('secret'), 'not a parseable redis:// URL');
    }
    if (!leakedValue) throw problem(at('secret'), 'the URL carries no password');
    if (ref.user && ref.user !== user)
      throw problem(at('credentialRef.user'), 'differs from the user in the leaked URL');
    ref.user ??= user;
    if (url.hostname) ref.host ??= url.hostname.replace(/^\[|\]$/g, '');
    if (url.port) ref.port ??= url.port;
  }
  if (f.secret && f.credentialType === 'mysql_password' && /^(mysql|mariadb):\/\//i.test(f.secret)) {
    // A leaked MySQL/MariaDB connection URL: the password is the secret, the user and host identify the account.
    let url: URL;
    let user: string;
    try {
      url = new URL(f.secret);
      leakedValue = decodeURIComponent(url.password);
      user = decodeURIComponent(url.username);
    } catch {
      throw problem(at('secret'), 'not a parseable mysql:// URL');
    }
    if (!leakedValue) throw problem(at('secret'), 'the URL carries no password');
    if (user && ref.user && ref.user !== user)
      throw problem(at('credentialRef.user'), 'differs from the user in the leaked URL');
    if (user) ref.user ??= user;
    if (url.hostname) ref.host ??= url.hostname.replace(/^\[|\]$/g, '');
    if (url.port) ref.port ??= url.port;
    const database = url.pathname.slice(1);
    if (database) ref.database ??= database;
  }
  if (leakedValue && (f.credentialType === 'github_token' || f.credentialType === 'slack_token')) {
    // A token's prefix names its type and is not secret: the inventory matches on it.
    const prefix =
      f.credentialType === 'github_token' ? githubTokenPrefix(leakedValue) : slackTokenPrefix(leakedValue);
    if (prefix) ref.tokenPrefix = prefix;
  }
  /** The `secret` sent was only an identifier (a bare AWS access key id): nothing to scrub. */
  let secretIsIdentifier = false;
  if (f.secret && f.credentialType === 'aws_access_key') {
    // The access key id is an identifier, not the secret: alone it is only the reference; sent with
    // the secret access key (`id:secret`, or concatenated as TruffleHog's RawV2) it is split off.
    const m = /^((?:AKIA|ASIA)[A-Z0-9]{16})(?:[:\s,;]*([A-Za-z0-9/+]{40}))?$/.exec(f.secret.trim());
    if (m) {
      if (ref.accessKeyId && ref.accessKeyId !== m[1])
        throw problem(at('credentialRef.accessKeyId'), 'differs from the access key id in the leaked value');
      ref.accessKeyId ??= m[1]!;
      leakedValue = m[2];
      secretIsIdentifier = !m[2];
    }
  }
  if (f.credentialType === 'postgres_password' && !ref.role) {
    throw problem(
      at('credentialRef.role'),
      'required for postgres_password (or send the leaked connection string as secret)',
    );
  }
  if (f.credentialType === 'mysql_password' && !ref.user) {
    throw problem(
      at('credentialRef.user'),
      'required for mysql_password (or send the leaked connection URL as secret)',
    );
  }
  if (!leakedValue && Object.keys(ref).length === 0)
    throw problem(at('credentialRef'), 'either secret or credentialRef is required');

  const needles = [secretIsIdentifier ? undefined : f.secret, leakedValue].filter((x): x is string => !!x);
  for (const k of Object.keys(ref)) ref[k] = scrub(ref[k]!, needles);
  const location = Object.fromEntries(
    Object.entries(f.location ?? {})
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => [k, typeof v === 'string' ? scrub(v, needles) : v]),
  ) as DetectionLocation;

  const fingerprint = leakedValue ? keys.fingerprint(leakedValue) : undefined;
  const credentialKey =
    fingerprint ??
    keys.refHash([
      f.credentialType,
      ...Object.entries(ref)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k}=${v}`),
    ]);
  const scanner = f.scanner ? scrub(f.scanner, needles) : undefined;
  const id = f.findingId
    ? `${f.source}:${scanner ?? 'unnamed'}:${scrub(f.findingId, needles)}`
    : `${f.source}:${keys.refHash([credentialKey, JSON.stringify(location)]).slice(0, 32)}`;

  return {
    detection: {
      id,
      source: f.source,
      ...(scanner ? { scanner } : {}),
      credentialType: f.credentialType,
      credentialRef: ref,
      ...(fingerprint ? { fingerprint } : {}),
      location,
      severity: f.severity,
      detectedAt: f.detectedAt ?? now.toISOString(),
      hasEvidence: leakedValue !== undefined,
      ...(f.validity ? { validity: f.validity } : {}),
      ...(f.publiclyLeaked !== undefined ? { publiclyLeaked: f.publiclyLeaked } : {}),
      ...(f.closeLoop ? { closeLoop: f.closeLoop } : {}),
    },
    leakedValue,
    credentialKey,
  };
}

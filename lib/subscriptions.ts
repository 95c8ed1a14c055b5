/**
 * Outbound event subscriptions: the one schema of a subscription (the admin API's body and the
 * inventory's `subscriptions:` entries), the destination rules (https, and no loopback, private or
 * link-local address unless the allow-list permits it), and the view the APIs answer with. Shared
 * by the API, the store (config-as-code sync) and the worker; the secret never leaves this module
 * in a view (`hasSecret` only).
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import { CREDENTIAL_TYPES, SEVERITIES } from '../contracts/detection';
import {
  DEFAULT_EVENT_TYPES,
  EVENT_FORMATS,
  isKnownEventPattern,
  type EventFilters,
  type EventFormat,
} from '../contracts/events';
import { OUTCOMES } from '../contracts/outcomes';
import { duration, durationMs, envVarName } from './systems/common';

/** Sends the delivery.test event to one subscription now (the delivery side implements it). */
export interface OutboundControl {
  sendTest(
    id: string,
    by: string,
  ): Promise<{ eventId: string; delivered: boolean; statusCode?: number; error?: string }>;
}

export const subscriptionName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, - and _, at most 63 characters');

const printable = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

/** A host name or an IP address (IPv6 without brackets). */
export const hostSchema = z
  .string()
  .max(253)
  .refine((h) => isIP(h) !== 0 || HOST_NAME.test(h), 'a host name or an IP address');

const email = z.email({ message: 'an e-mail address' }).max(320);

/** syslog: where the messages go; the port defaults by protocol (514, tls 6514). */
export const syslogConnectionSchema = z
  .object({
    protocol: z.enum(['udp', 'tcp', 'tls']),
    host: hostSchema,
    port: z.number().int().min(1).max(65_535).optional(),
    /** tls: the PEM of the CA (or self-signed certificate) to trust instead of the public roots. */
    ca: z.string().max(100_000).optional(),
    /** tls: false accepts any certificate (a lab only). */
    rejectUnauthorized: z.boolean().optional(),
  })
  .strict()
  .transform((c) => ({ ...c, port: c.port ?? (c.protocol === 'tls' ? 6514 : 514) }));

/** email: the SMTP relay and the message's addresses; the secret is the SMTP password of `user`. */
export const emailConnectionSchema = z
  .object({
    host: hostSchema,
    port: z.number().int().min(1).max(65_535).default(587),
    from: email,
    to: z.array(email).min(1).max(50),
    /** Implicit TLS from the first byte (SMTPS, usually port 465). */
    secure: z.boolean().default(false),
    /** STARTTLS: required (default), opportunistic or off; true/false mean required/off. */
    starttls: z
      .preprocess(
        (v) => (v === true ? 'required' : v === false ? 'off' : v),
        z.enum(['required', 'opportunistic', 'off']),
      )
      .default('required'),
    /** SMTP user; its password is the subscription's secret. */
    user: printable(320).optional(),
    /** PEM of the CA to trust instead of the public roots. */
    ca: z.string().max(100_000).optional(),
    /** false accepts any certificate (a lab only). */
    rejectUnauthorized: z.boolean().optional(),
    /** The EHLO name. */
    name: printable(255).optional(),
  })
  .strict();

const noOptions = z.object({}).strict();

/** Per-format options; a format missing here takes none. */
export const FORMAT_OPTIONS = {
  /** `card: adaptive` sends the Teams Workflows (Adaptive Card) payload instead of the MessageCard. */
  teams: z.object({ card: z.enum(['message_card', 'adaptive']).optional() }).strict(),
  teams_adaptive: noOptions,
  cef: z
    .object({
      vendor: printable(100).default('Secret Kill Switch'),
      // The formatter's defaults (activities/outbound/formats/cef.ts CEF_DEFAULT_*): the documented ones.
      product: printable(100).default('Kill Switch'),
    })
    .strict(),
  splunk_hec: z
    .object({
      index: printable(100).optional(),
      sourcetype: printable(100).optional(),
    })
    .strict(),
  syslog: z
    .object({
      /** A facility name (authpriv, local0, ...) or its number 0-23; default authpriv. */
      facility: z.union([z.string().regex(/^[a-z0-9]{2,12}$/), z.number().int().min(0).max(23)]).optional(),
      appName: z
        .string()
        .regex(/^[!-~]{1,48}$/, '1 to 48 printable ASCII characters')
        .optional(),
      hostname: z
        .string()
        .regex(/^[!-~]{1,255}$/, 'printable ASCII, no spaces')
        .optional(),
      sdId: z
        .string()
        .regex(/^[^@\s="\]]{1,32}@\d+(\.\d+)*$/, 'an SD-ID such as killswitch@32473')
        .optional(),
      /** MSG: the summary (default) or the event's CEF line (with `vendor`/`product`). */
      payload: z.enum(['summary', 'cef']).optional(),
      vendor: printable(100).optional(),
      product: printable(100).optional(),
    })
    .strict(),
  jira: z
    .object({
      /** The project key issues are opened in. */
      project: z.string().regex(/^[A-Z][A-Z0-9_]{0,9}$/, 'a Jira project key such as SEC'),
      /** The issue type's name. */
      issueType: printable(100).default('Task'),
      labels: z
        .array(z.string().regex(/^\S{1,255}$/, 'a label has no spaces'))
        .max(20)
        .default(['secret-kill-switch']),
      /**
       * Jira Cloud: the Atlassian account e-mail the API token (the secret) belongs to (basic auth).
       * Unset: the secret is sent as a bearer token (an OAuth 2.0 access token, with the url
       * https://api.atlassian.com/ex/jira/<cloudId>). Jira Data Center (REST v2, wiki markup) is not supported.
       */
      email: email.optional(),
      /** Which transition (by name, or the name of the status it leads to) to apply when an event of the run arrives. */
      transitions: z
        .record(z.string().refine(isKnownEventPattern, 'not a known event type'), printable(100))
        .default({ 'run.contained': 'Done' }),
    })
    .strict(),
} satisfies Partial<Record<EventFormat, z.ZodType>>;

/** Formats that connect themselves (syslog, e-mail); every other one posts to `url`. */
const CONNECTION_SCHEMAS = {
  syslog: syslogConnectionSchema,
  email: emailConnectionSchema,
} satisfies Partial<Record<EventFormat, z.ZodType>>;

/** Formats that cannot work without a secret (the destination's token). */
export const SECRET_REQUIRED: ReadonlySet<EventFormat> = new Set(['splunk_hec', 'jira']);

export const filtersSchema = z
  .object({
    owningSystems: z.array(printable(200)).max(100).optional(),
    teams: z.array(printable(200)).max(100).optional(),
    credentialTypes: z.array(z.enum(CREDENTIAL_TYPES)).max(50).optional(),
    sources: z.array(printable(200)).max(100).optional(),
    severities: z.array(z.enum(SEVERITIES)).max(10).optional(),
    outcomes: z.array(z.enum(OUTCOMES)).max(20).optional(),
  })
  .strict();

const eventPattern = z
  .string()
  .max(100)
  .refine(
    isKnownEventPattern,
    'not a known event type: *, a type of GET /api/events/types, or a prefix such as run.*',
  );

const urlField = z.string().min(1).max(2048);

const common = {
  name: subscriptionName,
  format: z.enum(EVENT_FORMATS),
  url: urlField.optional(),
  connection: z.record(z.string(), z.unknown()).optional(),
  eventTypes: z
    .array(eventPattern)
    .min(1)
    .max(50)
    .default(() => [...DEFAULT_EVENT_TYPES]),
  retryCount: z.number().int().min(0).max(10).default(3),
  timeoutMs: z.number().int().min(1000).max(30_000).default(5000),
  failureThreshold: z.number().int().min(1).max(1000).default(10),
  isActive: z.boolean().default(true),
  /**
   * Receives only the events routed to it: an owning system naming it (systems[].routing.subscriptions,
   * its own event types and filters still apply) or a rule's action. Default false: every event its
   * event types and filters match.
   */
  routedOnly: z.boolean().default(false),
  filters: filtersSchema.default({}),
  options: z.record(z.string(), z.unknown()).default({}),
};

type Common = z.output<z.ZodObject<typeof common>>;

/** A subscription as validated: per-format connection and options parsed, defaults applied. */
export type SubscriptionSpec = Omit<Common, 'connection' | 'filters'> & {
  connection?: Record<string, unknown>;
  filters: EventFilters;
};

type Ctx = z.RefinementCtx;

/** The per-format rules, adding issues under the field they concern; returns the parsed parts. */
function perFormat<T extends Common>(v: T, ctx: Ctx): T {
  const out: T = { ...v };
  const nested = (field: 'connection' | 'options', schema: z.ZodType, value: unknown) => {
    const r = schema.safeParse(value ?? {});
    if (r.success) return r.data as Record<string, unknown>;
    for (const issue of r.error.issues)
      ctx.addIssue({ ...(issue as object), path: [field, ...issue.path] } as Parameters<Ctx['addIssue']>[0]);
    return undefined;
  };
  const conn = (CONNECTION_SCHEMAS as Partial<Record<EventFormat, z.ZodType>>)[v.format];
  if (conn) {
    if (v.url !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['url'],
        message: `not used by the ${v.format} format; set connection`,
      });
    if (v.connection === undefined)
      ctx.addIssue({ code: 'custom', path: ['connection'], message: `required by the ${v.format} format` });
    else {
      const parsed = nested('connection', conn, v.connection);
      if (parsed) out.connection = parsed;
    }
  } else {
    if (v.connection !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['connection'],
        message: `not used by the ${v.format} format; set url`,
      });
    if (v.url === undefined)
      ctx.addIssue({ code: 'custom', path: ['url'], message: `required by the ${v.format} format` });
    else {
      const problem = urlProblem(v.url);
      if (problem) ctx.addIssue({ code: 'custom', path: ['url'], message: problem });
    }
  }
  const opts = (FORMAT_OPTIONS as Partial<Record<EventFormat, z.ZodType>>)[v.format] ?? noOptions;
  const parsedOptions = nested('options', opts, v.options);
  if (parsedOptions) out.options = parsedOptions;
  return out;
}

/**
 * Ports the Fetch standard blocks (https://fetch.spec.whatwg.org/#port-blocking): Node's fetch
 * refuses them before connecting, so a URL with one could never be delivered to.
 */
const FETCH_BAD_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104,
  109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515,
  526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049,
  3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/** What is wrong with a destination URL's shape (scheme, credentials), before its host is checked. */
function urlProblem(value: string): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return 'must be an absolute https URL';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must be an https URL';
  if (u.username || u.password) return 'must not carry credentials; set secret';
  if (!u.hostname) return 'must name a host';
  if (u.port && FETCH_BAD_PORTS.has(Number(u.port)))
    return `port ${u.port} is blocked by the Fetch standard (a "bad port": SMTP, IRC, X11…); use another port`;
  return undefined;
}

/** The admin API's body: `secret` is the value itself (sealed at once, never returned). */
export const subscriptionSchema = z
  .object({ ...common, secret: z.string().min(1).max(4096).optional() })
  .strict()
  .transform((v, ctx) => perFormat(v, ctx));
export type SubscriptionInput = z.output<typeof subscriptionSchema>;

/** The inventory's `subscriptions:` entry: `secretEnv` names the variable holding the secret. */
export const configSubscriptionSchema = z
  .object({ ...common, secretEnv: envVarName.optional() })
  .strict()
  .transform((v, ctx) => {
    const out = perFormat(v, ctx);
    if (SECRET_REQUIRED.has(v.format) && !v.secretEnv)
      ctx.addIssue({
        code: 'custom',
        path: ['secretEnv'],
        message: `the ${v.format} format needs a token: name the environment variable that holds it`,
      });
    return out;
  });
export type ConfigSubscription = z.output<typeof configSubscriptionSchema>;

/** Every field and option name the schemas know: the words a 422 may echo. */
export const SUBSCRIPTION_KEYS: ReadonlySet<string> = new Set([
  ...Object.keys(common),
  'secret',
  'secretEnv',
  'by',
  ...Object.keys(filtersSchema.shape),
  ...['protocol', 'host', 'port', 'from', 'to', 'starttls', 'user'],
  ...Object.values(FORMAT_OPTIONS).flatMap((s) => Object.keys(s.shape)),
]);

/** The inventory's `outbound:` section. */
export const outboundConfigSchema = z
  .object({
    /** Host names (`hooks.internal`, `*.corp.example`) or CIDRs (`10.2.0.0/16`) a destination may use. */
    allowHosts: z
      .array(
        z
          .string()
          .max(253)
          .refine(
            (e) => allowEntryProblem(e) === undefined,
            'a host name, *.domain, an IP address or a CIDR',
          ),
      )
      .max(200)
      .default([]),
    /** How long the delivery history is kept. */
    deliveryRetention: duration.default('30d'),
  })
  .strict();
export type OutboundConfig = z.output<typeof outboundConfigSchema>;

export const deliveryRetentionMs = (o: Pick<OutboundConfig, 'deliveryRetention'>) =>
  durationMs(o.deliveryRetention);

// ---------------------------------------------------------------------------------------------
// Destinations: https, and never a loopback, private or link-local address unless allow-listed.

const V4_PRIVATE = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const;
const V6_PRIVATE = [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const;

const privateRanges = new BlockList();
for (const [a, p] of V4_PRIVATE) privateRanges.addSubnet(a, p, 'ipv4');
for (const [a, p] of V6_PRIVATE) privateRanges.addSubnet(a, p, 'ipv6');

/** The 16 bytes of an IPv6 address (isIP(a) === 6). */
function v6Bytes(a: string): number[] {
  let s = a.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const [b0, b1, b2, b3] = v4[1]!.split('.').map(Number) as [number, number, number, number];
    s = `${s.slice(0, -v4[1]!.length)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.flatMap((g) => {
    const n = parseInt(g || '0', 16);
    return [n >> 8, n & 0xff];
  });
}

/** The IPv4 address an IPv6 one carries (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96). */
function embeddedV4(a: string): string | undefined {
  const b = v6Bytes(a);
  const zeros = (n: number) => b.slice(0, n).every((x) => x === 0);
  const mapped = zeros(10) && b[10] === 0xff && b[11] === 0xff;
  const compatible = zeros(12) && b.slice(12).some((x) => x !== 0) && !(b[15] === 1 && zeros(15));
  const nat64 =
    b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b.slice(4, 12).every((x) => x === 0);
  return mapped || compatible || nat64 ? b.slice(12).join('.') : undefined;
}

/** Whether an IP address is loopback, private, link-local, unspecified, multicast or reserved. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return privateRanges.check(address, 'ipv4');
  if (family === 6) {
    const v4 = embeddedV4(address);
    return v4 !== undefined ? privateRanges.check(v4, 'ipv4') : privateRanges.check(address, 'ipv6');
  }
  return false;
}

/** Names that always mean this machine, whatever DNS says. */
const LOCAL_NAME = /^(localhost|localhost\.localdomain|ip6-localhost|ip6-loopback)$|\.localhost$/;

function allowEntryProblem(entry: string): string | undefined {
  const e = entry.trim().toLowerCase();
  const cidr = /^([^/]+)\/(\d{1,3})$/.exec(e);
  if (cidr) {
    const family = isIP(cidr[1]!);
    const max = family === 4 ? 32 : family === 6 ? 128 : 0;
    return family && Number(cidr[2]) <= max ? undefined : 'not a CIDR';
  }
  if (isIP(e)) return undefined;
  return HOST_NAME.test(e.replace(/^\*\./, '')) ? undefined : 'not a host name';
}

/** Which destinations may be http, loopback, private or link-local. */
export interface AllowList {
  readonly entries: readonly string[];
  /** The host name (or IP literal) is listed. */
  permitsName(host: string): boolean;
  /** The address is listed or inside a listed CIDR. */
  permitsAddress(address: string): boolean;
}

/**
 * The allow-list entries of `outbound.allowHosts` (the inventory file) and OUTBOUND_ALLOW_HOSTS (a
 * comma-separated list), checked: an error names the entry.
 */
export function allowHostsOf(configured: readonly string[], envValue: string | undefined): string[] {
  const fromEnv = (envValue ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  fromEnv.forEach((e, i) => {
    const problem = allowEntryProblem(e);
    if (problem)
      throw new Error(
        `OUTBOUND_ALLOW_HOSTS[${i}]: ${problem} (a host name, *.domain, an IP address or a CIDR)`,
      );
  });
  return [...configured, ...fromEnv];
}

/** The allow-list of checked entries (allowHostsOf). */
export function createAllowList(allowHosts: readonly string[]): AllowList {
  const entries = allowHosts.map((e) => e.trim().toLowerCase());
  entries.forEach((e, i) => {
    const problem = allowEntryProblem(e);
    if (problem) throw new Error(`allow-list entry ${i}: ${problem}`);
  });
  const names = new Set<string>();
  const suffixes: string[] = [];
  const v4 = new BlockList();
  const v6 = new BlockList();
  for (const e of entries) {
    const cidr = /^([^/]+)\/(\d{1,3})$/.exec(e);
    const ip = cidr?.[1] ?? e;
    const family = isIP(ip);
    if (family === 4) v4.addSubnet(ip, cidr ? Number(cidr[2]) : 32, 'ipv4');
    else if (family === 6) v6.addSubnet(ip, cidr ? Number(cidr[2]) : 128, 'ipv6');
    else if (e.startsWith('*.')) suffixes.push(e.slice(1));
    else names.add(e.replace(/\.$/, ''));
  }
  const permitsAddress = (address: string) => {
    const family = isIP(address);
    if (family === 4) return v4.check(address, 'ipv4');
    if (family === 6) {
      const embedded = embeddedV4(address);
      return v6.check(address, 'ipv6') || (embedded !== undefined && v4.check(embedded, 'ipv4'));
    }
    return false;
  };
  return {
    entries,
    permitsName: (host) => {
      const h = host.toLowerCase().replace(/\.$/, '');
      return names.has(h) || suffixes.some((s) => h.endsWith(s)) || permitsAddress(h);
    },
    permitsAddress,
  };
}

/** Resolves a host name to every address it has (node:dns lookup, all: true). */
export type HostLookup = (host: string) => Promise<string[]>;

const LOOKUP_TIMEOUT_MS = 5000;

export const dnsLookup: HostLookup = async (host) => {
  let timer: NodeJS.Timeout | undefined;
  try {
    const found = await Promise.race([
      lookup(host, { all: true, verbatim: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('DNS lookup timed out')), LOOKUP_TIMEOUT_MS);
      }),
    ]);
    return found.map((a) => a.address);
  } finally {
    clearTimeout(timer);
  }
};

export interface DestinationPolicy {
  allow: AllowList;
  lookup?: HostLookup;
  /** A host name that does not resolve is refused (API) or let through to the delivery-time check (startup). */
  unresolvable?: 'refuse' | 'accept';
}

/** The host as URL parsing canonicalises it (0x7f.1 is 127.0.0.1), without brackets or a trailing dot. */
function canonicalHost(host: string): string {
  const bracketed = isIP(host) === 6 ? `[${host}]` : host;
  let h = host;
  try {
    h = new URL(`http://${bracketed}/`).hostname;
  } catch {
    // not a URL host: checked as given
  }
  return h
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
}

/** Problems of one destination host; `scheme` is the URL's, when it has one. */
export async function checkHost(
  field: string,
  rawHost: string,
  scheme: 'http' | 'https' | undefined,
  policy: DestinationPolicy,
): Promise<Array<{ field: string; message: string }>> {
  const host = canonicalHost(rawHost);
  const allow = policy.allow;
  const hint = 'add it to outbound.allowHosts in the inventory file or OUTBOUND_ALLOW_HOSTS to allow it';
  const bad = (message: string) => [{ field, message }];
  if (allow.permitsName(host)) return [];
  if (scheme === 'http') return bad(`must be https; http only for hosts in the allow-list (${hint})`);
  if (isIP(host))
    return isPrivateAddress(host) ? bad(`is a loopback, private or link-local address; ${hint}`) : [];
  if (LOCAL_NAME.test(host)) return bad(`names this machine (loopback); ${hint}`);
  let addresses: string[];
  try {
    addresses = await (policy.lookup ?? dnsLookup)(host);
  } catch (err) {
    if (policy.unresolvable === 'accept') return [];
    const code = (err as { code?: string }).code;
    return bad(`the host name does not resolve${code ? ` (${code})` : ''}`);
  }
  if (addresses.length === 0 && policy.unresolvable !== 'accept') return bad('the host name has no address');
  const refused = addresses.filter((a) => isPrivateAddress(a) && !allow.permitsAddress(a));
  if (refused.length > 0)
    return bad(
      `the host name resolves to ${refused.join(', ')}, a loopback, private or link-local address; ${hint}`,
    );
  return [];
}

/** Every destination problem of a validated subscription: its URL's host or its connection's host. */
export async function checkDestination(
  s: Pick<SubscriptionSpec, 'url' | 'connection'>,
  policy: DestinationPolicy,
  prefix = '',
): Promise<Array<{ field: string; message: string }>> {
  if (s.url !== undefined) {
    const u = new URL(s.url);
    return checkHost(`${prefix}url`, u.hostname, u.protocol === 'http:' ? 'http' : 'https', policy);
  }
  const host = s.connection?.host;
  if (typeof host === 'string') return checkHost(`${prefix}connection.host`, host, undefined, policy);
  return [];
}

// ---------------------------------------------------------------------------------------------
// The view the APIs answer with.

export interface SubscriptionView {
  id: string;
  name: string;
  format: EventFormat;
  url: string | null;
  connection: Record<string, unknown> | null;
  /** Whether a secret is set; the secret itself is never returned. */
  hasSecret: boolean;
  /** Config subscriptions: the environment variable the secret comes from. */
  secretEnv: string | null;
  eventTypes: string[];
  filters: EventFilters;
  options: Record<string, unknown>;
  retryCount: number;
  timeoutMs: number;
  failureThreshold: number;
  isActive: boolean;
  routedOnly: boolean;
  consecutiveFailures: number;
  disabledReason: string | null;
  origin: 'api' | 'config';
  createdAt: string;
  updatedAt: string;
}

/**
 * Formats whose URL is itself a credential: whoever has a Slack incoming-webhook URL or a Teams
 * connector / Workflows URL can post to the channel.
 */
const URL_IS_CREDENTIAL: ReadonlySet<EventFormat> = new Set(['slack', 'teams', 'teams_adaptive']);

/**
 * A destination URL as the APIs and the admin audit show it: query values are replaced (they often
 * carry a signature or a token), and for the formats whose URL is a credential only the origin and
 * the first path segment are kept (`https://hooks.slack.com/services/***`). Like the secret, the
 * full URL is write-only.
 */
export function redactedUrl(format: EventFormat, url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '***';
  }
  const first = u.pathname.split('/').find(Boolean);
  const path = URL_IS_CREDENTIAL.has(format) ? (first ? `/${first}/***` : '/***') : u.pathname;
  const keys = [...new Set(u.searchParams.keys())];
  const query = keys.length > 0 ? `?${keys.map((k) => `${encodeURIComponent(k)}=***`).join('&')}` : '';
  return `${u.origin}${path}${query}`;
}

/** The view as answered and audited: the URL redacted (redactedUrl). */
export function publicView(v: SubscriptionView): SubscriptionView {
  return v.url === null ? v : { ...v, url: redactedUrl(v.format, v.url) };
}

/** The fields a request may send again (PATCH merges into this; no secret, no server-kept state). */
export function editableOf(v: SubscriptionView): Record<string, unknown> {
  return {
    name: v.name,
    format: v.format,
    ...(v.url !== null ? { url: v.url } : {}),
    ...(v.connection !== null ? { connection: v.connection } : {}),
    eventTypes: v.eventTypes,
    filters: v.filters,
    options: v.options,
    retryCount: v.retryCount,
    timeoutMs: v.timeoutMs,
    failureThreshold: v.failureThreshold,
    isActive: v.isActive,
    routedOnly: v.routedOnly,
  };
}

/** RFC 7396 JSON merge patch: objects merge, null removes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

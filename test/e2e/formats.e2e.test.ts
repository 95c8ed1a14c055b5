/**
 * Every outbound format end to end: a signed detection reaches the real ingress, the real worker
 * contains one leaked PostgreSQL password and escalates another (a superuser the admin may not
 * alter) on the real Temporal server, the runs' events are queued in PostgreSQL, and each
 * subscription's delivery run sends them to its destination:
 *
 * - json: a receiver that verifies X-Webhook-Signature and Standard Webhooks (401 otherwise);
 * - slack: an incoming-webhook receiver (Slack's `ok`, 400 `no_text`/`invalid_payload`);
 * - teams (MessageCard, a connector's `1`) and teams_adaptive (the Adaptive Card message a Teams
 *   Workflows webhook takes, answered 202 as Workflows does);
 * - cef: an HTTP collector taking one CEF line per request;
 * - splunk_hec: a collector answering as HEC does (`Authorization: Splunk <token>`, 401/403, codes);
 * - syslog over TCP and TLS to a real rsyslog, which parses each RFC 5424 message;
 * - email over STARTTLS with a login to a real SMTP server (aiosmtpd);
 * - jira to the Jira Cloud wire fake (one issue per run, a comment per later event, Done when
 *   contained).
 *
 * Subscriptions are stored as the admin API would save them (the API's schema, the secret sealed
 * with the server key) and only match this file's own owning system, so other test files sharing
 * the database never queue events for them. A detection's file name is hostile on purpose (Markdown,
 * Slack control sequences, CEF separators): each format must carry it as text.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventTypeMatches, type EventFormat, type KillSwitchEvent } from '../../contracts/events';
import type { KillSwitchResult } from '../../contracts/run';
import { subscriptionSchema } from '../../lib/subscriptions';
import { startRsyslog, type ReceivedSyslog, type RsyslogServer } from '../../tools/rsyslog';
import { startSmtp, type ReceivedMail, type SmtpServer } from '../../tools/smtp';
import {
  startRecorder,
  type RecordedRequest,
  type RecordingServer,
  type Reply,
} from '../fakes/http-recorder';
import { startJiraFake, type JiraFake } from '../fakes/jira';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';

const SYSTEM = 'formats-db';
const PREFIX = 'fmx';
const hex = (n: number) => randomBytes(n).toString('hex');

/** Where the scanner found the leak: a file name every format must carry as text, never markup. */
const REPOSITORY = 'acme/formats-e2e';
const FILE = 'deploy/[x](https://evil.example)|a=b\\c <!channel> & *bold*.env';
const LINE = 7;
const LOCATION = `${REPOSITORY} ${FILE}:${LINE}`;
/** A CEF Device Vendor with the two characters the header escapes. */
const CEF_VENDOR = 'Acme|Sec\\Ops';

const JSON_SECRET = `whsec-formats-${hex(16)}`;
const HEC_TOKEN = randomUUID();
const JIRA_EMAIL = 'killswitch-bot@example.org';
const JIRA_TOKEN = `jira-token-${hex(16)}`;
const SMTP_USER = 'killswitch';
const SMTP_PASSWORD = `smtp-pw-${hex(16)}`;
const MAIL_FROM = 'killswitch@example.org';
const MAIL_TO = 'secops@example.org';
const SD_ID = 'killswitch@32473';

// ---------------------------------------------------------------------------------------------
// Destinations at the wire.

interface Hook {
  name: string;
  server: RecordingServer;
  /** Why the receiver refused a request (what the vendor would have answered with an error). */
  refusals: string[];
}

class Refuse extends Error {
  constructor(
    readonly reply: Reply,
    why: string,
  ) {
    super(why);
  }
}

/** A loopback receiver that answers `ok` to what `verify` accepts and refuses the rest. */
async function startHook(name: string, ok: Reply, verify: (r: RecordedRequest) => void): Promise<Hook> {
  const refusals: string[] = [];
  const server = await startRecorder((r) => {
    try {
      verify(r);
      return ok;
    } catch (err) {
      refusals.push(`${name}: ${(err as Error).message}`);
      return err instanceof Refuse ? err.reply : { status: 400, body: 'invalid_payload' };
    }
  });
  return { name, server, refusals };
}

const text = (status: number, body: string): Reply => ({
  status,
  headers: { 'content-type': 'text/plain' },
  body,
});

/** The envelope, signed with both schemes (X-Webhook-Signature, Standard Webhooks). */
function verifyJson(r: RecordedRequest): void {
  if (r.headers['content-type'] !== 'application/json') throw new Refuse(text(415, ''), 'not JSON');
  const hmac = `sha256=${createHmac('sha256', JSON_SECRET).update(r.body).digest('hex')}`;
  if (r.headers['x-webhook-signature'] !== hmac)
    throw new Refuse(text(401, 'bad signature'), 'X-Webhook-Signature does not verify');
  try {
    new Webhook(Buffer.from(JSON_SECRET), { format: 'raw' }).verify(
      r.body,
      r.headers as Record<string, string>,
    );
  } catch (err) {
    throw new Refuse(text(401, 'bad signature'), `Standard Webhooks: ${(err as Error).message}`);
  }
}

/** What a Slack incoming webhook refuses: not JSON (invalid_payload), no text (no_text), bad colours. */
function verifySlack(r: RecordedRequest): void {
  let m: any;
  try {
    m = JSON.parse(r.body);
  } catch {
    throw new Refuse(text(400, 'invalid_payload'), 'not JSON');
  }
  if (typeof m?.text !== 'string' || m.text === '') throw new Refuse(text(400, 'no_text'), 'no text');
  if (
    !Array.isArray(m.attachments) ||
    m.attachments.some(
      (a: any) => typeof a?.color !== 'string' || !/^(good|warning|danger|#[0-9A-Fa-f]{6})$/.test(a.color),
    )
  )
    throw new Refuse(text(400, 'invalid_attachments'), 'attachments without a valid color');
}

/** A connector MessageCard: @type, @context and a summary or text (Teams: "Summary or Text is required."). */
function verifyMessageCard(r: RecordedRequest): void {
  const c = JSON.parse(r.body);
  if (c['@type'] !== 'MessageCard' || c['@context'] !== 'https://schema.org/extensions')
    throw new Refuse(text(400, 'Bad payload'), 'not a MessageCard');
  if (!c.summary && !c.text) throw new Refuse(text(400, 'Summary or Text is required.'), 'no summary');
  if (c.themeColor !== undefined && !/^[0-9A-Fa-f]{6}$/.test(c.themeColor))
    throw new Refuse(text(400, 'Bad payload'), 'themeColor is not hex');
}

/** What a Teams Workflows webhook takes: a message with one Adaptive Card of known elements. */
function verifyAdaptiveMessage(r: RecordedRequest): void {
  const m = JSON.parse(r.body);
  const a = m?.attachments;
  if (m?.type !== 'message' || !Array.isArray(a) || a.length !== 1)
    throw new Refuse(text(400, 'InvalidRequestContent'), 'not a message with one attachment');
  const card = a[0];
  if (card.contentType !== 'application/vnd.microsoft.card.adaptive')
    throw new Refuse(text(400, 'InvalidRequestContent'), `contentType ${card.contentType}`);
  const c = card.content;
  if (c?.type !== 'AdaptiveCard' || !/^1\.[0-5]$/.test(String(c.version)))
    throw new Refuse(text(400, 'InvalidRequestContent'), 'not an Adaptive Card up to 1.5');
  if (!Array.isArray(c.body) || c.body.length === 0)
    throw new Refuse(text(400, 'InvalidRequestContent'), 'empty body');
  for (const el of c.body) {
    const ok =
      (el.type === 'TextBlock' && typeof el.text === 'string' && el.text !== '') ||
      (el.type === 'FactSet' &&
        Array.isArray(el.facts) &&
        el.facts.every((f: any) => typeof f.title === 'string' && typeof f.value === 'string'));
    if (!ok) throw new Refuse(text(400, 'InvalidRequestContent'), `bad element ${JSON.stringify(el)}`);
  }
}

/** One CEF line per request, as text. */
function verifyCef(r: RecordedRequest): void {
  if (!String(r.headers['content-type']).startsWith('text/plain'))
    throw new Refuse(text(415, ''), 'not text/plain');
  if (/[\r\n]/.test(r.body)) throw new Refuse(text(400, ''), 'more than one line');
  parseCef(r.body);
}

/** HEC's answers: 401 code 2/3 without a (Splunk) token, 403 code 4 for a wrong one, 400 code 6/12. */
function verifyHec(r: RecordedRequest): void {
  const hec = (status: number, code: number, t: string) => new Refuse({ status, body: { text: t, code } }, t);
  if (r.path !== '/services/collector/event') throw hec(404, 404, 'not the event endpoint');
  const auth = r.headers.authorization;
  if (!auth) throw hec(401, 2, 'Token is required');
  if (!auth.startsWith('Splunk ')) throw hec(401, 3, 'Invalid authorization');
  if (auth !== `Splunk ${HEC_TOKEN}`) throw hec(403, 4, 'Invalid token');
  let e: any;
  try {
    e = JSON.parse(r.body);
  } catch {
    throw hec(400, 6, 'Invalid data format');
  }
  if (e?.event === undefined || e.event === null) throw hec(400, 12, 'Event field is required');
  if (e.time !== undefined && typeof e.time !== 'number') throw hec(400, 6, 'Invalid data format');
}

/** A CEF line: the 7 header fields (pipes and backslashes unescaped) and the extension's values. */
function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  if (!line.startsWith('CEF:')) throw new Error('not a CEF line');
  const header: string[] = [];
  let cur = '';
  let i = 4;
  while (header.length < 7) {
    const c = line[i];
    if (c === undefined) throw new Error('truncated CEF header');
    if (c === '\\') {
      const n = line[i + 1];
      if (n !== '\\' && n !== '|') throw new Error(`bad header escape at ${i}`);
      cur += n;
      i += 2;
    } else if (c === '|') {
      header.push(cur);
      cur = '';
      i += 1;
    } else {
      cur += c;
      i += 1;
    }
  }
  const rest = line.slice(i);
  // A key starts the extension or follows a space, and ends at an unescaped '='.
  const keys = [...rest.matchAll(/(?:^| )([A-Za-z0-9_]+)=/g)];
  const ext: Record<string, string> = {};
  const unescape: Record<string, string> = { '\\': '\\', '=': '=', n: '\n', r: '\r' };
  keys.forEach((m, k) => {
    const start = m.index + m[0].length;
    const end = k + 1 < keys.length ? keys[k + 1]!.index : rest.length;
    ext[m[1]!] = rest.slice(start, end).replace(/\\(.)/g, (_, e: string) => {
      if (!(e in unescape)) throw new Error(`bad extension escape \\${e}`);
      return unescape[e]!;
    });
  });
  return { header, ext };
}

const mdUnescape = (s: string) => s.replace(/\\([\\`*_~[\]#<>])/g, '$1');
const slackUnescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const rgb = (color: string) => {
  const h = color.replace(/^#/, '');
  return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16)) as [number, number, number];
};
const isGreen = (color: string) => {
  const [r, g, b] = rgb(color);
  return g > r && g > b;
};
const isRed = (color: string) => {
  const [r, g, b] = rgb(color);
  return r > g && r > b;
};
const header = (m: ReceivedMail, name: string) => m.headers[name.toLowerCase()]?.[0];

// ---------------------------------------------------------------------------------------------

interface Spec {
  format: EventFormat;
  url?: string;
  connection?: Record<string, unknown>;
  secret?: string;
  eventTypes: string[];
  options?: Record<string, unknown>;
  /** The HTTP status each delivery is recorded with (null: not HTTP). */
  status: (code: number | null) => boolean;
}

interface Sub extends Spec {
  key: string;
  id: string;
  /** The events of this file's runs the subscription wants. */
  expected: KillSwitchEvent[];
}

interface Run {
  workflowId: string;
  runId: string;
  result: KillSwitchResult;
}

let h: Harness;
let rsyslog: RsyslogServer;
let smtp: SmtpServer;
let jira: JiraFake;
const hooks: Record<string, Hook> = {};
const subs: Sub[] = [];
const planted: string[] = [];
let contained: Run;
let escalated: Run;
/** Every event of both runs, by id (the envelopes as queued). */
const events = new Map<string, KillSwitchEvent>();

const sub = (key: string) => subs.find((s) => s.key === key)!;
const runOf = (e: KillSwitchEvent) => (e.run?.workflowId === contained.workflowId ? contained : escalated);
const ofType = (list: KillSwitchEvent[], type: string, run: Run) =>
  list.find((e) => e.type === type && e.run?.workflowId === run.workflowId)!;
const bySummary = (summary: string) => [...events.values()].find((e) => e.summary === summary);

async function subscribe(key: string, spec: Spec): Promise<void> {
  const id = `sub_${rand()}${rand()}`;
  // Exactly what the admin API saves: its schema fills the defaults of the connection and options.
  const saved = subscriptionSchema.parse({
    name: `fmt-${key.replace(/_/g, '-')}-${rand()}`,
    format: spec.format,
    ...(spec.url ? { url: spec.url } : {}),
    ...(spec.connection ? { connection: spec.connection } : {}),
    eventTypes: spec.eventTypes,
    filters: { owningSystems: [SYSTEM] },
    options: spec.options ?? {},
  });
  await h.db.query(
    `INSERT INTO killswitch_subscriptions
       (id, name, format, url, connection, secret_sealed, event_types, filters, options,
        retry_count, timeout_ms, failure_threshold, is_active, routed_only)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12, $13, $14)`,
    [
      id,
      saved.name,
      saved.format,
      saved.url ?? null,
      saved.connection ? JSON.stringify(saved.connection) : null,
      spec.secret ? h.keys.encrypt(spec.secret, `subscription:${id}`) : null,
      saved.eventTypes,
      JSON.stringify(saved.filters),
      JSON.stringify(saved.options),
      saved.retryCount,
      saved.timeoutMs,
      saved.failureThreshold,
      saved.isActive,
      saved.routedOnly,
    ],
  );
  subs.push({ ...spec, key, id, expected: [] });
}

async function leak(superuser: boolean): Promise<Run> {
  const { role, password } = await h.owned.createRole({ prefix: PREFIX, superuser });
  planted.push(password);
  const res = await h.post({
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
    severity: 'high',
    scanner: 'gitleaks',
    location: { repository: REPOSITORY, file: FILE, line: LINE },
  });
  expect(res.status).toBe(202);
  const workflowId = res.json.workflowId as string;
  return {
    workflowId,
    runId: res.json.runId as string,
    result: await h.client.workflow.getHandle(workflowId).result(),
  };
}

interface DeliveryRow {
  subscription_id: string;
  event_id: string;
  event_type: string;
  attempt: number;
  status_code: number | null;
  success: boolean;
  error: string | null;
}

const deliveryRows = async () =>
  (
    await h.db.query<DeliveryRow>(
      `SELECT subscription_id, event_id, event_type, attempt, status_code, success, error
         FROM killswitch_event_deliveries WHERE subscription_id = ANY($1) ORDER BY id`,
      [subs.map((s) => s.id)],
    )
  ).rows;

const refusalsText = () => {
  const all = [
    ...Object.values(hooks).flatMap((x) => x.refusals),
    ...jira.refusals.map((r) => JSON.stringify(r)),
  ];
  return all.length ? `\nreceivers refused:\n  ${all.join('\n  ')}` : '';
};

/** Until every subscription has delivered every event it wants; fails at the first failed attempt. */
async function waitForDeliveries(ms = 45_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const rows = await deliveryRows();
    const failed = rows.filter((r) => !r.success);
    if (failed.length > 0) {
      const lines = failed.map((r) => {
        const s = subs.find((x) => x.id === r.subscription_id)!;
        return `${s.key} (${s.format}): ${r.event_type} attempt ${r.attempt} failed (HTTP ${r.status_code ?? '-'}): ${r.error}`;
      });
      throw new Error(`a delivery failed:\n  ${lines.join('\n  ')}${refusalsText()}`);
    }
    const missing = subs.flatMap((s) => {
      const done = new Set(rows.filter((r) => r.subscription_id === s.id).map((r) => r.event_id));
      const left = s.expected.filter((e) => !done.has(e.id));
      return left.length ? [`${s.key} (${s.format}): ${left.map((e) => e.type).join(', ')}`] : [];
    });
    if (missing.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(`not delivered within ${ms} ms:\n  ${missing.join('\n  ')}${refusalsText()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function until<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  const hook = (name: string, ok: Reply, verify: (r: RecordedRequest) => void) =>
    startHook(name, ok, verify).then((x) => (hooks[name] = x));
  // Each one kept as it comes up and all of them settled before going on, so afterAll stops
  // whatever started even when another did not.
  const started = await Promise.allSettled([
    startHarness({
      // Every destination listens on loopback, which deliveries refuse unless the allow-list names it.
      env: { OUTBOUND_ALLOW_HOSTS: '127.0.0.1' },
      config: {
        systems: [
          {
            name: SYSTEM,
            kind: 'postgres',
            adminUrlEnv: 'OWNED_DB_ADMIN_URL',
            roles: [`${PREFIX}_*`],
            hosts: ['127.0.0.1', 'db.internal'],
          },
        ],
      },
    }).then((x) => (h = x)),
    startRsyslog({ logFile: 'test-results/rsyslog-formats-e2e.log' }).then((x) => (rsyslog = x)),
    startSmtp({
      starttls: true,
      auth: { user: SMTP_USER, password: SMTP_PASSWORD },
      logFile: 'test-results/smtp-formats-e2e.log',
    }).then((x) => (smtp = x)),
    startJiraFake({ email: JIRA_EMAIL, token: JIRA_TOKEN }).then((x) => (jira = x)),
    hook('json', text(200, 'ok'), verifyJson),
    hook('slack', text(200, 'ok'), verifySlack),
    hook('teams', text(200, '1'), verifyMessageCard),
    hook('teams_adaptive', { status: 202 }, verifyAdaptiveMessage),
    hook('cef', text(200, ''), verifyCef),
    hook('splunk_hec', { status: 200, body: { text: 'Success', code: 0 } }, verifyHec),
  ]);
  for (const r of started) if (r.status === 'rejected') throw r.reason;

  const http = (code: number) => (c: number | null) => c === code;
  await subscribe('json', {
    format: 'json',
    url: `${hooks.json!.server.url}/hooks/killswitch`,
    secret: JSON_SECRET,
    eventTypes: ['*'],
    status: http(200),
  });
  await subscribe('slack', {
    format: 'slack',
    url: `${hooks.slack!.server.url}/services/T0000/B0000/XXXXXXXX`,
    eventTypes: ['run.*'],
    status: http(200),
  });
  await subscribe('teams', {
    format: 'teams',
    url: `${hooks.teams!.server.url}/webhookb2/connector`,
    eventTypes: ['run.*'],
    status: http(200),
  });
  await subscribe('teams_adaptive', {
    format: 'teams_adaptive',
    url: `${hooks.teams_adaptive!.server.url}/workflows/abc/triggers/manual/paths/invoke`,
    eventTypes: ['run.contained', 'run.escalated'],
    status: http(202),
  });
  await subscribe('cef', {
    format: 'cef',
    url: `${hooks.cef!.server.url}/cef`,
    eventTypes: ['*'],
    // A hostile vendor (escaping); the product is the schema's default, the documented one.
    options: { vendor: CEF_VENDOR },
    status: http(200),
  });
  await subscribe('splunk_hec', {
    format: 'splunk_hec',
    url: `${hooks.splunk_hec!.server.url}/services/collector/event`,
    secret: HEC_TOKEN,
    eventTypes: ['*'],
    options: { index: 'security' },
    status: http(200),
  });
  await subscribe('syslog_tcp', {
    format: 'syslog',
    connection: { protocol: 'tcp', host: rsyslog.host, port: rsyslog.tcpPort },
    eventTypes: ['*'],
    status: (c) => c === null,
  });
  await subscribe('syslog_tls', {
    format: 'syslog',
    connection: { protocol: 'tls', host: rsyslog.host, port: rsyslog.tlsPort, ca: rsyslog.caPem },
    eventTypes: ['run.*'],
    options: { facility: 'local3', appName: 'ks-e2e' },
    status: (c) => c === null,
  });
  await subscribe('email', {
    format: 'email',
    connection: {
      host: smtp.host,
      port: smtp.port,
      ca: smtp.caPem,
      user: SMTP_USER,
      starttls: 'required',
      from: MAIL_FROM,
      to: [MAIL_TO],
    },
    secret: SMTP_PASSWORD,
    eventTypes: ['*'],
    status: (c) => c === null,
  });
  await subscribe('jira', {
    format: 'jira',
    url: jira.url,
    secret: JIRA_TOKEN,
    eventTypes: ['*'],
    options: { project: 'SEC', email: JIRA_EMAIL },
    // The last request of the delivery: 201 (issue or comment created) or 204 (transitioned).
    status: (c) => c === 201 || c === 204,
  });

  [contained, escalated] = await Promise.all([leak(false), leak(true)]);

  // The runs' events as queued (every one of them: the json subscription wants all).
  const rows = await h.db.query<{ envelope: KillSwitchEvent }>(
    'SELECT envelope FROM killswitch_events WHERE workflow_id = ANY($1) ORDER BY occurred_at, id',
    [[contained.workflowId, escalated.workflowId]],
  );
  for (const r of rows.rows) events.set(r.envelope.id, r.envelope);
  for (const s of subs)
    s.expected = [...events.values()].filter((e) => s.eventTypes.some((p) => eventTypeMatches(p, e.type)));

  await waitForDeliveries();
});

afterAll(async () => {
  const ids = subs.map((s) => s.id);
  if (h && ids.length) {
    await h.db.query('DELETE FROM killswitch_subscriptions WHERE id = ANY($1)', [ids]);
    await h.db.query('DELETE FROM killswitch_event_deliveries WHERE subscription_id = ANY($1)', [ids]);
    // The delivery runs would otherwise idle for a minute on this file's task queue.
    await Promise.all(
      ids.map((id) =>
        h.client.workflow
          .getHandle(`deliver-${id}`)
          .terminate('test finished')
          .catch(() => undefined),
      ),
    );
  }
  await Promise.all([
    ...Object.values(hooks).map((x) => x.server.close()),
    jira?.close(),
    rsyslog?.stop(),
    smtp?.stop(),
  ]);
  await h?.close();
});

describe('every outbound format, end to end', () => {
  it('the two runs ended contained and escalated, and every subscription wants some of their events', () => {
    expect(contained.result.outcome).toBe('contained');
    expect(escalated.result.outcome).toBe('escalated');
    const types = [...events.values()].map((e) => `${runOf(e) === contained ? 'C' : 'E'} ${e.type}`);
    expect(types).toEqual(
      expect.arrayContaining([
        'C detection.received',
        'C run.started',
        'C credential.revoked',
        'C run.contained',
        'E detection.received',
        'E run.escalated',
      ]),
    );
    // A summary names one event of these runs (the formats without an id are matched on it).
    expect(new Set([...events.values()].map((e) => e.summary)).size).toBe(events.size);
    for (const s of subs) {
      expect(
        s.expected.some((e) => e.type === 'run.contained'),
        s.key,
      ).toBe(true);
      expect(
        s.expected.some((e) => e.type === 'run.escalated'),
        s.key,
      ).toBe(true);
    }
  });

  it('records every delivery once, as a first-attempt success, and leaves nothing queued', async () => {
    const rows = await deliveryRows();
    for (const s of subs) {
      const mine = rows.filter((r) => r.subscription_id === s.id);
      expect(mine.map((r) => r.event_id).sort(), s.key).toEqual(s.expected.map((e) => e.id).sort());
      for (const r of mine) {
        expect(r, s.key).toMatchObject({ success: true, attempt: 1, error: null });
        expect(s.status(r.status_code), `${s.key}: status ${r.status_code}`).toBe(true);
      }
    }
    const queue = await h.db.query<{ subscription_id: string; state: string }>(
      'SELECT subscription_id, state FROM killswitch_event_queue WHERE subscription_id = ANY($1)',
      [subs.map((s) => s.id)],
    );
    expect(queue.rows.filter((r) => r.state !== 'delivered')).toEqual([]);
    expect(queue.rows).toHaveLength(subs.reduce((n, s) => n + s.expected.length, 0));
    expect(refusalsText()).toBe('');
  });

  it('json: each event once, signed (X-Webhook-Signature and Standard Webhooks), the envelope as queued', () => {
    const got = hooks.json!.server.requests;
    const bodies = got.map((r) => JSON.parse(r.body) as KillSwitchEvent);
    expect(bodies.map((e) => e.id).sort()).toEqual(
      sub('json')
        .expected.map((e) => e.id)
        .sort(),
    );
    for (const [i, r] of got.entries()) {
      const e = bodies[i]!;
      expect(r.headers['x-webhook-signature']).toBe(
        `sha256=${createHmac('sha256', JSON_SECRET).update(r.body).digest('hex')}`,
      );
      expect(
        new Webhook(Buffer.from(JSON_SECRET), { format: 'raw' }).verify(
          r.body,
          r.headers as Record<string, string>,
        ),
      ).toEqual(e);
      expect(r.headers['webhook-id']).toBe(e.id);
      expect(e).toEqual(events.get(e.id));
      expect(e.data.detection?.location.file).toBe(FILE);
    }
    expect(ofType(bodies, 'run.contained', contained).data).toMatchObject({
      outcome: 'contained',
      owner: { system: SYSTEM, kind: 'postgres' },
    });
    expect(ofType(bodies, 'run.escalated', escalated).data).toMatchObject({
      outcome: 'escalated',
      failure: { type: 'PermissionDenied' },
    });
  });

  it('slack: one incoming-webhook message per run event; contained is green, escalated red; text escaped', () => {
    const msgs = hooks.slack!.server.requests.map((r) => JSON.parse(r.body));
    const summaries = msgs.map((m) => slackUnescape(m.attachments[0].text));
    expect(summaries.sort()).toEqual(
      sub('slack')
        .expected.map((e) => e.summary)
        .sort(),
    );
    const find = (e: KillSwitchEvent) =>
      msgs.find((m) => slackUnescape(m.attachments[0].text) === e.summary)!.attachments[0];
    const green = find(ofType(sub('slack').expected, 'run.contained', contained));
    const red = find(ofType(sub('slack').expected, 'run.escalated', escalated));
    expect(isGreen(green.color), `contained colour ${green.color}`).toBe(true);
    expect(isRed(red.color), `escalated colour ${red.color}`).toBe(true);
    expect(green.title).toBe('Run contained');
    expect(green.title_link).toBe(
      events.get(ofType(sub('slack').expected, 'run.contained', contained).id)!.run!.url,
    );
    const field = (a: any, title: string) => a.fields.find((f: any) => f.title === title)?.value;
    expect(field(green, 'Workflow')).toBe(contained.workflowId);
    expect(field(green, 'Outcome')).toBe('contained');
    // Slack's control characters are entity-escaped: no <!channel> mention, no injected link.
    expect(field(green, 'Location')).toBe(
      LOCATION.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'),
    );
    expect(JSON.stringify(msgs)).not.toContain('<!channel>');
  });

  it('teams: a MessageCard per run event, coloured by level, Markdown in the values escaped, a link to the run', () => {
    const cards = hooks.teams!.server.requests.map((r) => JSON.parse(r.body));
    const summaryOf = (c: any) => mdUnescape(c.sections[0].activityTitle);
    expect(cards.map(summaryOf).sort()).toEqual(
      sub('teams')
        .expected.map((e) => e.summary)
        .sort(),
    );
    for (const c of cards) {
      const e = bySummary(summaryOf(c))!;
      expect(c['@type']).toBe('MessageCard');
      expect(c['@context']).toBe('https://schema.org/extensions');
      expect(c.summary).toBe(`${mdUnescape(c.title)}: ${e.summary}`);
      expect(mdUnescape(c.sections[0].activitySubtitle)).toBe(`Secret Kill Switch · ${e.type}`);
      const facts = Object.fromEntries(c.sections[0].facts.map((f: any) => [f.name, f.value]));
      expect(mdUnescape(facts.Workflow)).toBe(e.run!.workflowId);
      expect(mdUnescape(facts.Location)).toBe(LOCATION);
      // The file name's Markdown link is escaped: [x](…) cannot render as a link.
      expect(facts.Location).toContain('\\[x\\](https://evil.example)');
      expect(c.potentialAction).toEqual([
        { '@type': 'OpenUri', name: expect.any(String), targets: [{ os: 'default', uri: e.run!.url }] },
      ]);
    }
    const colour = (type: string, run: Run) =>
      cards.find((c) => summaryOf(c) === ofType(sub('teams').expected, type, run).summary).themeColor;
    expect(isGreen(colour('run.contained', contained))).toBe(true);
    expect(isRed(colour('run.escalated', escalated))).toBe(true);
  });

  it('teams_adaptive: the Workflows message with one Adaptive Card per outcome, title coloured, facts, open-the-run action', () => {
    const msgs = hooks.teams_adaptive!.server.requests.map((r) => JSON.parse(r.body));
    const summaryOf = (m: any) => mdUnescape(m.attachments[0].content.body[1].text);
    expect(msgs.map(summaryOf).sort()).toEqual(
      sub('teams_adaptive')
        .expected.map((e) => e.summary)
        .sort(),
    );
    for (const m of msgs) {
      const e = bySummary(summaryOf(m))!;
      expect(m).toMatchObject({
        type: 'message',
        attachments: [{ contentType: 'application/vnd.microsoft.card.adaptive', contentUrl: null }],
      });
      const card = m.attachments[0].content;
      expect(card).toMatchObject({
        type: 'AdaptiveCard',
        $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
      });
      expect(card.body[0]).toMatchObject({
        type: 'TextBlock',
        text: e.type === 'run.contained' ? 'Run contained' : 'Run escalated',
        color: e.type === 'run.contained' ? 'Good' : 'Attention',
      });
      const facts = card.body.find((b: any) => b.type === 'FactSet').facts;
      const fact = (t: string) => facts.find((f: any) => f.title === t)?.value;
      expect(mdUnescape(fact('Workflow'))).toBe(e.run!.workflowId);
      expect(fact('Outcome')).toBe(e.data.outcome);
      expect(mdUnescape(fact('Location'))).toBe(LOCATION);
      expect(card.actions).toEqual([{ type: 'Action.OpenUrl', title: expect.any(String), url: e.run!.url }]);
    }
  });

  it('cef: one CEF line per event; header and extension fields, with the documented escaping', () => {
    const reqs = hooks.cef!.server.requests;
    const severity: Record<string, string> = {
      'detection.received': '1',
      'run.started': '1',
      'credential.revoked': '3',
      'sessions.expired': '3',
      'credential.verified_dead': '3',
      'run.contained': '3',
      'run.escalated': '9',
    };
    const lines = reqs.map((r) => {
      expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
      return { raw: r.body, ...parseCef(r.body) };
    });
    expect(lines.map((l) => l.ext.externalId).sort()).toEqual(
      sub('cef')
        .expected.map((e) => e.id)
        .sort(),
    );
    for (const l of lines) {
      const e = events.get(l.ext.externalId!)!;
      expect(l.header).toEqual([
        '0',
        CEF_VENDOR,
        'Kill Switch',
        '1',
        `ks-${e.type.replace(/[._]/g, '-')}`,
        expect.any(String),
        severity[e.type] ?? expect.any(String),
      ]);
      // Header: the pipe and the backslash of the vendor escaped.
      expect(l.raw.startsWith('CEF:0|Acme\\|Sec\\\\Ops|Kill Switch|1|')).toBe(true);
      expect(l.ext).toMatchObject({
        rt: String(Date.parse(e.occurredAt)),
        cat: e.type,
        msg: e.summary,
        cs1Label: 'owningSystem',
        cs1: SYSTEM,
        cs2: 'postgres_password',
        cs3: e.data.credential!.fingerprint,
        cs4Label: 'workflowId',
        cs4: e.run!.workflowId,
        flexString1: REPOSITORY,
        filePath: FILE,
        request: e.run!.url,
      });
      // Extension: '=' and '\' escaped (the summary's role=…, the file name), '|' left as is.
      expect(l.raw).toContain(
        ' filePath=deploy/[x](https://evil.example)|a\\=b\\\\c <!channel> & *bold*.env',
      );
      expect(l.raw).toContain('role\\=fmx_');
      expect(l.raw).not.toContain('role=fmx_');
    }
    const c = lines.find((l) => l.ext.cat === 'run.contained' && l.ext.cs4 === contained.workflowId)!;
    expect(c.header.slice(4)).toEqual(['ks-run-contained', 'Run contained', '3']);
    expect(c.ext.outcome).toBe('contained');
    const x = lines.find((l) => l.ext.cat === 'run.escalated')!;
    expect(x.header.slice(4)).toEqual(['ks-run-escalated', 'Run escalated', '9']);
    expect(x.ext).toMatchObject({ outcome: 'escalated', cs4: escalated.workflowId });
    expect(x.ext.reason).toMatch(/^PermissionDenied at /);
  });

  it('splunk_hec: the HEC event envelope with the token in Authorization: Splunk', () => {
    const reqs = hooks.splunk_hec!.server.requests;
    const got = reqs.map((r) => JSON.parse(r.body));
    expect(got.map((x) => x.event.id).sort()).toEqual(
      sub('splunk_hec')
        .expected.map((e) => e.id)
        .sort(),
    );
    for (const [i, r] of reqs.entries()) {
      expect(r.headers.authorization).toBe(`Splunk ${HEC_TOKEN}`);
      expect(r.headers['content-type']).toBe('application/json');
      const e = events.get(got[i].event.id)!;
      expect(got[i]).toEqual({
        time: Date.parse(e.occurredAt) / 1000,
        source: 'secret-kill-switch',
        sourcetype: '_json',
        index: 'security',
        event: e,
      });
    }
  });

  it('syslog: rsyslog parses each event as an RFC 5424 message, over TCP and over TLS', async () => {
    const mine = (m: ReceivedSyslog) =>
      [contained.workflowId, escalated.workflowId].includes(m.sd[SD_ID]?.workflowId ?? '');
    const want = sub('syslog_tcp').expected.length + sub('syslog_tls').expected.length;
    // Delivered means written to the socket: rsyslog writes its file a moment later.
    const got = await until('rsyslog to write every message', () => {
      const all = rsyslog.messages().filter(mine);
      return all.length >= want && all;
    });
    expect(got).toHaveLength(want);
    const severity: Record<string, number> = { failure: 3, warning: 4, success: 5, info: 6 };
    const level = (type: string) =>
      type === 'run.escalated'
        ? 'failure'
        : ['credential.revoked', 'sessions.expired', 'credential.verified_dead', 'run.contained'].includes(
              type,
            )
          ? 'success'
          : 'info';
    for (const [key, input, facility, appName] of [
      ['syslog_tcp', 'tcp', 10, 'killswitch'],
      ['syslog_tls', 'tls', 19, 'ks-e2e'],
    ] as const) {
      const msgs = got.filter((m) => m.input === input);
      expect(msgs.map((m) => m.sd[SD_ID]!.id).sort(), key).toEqual(
        sub(key)
          .expected.map((e) => e.id)
          .sort(),
      );
      for (const m of msgs) {
        const e = events.get(m.sd[SD_ID]!.id!)!;
        expect(m).toMatchObject({
          pri: facility * 8 + severity[level(e.type)]!,
          version: '1',
          appName,
          procid: String(process.pid),
          msgid: e.type,
          msg: e.summary,
        });
        expect(m.sd[SD_ID]).toEqual({
          type: e.type,
          id: e.id,
          workflowId: e.run!.workflowId,
          runId: e.run!.runId,
          credentialType: 'postgres_password',
          owningSystem: SYSTEM,
          ...(e.data.outcome ? { outcome: e.data.outcome } : {}),
          ...((e.data.step ?? e.data.failure?.step) ? { step: e.data.step ?? e.data.failure?.step } : {}),
          fingerprint: e.data.credential!.fingerprint,
        });
      }
    }
  });

  it('email: text and HTML over STARTTLS with a login, one thread per run (Message-ID, In-Reply-To, References)', () => {
    const mails = smtp.messages();
    const idOf = (m: ReceivedMail) => header(m, 'X-Killswitch-Event-Id')!;
    expect(mails.map(idOf).sort()).toEqual(
      sub('email')
        .expected.map((e) => e.id)
        .sort(),
    );
    for (const m of mails) {
      const e = events.get(idOf(m))!;
      expect(m).toMatchObject({ tls: true, authenticated: true, mailFrom: MAIL_FROM, rcptTos: [MAIL_TO] });
      expect(m.parts).toEqual(['multipart/alternative', 'text/plain', 'text/html']);
      expect(header(m, 'Subject')).toBe(`[kill switch] ${e.summary}`);
      expect(header(m, 'X-Killswitch-Event-Type')).toBe(e.type);
      expect(m.text).toContain(e.summary);
      expect(m.text).toContain(`Location: ${LOCATION}`);
      expect(m.html).toContain(`<a href="${e.run!.url}">`);
      // The file name is text in the HTML: its <!channel> escaped, nothing of it markup.
      expect(m.html).toContain('&#60;!channel&#62; &#38; *bold*.env');
      expect(m.html).not.toContain('<!channel>');
      expect(m.raw).not.toContain(SMTP_PASSWORD);
    }
    const roots = [contained, escalated].map((run) => {
      const thread = mails.filter((m) => events.get(idOf(m))!.run!.workflowId === run.workflowId);
      const first = thread.find((m) => header(m, 'X-Killswitch-Event-Type') === 'detection.received')!;
      const root = header(first, 'Message-ID')!;
      expect(root).toMatch(/^<[^<>\s]+@[^<>\s]+>$/);
      expect(header(first, 'In-Reply-To')).toBeUndefined();
      const later = thread.filter((m) => m !== first);
      expect(later.length).toBeGreaterThanOrEqual(1);
      for (const m of later) {
        expect(header(m, 'In-Reply-To')).toBe(root);
        expect(header(m, 'References')).toBe(root);
      }
      expect(new Set(thread.map((m) => header(m, 'Message-ID'))).size).toBe(thread.length);
      return root;
    });
    expect(roots[0]).not.toBe(roots[1]);
  });

  it('jira: one issue per run opened by its first event, a comment per later event, Done when contained', () => {
    expect(jira.refusals).toEqual([]);
    expect(jira.issues).toHaveLength(2);
    for (const r of jira.requests)
      expect(r.headers.authorization).toBe(
        `Basic ${Buffer.from(`${JIRA_EMAIL}:${JIRA_TOKEN}`).toString('base64')}`,
      );
    for (const run of [contained, escalated]) {
      const wanted = sub('jira').expected.filter((e) => e.run!.workflowId === run.workflowId);
      const opener = ofType(wanted, 'detection.received', run);
      const issue = jira.issues.find(
        (i) => (i.properties.killswitch as { workflowId?: string })?.workflowId === run.workflowId,
      )!;
      expect(issue, run.workflowId).toBeDefined();
      expect(issue).toMatchObject({
        project: 'SEC',
        issueType: 'Task',
        summary: `[Kill switch] ${opener.summary}`,
        properties: { killswitch: { eventId: opener.id, workflowId: run.workflowId } },
      });
      expect(issue.labels).toEqual(
        expect.arrayContaining(['secret-kill-switch', expect.stringMatching(/^killswitch-run-/)]),
      );
      const commented = issue.comments.map(
        (c) => (c.properties.find((p) => p.key === 'killswitch')?.value as { eventId: string }).eventId,
      );
      expect(commented.sort()).toEqual(
        wanted
          .filter((e) => e !== opener)
          .map((e) => e.id)
          .sort(),
      );
      // The hostile file name is a text node, never a link.
      const description = JSON.stringify(issue.description);
      expect(description).toContain(JSON.stringify(`${REPOSITORY} ${FILE}:${LINE}`).slice(1, -1));
      expect(description).not.toContain('"href":"https://evil.example');
      if (run === contained) expect([issue.status, issue.transitioned]).toEqual(['Done', ['31']]);
      else expect([issue.status, issue.transitioned]).toEqual(['To Do', []]);
    }
  });

  it('no leaked value reaches any destination or the delivery history; no subscription secret leaves its header', async () => {
    const httpText = (reqs: RecordedRequest[], withHeaders: boolean) =>
      reqs.map((r) => `${r.path}\n${withHeaders ? JSON.stringify(r.headers) : ''}\n${r.body}`).join('\n');
    const history = JSON.stringify(
      (
        await h.db.query('SELECT * FROM killswitch_event_deliveries WHERE subscription_id = ANY($1)', [
          subs.map((s) => s.id),
        ])
      ).rows,
    );
    const envelopes = JSON.stringify([...events.values()]);
    const received = (withHeaders: boolean): Record<string, string> => ({
      ...Object.fromEntries(
        Object.values(hooks).map((x) => [`${x.name} receiver`, httpText(x.server.requests, withHeaders)]),
      ),
      'Jira requests': httpText(jira.requests, withHeaders),
      'Jira issues': JSON.stringify(jira.issues),
      rsyslog: JSON.stringify(rsyslog.messages()),
      'SMTP messages': JSON.stringify(smtp.messages()),
      'delivery history': history,
      'queued events': envelopes,
    });
    const workflows = [contained.workflowId, escalated.workflowId, ...subs.map((s) => `deliver-${s.id}`)];
    expectNowhere(await secretPlaces(h, workflows, received(true)), planted);
    // The subscriptions' own secrets: in the headers they authenticate with only (HEC, Jira), never
    // in a body, a message, the delivery history, a log or a workflow history.
    expectNowhere(await secretPlaces(h, workflows, received(false)), [
      JSON_SECRET,
      HEC_TOKEN,
      JIRA_TOKEN,
      SMTP_PASSWORD,
    ]);
  });
});

/**
 * The `jira` destination, on the Jira Cloud REST API v3 of the site at the subscription's `url`
 * (https://acme.atlassian.net): one issue per run, a comment per later event of the run, and a
 * transition when an event's type names one in `options.transitions`.
 *
 * - The first event of a run that reaches the subscription opens the issue (project, issue type,
 *   summary `[Kill switch] <summary>`, an Atlassian Document Format description, `options.labels`
 *   plus the run's label `killswitch-run-<hash of the workflow id>`, and the issue property
 *   `killswitch` = { workflowId, eventId }). Events with no run (delivery.test,
 *   subscription.disabled) open one issue each, labelled `killswitch-event-<hash of the event id>`.
 * - Every later event of the run comments on that issue (ADF, with the comment property
 *   `killswitch` = { eventId }); never a second issue.
 * - The run's issue is recorded in PostgreSQL (store/jira.ts) once it exists. Without a record the
 *   issue is first looked up by its label (JQL), so a crash or a lost answer between creating and
 *   recording does not open a second one. Before commenting, the issue's latest comments are read
 *   with their properties, so a retried event does not comment twice.
 * - A transition is applied by its name or the name of the status it leads to (case-insensitive),
 *   skipped when the issue is in that status already; none by that name rejects the event, naming
 *   the transitions Jira offers.
 *
 * Auth: `options.email` set: Basic `email:token` (Jira Cloud API token, the subscription's secret);
 * unset: `Bearer <token>`. The token goes in that header only, never in a URL, a body or an error.
 * Results: 2xx delivered; 408, 429, 5xx, timeouts and connection errors retried (Retry-After
 * honoured); any other status rejects the event. An error names the step and the status, and for a
 * 400 the fields Jira objected to, never a value Jira sent back.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { eventTypeMatches, type KillSwitchEvent } from '../../../contracts/events';
import type { Db } from '../../../lib/db';
import { FORMAT_OPTIONS } from '../../../lib/subscriptions';
import { jiraIssueOfRun, recordJiraIssue } from '../../../store/jira';
import { EVENT_TITLES, eventFacts, runLink, type Fact } from '../formats/facts';
import { retryAfterMs } from '../http';
import type { DeliveryResult, OutboundSubscription, Transport } from '../types';

export type JiraOptions = z.output<(typeof FORMAT_OPTIONS)['jira']>;

/** The issue and comment property the kill switch sets (and looks for on a retry). */
export const JIRA_PROPERTY = 'killswitch';
/** Jira's limit on a summary. */
const SUMMARY_MAX = 255;

// ---------------------------------------------------------------------------------------------
// Atlassian Document Format: every string from the event is a text node (plain text, never
// markup); a link is a mark with an http(s) href.

export type AdfMark = { type: 'strong' } | { type: 'em' } | { type: 'link'; attrs: { href: string } };
export interface AdfText {
  type: 'text';
  text: string;
  marks?: AdfMark[];
}
export interface AdfBlock {
  type: 'paragraph' | 'bulletList' | 'listItem';
  content: Array<AdfBlock | AdfText>;
}
export interface AdfDoc {
  type: 'doc';
  version: 1;
  content: AdfBlock[];
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** One line of plain text: control characters and line breaks become spaces. */
function plain(s: string): string {
  return s.replace(CONTROL, ' ').trim();
}

/** At most `max` UTF-16 units, never splitting a surrogate pair; `…` marks a cut. */
function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  const cut = s.slice(0, max - 1);
  return `${/[\ud800-\udbff]$/.test(cut) ? cut.slice(0, -1) : cut}…`;
}

/** A text node, or none for a blank string (ADF text nodes are never empty). */
function text(s: string, marks?: AdfMark[]): AdfText[] {
  const t = s.replace(CONTROL, ' ');
  return t.trim() ? [{ type: 'text', text: t, ...(marks ? { marks } : {}) }] : [];
}

function paragraph(...inline: AdfText[][]): AdfBlock[] {
  const content = inline.flat();
  return content.length ? [{ type: 'paragraph', content }] : [];
}

function factList(facts: Fact[]): AdfBlock[] {
  const items = facts.flatMap((f) => {
    const p = paragraph(text(`${f.label}: `, [{ type: 'strong' }]), text(f.value));
    return p.length ? [{ type: 'listItem' as const, content: p }] : [];
  });
  return items.length ? [{ type: 'bulletList', content: items }] : [];
}

const footer = (event: KillSwitchEvent) =>
  paragraph(text(`Secret Kill Switch, event ${event.type} (${event.id})`, [{ type: 'em' }]));

/** The chat formats' facts, with the credential's fingerprint after its type. */
export function jiraFacts(event: KillSwitchEvent): Fact[] {
  const facts = eventFacts(event);
  const fingerprint = event.data.credential?.fingerprint;
  if (fingerprint) {
    const at = facts.findIndex((f) => f.label === 'Credential type');
    facts.splice(at + 1, 0, { label: 'Fingerprint', value: fingerprint, short: false });
  }
  return facts;
}

/** The issue's summary: one line, at most 255 characters. */
export function jiraSummary(event: KillSwitchEvent): string {
  return truncate(`[Kill switch] ${plain(event.summary) || EVENT_TITLES[event.type]}`, SUMMARY_MAX);
}

/** The issue's description: the summary, the facts, the run's link, the event. */
export function issueDescription(event: KillSwitchEvent): AdfDoc {
  const link = runLink(event);
  return {
    type: 'doc',
    version: 1,
    content: [
      ...paragraph(text(event.summary)),
      ...factList(jiraFacts(event)),
      ...(link
        ? paragraph(text('Open the run in the Temporal UI', [{ type: 'link', attrs: { href: link } }]))
        : []),
      ...footer(event),
    ],
  };
}

/** A later event's comment: its title and summary, its facts (the workflow is the issue's). */
export function commentBody(event: KillSwitchEvent): AdfDoc {
  return {
    type: 'doc',
    version: 1,
    content: [
      ...paragraph(text(`${EVENT_TITLES[event.type]}: `, [{ type: 'strong' }]), text(event.summary)),
      ...factList(jiraFacts(event).filter((f) => f.label !== 'Workflow')),
      ...footer(event),
    ],
  };
}

const shortHash = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 16);

/** The label that finds a run's issue again (dedupe after a crash or a lost answer). */
export const runLabel = (workflowId: string) => `killswitch-run-${shortHash(workflowId)}`;
/** The label of an event with no run (its own issue). */
export const eventLabel = (eventId: string) => `killswitch-event-${shortHash(eventId)}`;

/** The transition an event type asks for: an exact key first, then the longest pattern, `*` last. */
export function transitionFor(transitions: Record<string, string>, type: string): string | undefined {
  const rank = (p: string) => (p === '*' ? 0 : p.endsWith('.*') ? p.length : Number.MAX_SAFE_INTEGER);
  return Object.entries(transitions)
    .filter(([pattern]) => eventTypeMatches(pattern, type))
    .sort(([a], [b]) => rank(b) - rank(a))[0]?.[1];
}

/** The issue-create body (POST /rest/api/3/issue). */
export function createIssueBody(event: KillSwitchEvent, opts: JiraOptions, label: string) {
  return {
    fields: {
      project: { key: opts.project },
      issuetype: { name: opts.issueType },
      summary: jiraSummary(event),
      description: issueDescription(event),
      labels: [...new Set([...opts.labels, label])],
    },
    properties: [
      {
        key: JIRA_PROPERTY,
        value: { eventId: event.id, ...(event.run ? { workflowId: event.run.workflowId } : {}) },
      },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// The wire.

/** An issue key as Jira makes them (also keeps anything else out of the URLs built from it). */
const issueKey = z.string().regex(/^[A-Z][A-Z0-9_]*-[1-9][0-9]*$/);
const numericId = z.string().regex(/^[0-9]{1,15}$/);
const createdIssue = z.object({ id: numericId, key: issueKey });
const searchResult = z.object({
  issues: z
    .array(
      z.object({
        id: numericId,
        key: issueKey,
        properties: z.record(z.string(), z.unknown()).optional(),
      }),
    )
    .default([]),
});
const issueStatus = z.object({ fields: z.object({ status: z.object({ name: z.string() }) }) });
const transitionList = z.object({
  transitions: z.array(
    z.object({ id: z.string().min(1), name: z.string(), to: z.object({ name: z.string() }).optional() }),
  ),
});
const commentPage = z.object({ comments: z.array(z.object({ id: numericId })) });
const commentsWithProperties = z.object({
  values: z.array(
    z.object({
      id: numericId,
      properties: z.array(z.object({ key: z.string(), value: z.unknown() })).optional(),
    }),
  ),
});
const createdComment = z.object({ id: numericId });

/** A delivery that stops here, with its result. */
class JiraStop extends Error {
  constructor(readonly result: DeliveryResult) {
    super(result.error);
  }
}

const HINTS: Record<number, string> = {
  401: ' (not authenticated: check options.email and the API token)',
  403: ' (forbidden: the account may not do this in the project)',
  404: ' (not found: check url, options.project and that the issue exists)',
};

interface Call {
  base: string;
  authorization: string;
  sub: OutboundSubscription;
  signal: AbortSignal;
  /** The status of the last answer. */
  status?: number;
}

/** What Jira objected to in a 400: how many messages and which fields, never their text. */
async function badRequestDetail(res: Response): Promise<string> {
  let body: { errorMessages?: unknown; errors?: unknown };
  try {
    body = JSON.parse(await res.text()) as typeof body;
  } catch {
    return '';
  }
  const messages = Array.isArray(body?.errorMessages) ? body.errorMessages.length : 0;
  const fields =
    body?.errors && typeof body.errors === 'object'
      ? Object.keys(body.errors)
          .filter((k) => /^[A-Za-z0-9_.[\]-]{1,64}$/.test(k))
          .slice(0, 8)
      : [];
  const parts = [
    ...(messages ? [`${messages} error message${messages > 1 ? 's' : ''}`] : []),
    ...(fields.length ? [`fields: ${fields.join(', ')}`] : []),
  ];
  return parts.length ? ` (Jira: ${parts.join('; ')})` : '';
}

function describeError(err: unknown, timeoutMs: number): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  if (e?.name === 'AbortError') return 'aborted';
  return `could not connect: ${e?.cause?.code ?? e?.cause?.message?.slice(0, 100) ?? e?.name ?? 'error'}`;
}

/** One request; its answer parsed by `schema`, or a JiraStop. */
async function call<T>(
  c: Call,
  step: string,
  method: 'GET' | 'POST',
  path: string,
  body: unknown,
  schema: z.ZodType<T> | undefined,
): Promise<T | undefined> {
  let res: Response;
  try {
    res = await fetch(`${c.base}${path}`, {
      method,
      headers: {
        accept: 'application/json',
        authorization: c.authorization,
        'user-agent': 'secret-kill-switch',
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      redirect: 'manual',
      signal: AbortSignal.any([c.signal, AbortSignal.timeout(c.sub.timeoutMs)]),
    });
  } catch (err) {
    throw new JiraStop({
      ok: false,
      retryable: true,
      error: `jira ${step}: ${describeError(err, c.sub.timeoutMs)}`,
    });
  }
  c.status = res.status;
  if (res.status >= 200 && res.status < 300) {
    let parsed: unknown;
    try {
      const raw = await res.text();
      if (!schema) return undefined;
      parsed = JSON.parse(raw);
    } catch (err) {
      const why =
        err instanceof SyntaxError ? 'an answer that is not JSON' : describeError(err, c.sub.timeoutMs);
      throw new JiraStop({
        ok: false,
        statusCode: res.status,
        retryable: true,
        error: `jira ${step}: ${why}`,
      });
    }
    const r = schema.safeParse(parsed);
    if (r.success) return r.data;
    // A proxy's page or an answer of another shape: kept pending (the breaker ends a lasting one).
    throw new JiraStop({
      ok: false,
      statusCode: res.status,
      retryable: true,
      error: `jira ${step}: HTTP ${res.status} with an unexpected answer`,
    });
  }
  const detail = res.status === 400 ? await badRequestDetail(res).catch(() => '') : '';
  if (res.status !== 400) await res.body?.cancel().catch(() => undefined);
  const after = retryAfterMs(res.headers.get('retry-after'));
  throw new JiraStop({
    ok: false,
    statusCode: res.status,
    retryable: res.status >= 500 || res.status === 408 || res.status === 429,
    ...(after !== undefined ? { retryAfterMs: after } : {}),
    error: `jira ${step}: HTTP ${res.status}${HINTS[res.status] ?? ''}${detail}`,
  });
}

const sameName = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/** The run's issue (or the event's own, without a run): recorded, found by its label, or created. */
async function issueOf(
  c: Call,
  db: Pick<Db, 'query'>,
  event: KillSwitchEvent,
  opts: JiraOptions,
): Promise<{ key: string; openedByThisEvent: boolean }> {
  const run = event.run;
  if (run) {
    const known = await jiraIssueOfRun(db, c.sub.id, run.workflowId);
    if (known) return { key: known.issueKey, openedByThisEvent: known.eventId === event.id };
  }
  const label = run ? runLabel(run.workflowId) : eventLabel(event.id);
  const search = await call(
    c,
    'search',
    'POST',
    '/rest/api/3/search/jql',
    {
      jql: `project = "${opts.project}" AND labels = "${label}" ORDER BY created ASC`,
      maxResults: 1,
      fields: ['summary'],
      properties: [JIRA_PROPERTY],
    },
    searchResult,
  );
  const hit = search!.issues[0];
  let issue: { key: string; id: string; eventId: string };
  if (hit) {
    const prop = hit.properties?.[JIRA_PROPERTY] as { eventId?: unknown } | undefined;
    issue = { key: hit.key, id: hit.id, eventId: typeof prop?.eventId === 'string' ? prop.eventId : '' };
  } else {
    const created = await call(
      c,
      'create issue',
      'POST',
      '/rest/api/3/issue',
      createIssueBody(event, opts, label),
      createdIssue,
    );
    issue = { key: created!.key, id: created!.id, eventId: event.id };
  }
  if (!run) return { key: issue.key, openedByThisEvent: true };
  const stored = await recordJiraIssue(db, {
    subscriptionId: c.sub.id,
    workflowId: run.workflowId,
    issueKey: issue.key,
    issueId: issue.id,
    eventId: issue.eventId,
  });
  return { key: stored.issueKey, openedByThisEvent: stored.eventId === event.id };
}

/** Comments the event on the issue unless one of the issue's latest comments is its already. */
async function commentOnce(c: Call, key: string, event: KillSwitchEvent): Promise<void> {
  const issuePath = `/rest/api/3/issue/${encodeURIComponent(key)}`;
  const page = await call(
    c,
    'read comments',
    'GET',
    `${issuePath}/comment?orderBy=-created&maxResults=100`,
    undefined,
    commentPage,
  );
  const ids = page!.comments.map((x) => Number(x.id));
  if (ids.length > 0) {
    // GET comment returns no properties; the comment list by ids does (expand=properties).
    const listed = await call(
      c,
      'read comment properties',
      'POST',
      '/rest/api/3/comment/list?expand=properties',
      { ids },
      commentsWithProperties,
    );
    const posted = listed!.values.some((x) =>
      x.properties?.some(
        (p) => p.key === JIRA_PROPERTY && (p.value as { eventId?: unknown })?.eventId === event.id,
      ),
    );
    if (posted) return;
  }
  await call(
    c,
    'comment',
    'POST',
    `${issuePath}/comment`,
    { body: commentBody(event), properties: [{ key: JIRA_PROPERTY, value: { eventId: event.id } }] },
    createdComment,
  );
}

/** Moves the issue by the transition (or to the status) named, unless it is there already. */
async function transition(c: Call, key: string, name: string): Promise<void> {
  const issuePath = `/rest/api/3/issue/${encodeURIComponent(key)}`;
  const issue = await call(c, 'read status', 'GET', `${issuePath}?fields=status`, undefined, issueStatus);
  const current = issue!.fields.status.name;
  if (sameName(current, name)) return;
  const { transitions } = (await call(
    c,
    'read transitions',
    'GET',
    `${issuePath}/transitions`,
    undefined,
    transitionList,
  ))!;
  const chosen =
    transitions.find((t) => sameName(t.name, name)) ??
    transitions.find((t) => t.to !== undefined && sameName(t.to.name, name));
  if (!chosen) {
    const available = transitions.map((t) => plain(t.to ? `${t.name} -> ${t.to.name}` : t.name)).join(', ');
    throw new JiraStop({
      ok: false,
      retryable: false,
      error: `jira transition: no transition "${name}" for ${key} in status "${plain(current)}"; available: ${available || 'none'}`,
    });
  }
  if (chosen.to && sameName(chosen.to.name, current)) return;
  await call(
    c,
    'transition',
    'POST',
    `${issuePath}/transitions`,
    { transition: { id: chosen.id } },
    undefined,
  );
}

/** The forms the token could take in a text (as is, and in a Basic credential). */
function secretForms(token: string, email: string | undefined): string[] {
  return [
    token,
    Buffer.from(token, 'utf8').toString('base64'),
    ...(email ? [Buffer.from(`${email}:${token}`, 'utf8').toString('base64')] : []),
  ];
}

function redact(text: string, forms: string[]): string {
  return forms.reduce((t, f) => (f ? t.split(f).join('[redacted]') : t), text);
}

export interface JiraTransportDeps {
  /** Where the run → issue records live (store/jira.ts). */
  db: Pick<Db, 'query'>;
}

export function jiraTransport(deps: JiraTransportDeps): Transport {
  return {
    // Look up (or search), create or comment (with its dedupe read), status, transitions, transition.
    requestsPerDelivery: 6,
    async deliver(
      event: KillSwitchEvent,
      sub: OutboundSubscription,
      signal: AbortSignal,
    ): Promise<DeliveryResult> {
      const parsed = FORMAT_OPTIONS.jira.safeParse(sub.options ?? {});
      if (!parsed.success) {
        const why = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'} ${i.message}`).join('; ');
        return { ok: false, retryable: false, error: `invalid jira options: ${why}`.slice(0, 300) };
      }
      const opts = parsed.data;
      if (!sub.secret)
        return { ok: false, retryable: false, error: 'jira: the subscription has no API token (secret)' };
      let base: string;
      try {
        const u = new URL(sub.url ?? '');
        base = `${u.origin}${u.pathname}`.replace(/\/+$/, '');
      } catch {
        return { ok: false, retryable: false, error: 'jira: the subscription has no valid url' };
      }
      const forms = secretForms(sub.secret, opts.email);
      const c: Call = {
        base,
        authorization: opts.email
          ? `Basic ${Buffer.from(`${opts.email}:${sub.secret}`, 'utf8').toString('base64')}`
          : `Bearer ${sub.secret}`,
        sub,
        signal,
      };
      try {
        const issue = await issueOf(c, deps.db, event, opts);
        if (!issue.openedByThisEvent) await commentOnce(c, issue.key, event);
        const name = event.run ? transitionFor(opts.transitions, event.type) : undefined;
        if (name) await transition(c, issue.key, name);
        return { ok: true, retryable: false, ...(c.status !== undefined ? { statusCode: c.status } : {}) };
      } catch (err) {
        const result: DeliveryResult =
          err instanceof JiraStop
            ? err.result
            : // The database (the run's record) failed: the event stays pending.
              { ok: false, retryable: true, error: `jira: ${(err as Error)?.message ?? 'error'}` };
        return { ...result, error: redact(result.error ?? 'failed', forms).slice(0, 300) };
      }
    },
  };
}

#!/usr/bin/env -S npx --no-install tsx
/**
 * `killswitch`: the operator's command line.
 *
 *   killswitch send-test [--demo] [--source generic] [--url http://localhost:3000] [--secret-file FILE]
 *   killswitch status <detection-or-workflow-id> [--wait] [--timeout 300]
 *   killswitch recent [--limit 20] [--outcome escalated] [--system app-db] [--source github]
 *   killswitch subscriptions list
 *   killswitch subscriptions deliveries <id|name> [--limit 20] [--cursor C]
 *   killswitch subscriptions test <id|name>
 *   killswitch rules list
 *   killswitch rules enable <id|name>
 *   killswitch rules disable <id|name>
 *
 * status, recent, subscriptions and rules call the API with KILLSWITCH_API_TOKEN (a viewer or admin
 * token of API_TOKENS; `subscriptions test` sends an event and `rules enable`/`disable` change a
 * rule, so they need an admin token), or, when it is unset, the local token `npm start` keeps in
 * the data folder (KILLSWITCH_DATA_DIR, default .data). KILLSWITCH_URL sets the default --url
 * (else http://localhost:$PORT, 3000). Exit codes: 0 ok, 1 failure, 2 usage.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { canaryDetection } from '../lib/canary';
import { DemoError, HUMAN_WAIT_STEPS, sendDemoDetection } from '../lib/demo-client';
import { PROJECT_ROOT } from '../lib/paths';
import {
  dataDirOf,
  describeFetchError,
  postSigned,
  resolveApiToken,
  resolveSigningSecret,
} from '../lib/webhook-client';
import { OUTCOMES } from '../contracts/run';

/** A failure the command reports (exit 1); usage errors are CommanderErrors (exit 2). */
class Failure extends Error {}
class UsageError extends Error {}

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  env: Record<string, string | undefined>;
  sleep: (ms: number) => Promise<void>;
}

const intIn = (min: number, max: number) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
  return Number(v);
};

function baseUrl(v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new InvalidArgumentError('expected an http(s) URL such as http://localhost:3000');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new InvalidArgumentError('expected an http(s) URL');
  return u.toString().replace(/\/+$/, '');
}

/** Fixed-width columns, no dependencies. */
export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

/** The read API's shapes, as far as the CLI prints them. */
interface AuditRow {
  workflowId: string;
  outcome: string;
  source: string;
  credentialType: string;
  credentialRef: Record<string, unknown> | null;
  owningSystem: string | null;
  policyAction: string | null;
  policyRule: string | null;
  dryRun: boolean;
  failureType: string | null;
  failureStep: string | null;
  failureMessage: string | null;
  recordedAt: string;
}
interface Detail {
  workflowId: string;
  live: { status: string; step?: string; outcome?: string; temporalUiUrl?: string } | null;
  audit: AuditRow[];
  sightings: unknown[];
}
type ApiBody = { detail?: string } & Partial<Detail> & { detections?: AuditRow[] };

async function getJson(
  io: Io,
  url: string,
  init: { method?: 'GET' | 'POST'; body?: unknown; timeoutMs?: number } = {},
): Promise<{ status: number; body: ApiBody }> {
  const { token, from } = resolveApiToken(io.env);
  if (!token)
    throw new UsageError(
      from === 'KILLSWITCH_API_TOKEN'
        ? 'KILLSWITCH_API_TOKEN is empty: export a viewer or admin token of API_TOKENS'
        : `KILLSWITCH_API_TOKEN is not set and there is no local token in ${from} (npm start writes it): export a viewer or admin token of API_TOKENS`,
    );
  let res: Response;
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      signal: AbortSignal.timeout(init.timeoutMs ?? 15_000),
    });
  } catch (err) {
    throw new Failure(describeFetchError(new URL(url).origin, err));
  }
  const text = await res.text();
  let body: ApiBody = { detail: text };
  try {
    body = JSON.parse(text) as ApiBody;
  } catch {
    // not JSON: keep the text as the detail
  }
  if (res.status === 401 || res.status === 403)
    throw new Failure(
      `${res.status}: ${body.detail ?? text} (check ${from === 'KILLSWITCH_API_TOKEN' ? from : `the token in ${from}`})`,
    );
  // The API is off on that ingress: say so rather than "no such detection".
  if (res.status === 503 && /:api-off$/.test(String((body as { type?: unknown }).type)))
    throw new Failure(`${res.status}: ${body.detail ?? text}`);
  return { status: res.status, body };
}

const short = (s: unknown) => (s === null || s === undefined || s === '' ? '-' : String(s));
const time = (iso: unknown) =>
  typeof iso === 'string' ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';

function describeStatus(d: Detail): string {
  const live = d.live;
  const audit = d.audit ?? [];
  const last = audit[audit.length - 1];
  const rows: string[][] = [
    ['workflow', d.workflowId],
    [
      'run',
      live
        ? `${short(live.status)}${live.step ? ` (step ${live.step})` : ''}`
        : 'not in Temporal any more (retention)',
    ],
  ];
  if (audit.length) rows.push(['outcome', audit.map((a) => a.outcome).join(', ')]);
  else if (live?.outcome) rows.push(['outcome', `${live.outcome} (not yet audited)`]);
  if (last) {
    rows.push([
      'credential',
      `${last.credentialType} ${Object.entries(last.credentialRef ?? {})
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(' ')}`,
    ]);
    rows.push(['system', short(last.owningSystem)]);
    rows.push([
      'policy',
      `${short(last.policyAction)} (rule ${short(last.policyRule)})${last.dryRun ? ' dry run' : ''}`,
    ]);
    if (last.failureType)
      rows.push([
        'failure',
        `${last.failureType} at ${short(last.failureStep)}: ${short(last.failureMessage)}`,
      ]);
    rows.push(['recorded', time(last.recordedAt)]);
  }
  rows.push(['sightings', String((d.sightings ?? []).length)]);
  if (live?.temporalUiUrl) rows.push(['temporal', live.temporalUiUrl]);
  return table(rows);
}

export async function sendTest(
  io: Io,
  opts: { source: string; url: string; secretFile?: string; demo?: boolean },
): Promise<void> {
  const secret = (() => {
    try {
      return resolveSigningSecret({ secretFile: opts.secretFile, env: io.env });
    } catch (err) {
      throw new UsageError(`${(err as Error).message} (pass --secret-file or set GENERIC_WEBHOOK_SECRETS)`);
    }
  })();
  if (opts.demo) {
    const { token } = resolveApiToken(io.env);
    let report: Awaited<ReturnType<typeof sendDemoDetection>>;
    try {
      report = await sendDemoDetection({
        ingress: opts.url,
        webhookUrl: `${opts.url}/webhooks/${opts.source}`,
        dataDir: dataDirOf(io.env),
        signingSecret: secret,
        ...(token ? { apiToken: token } : {}),
        out: io.out,
        sleep: io.sleep,
      });
    } catch (err) {
      if (err instanceof DemoError) throw new Failure(err.message);
      throw err;
    }
    if (!report.contained)
      throw new Failure(
        `the run did not end contained (${report.outcome ?? 'no audit row'}; whoami ${report.keyStatus})`,
      );
    return;
  }
  const canaryId = `canary-${randomUUID()}`;
  const target = `${opts.url}/webhooks/${opts.source}`;
  let res: Awaited<ReturnType<typeof postSigned>>;
  try {
    res = await postSigned(target, canaryDetection(canaryId), secret);
  } catch (err) {
    throw new Failure(describeFetchError(opts.url, err));
  }
  const body = res.body as {
    workflowId?: string;
    detectionId?: string;
    temporalUiUrl?: string;
    detail?: string;
  };
  if (res.status !== 202 || !body.workflowId)
    throw new Failure(`the ingress refused the canary: ${res.status} ${body.detail ?? res.text}`);
  io.out(
    `${table([
      ['canary', `${canaryId} accepted (${res.status})`],
      ['workflow', body.workflowId],
      ['detection', short(body.detectionId)],
      ['temporal', short(body.temporalUiUrl)],
    ])}\n`,
  );
  io.out(`follow it: killswitch status ${body.workflowId} --wait\n`);
}

export async function status(
  io: Io,
  id: string,
  opts: { url: string; wait?: boolean; timeout: number; interval: number },
): Promise<void> {
  const url = `${opts.url}/api/detections/${encodeURIComponent(id)}`;
  const started = Date.now();
  const deadline = started + opts.timeout * 1000;
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
  let lastStep: string | undefined;
  for (;;) {
    const r = await getJson(io, url);
    if (r.status === 404) throw new Failure(`no detection or workflow with id ${id}`);
    if (r.status !== 200) throw new Failure(`${r.status}: ${r.body.detail ?? JSON.stringify(r.body)}`);
    const d = r.body as Detail;
    const open = d.live?.status === 'RUNNING';
    const step = d.live?.step ?? (open ? 'running' : 'finishing');
    const ended = (!open && (d.audit ?? []).length > 0) || (!open && d.live?.status !== 'COMPLETED');
    const human = open && HUMAN_WAIT_STEPS.has(step);
    if (opts.wait && step !== lastStep && !ended) {
      io.out(`${new Date().toISOString().slice(11, 19)}  +${elapsed()}  ${step}\n`);
      lastStep = step;
    }
    if (!opts.wait || ended || human) {
      io.out(`${describeStatus(d)}\n`);
      if (opts.wait)
        io.out(
          human
            ? `waiting for a person (step ${step}) after ${elapsed()}: ${HUMAN_HINTS[step] ?? ''}\n`
            : `ended after ${elapsed()}\n`,
        );
      return;
    }
    if (Date.now() > deadline) {
      io.out(`${describeStatus(d)}\n`);
      throw new Failure(`still running after ${opts.timeout}s (step ${step})`);
    }
    await io.sleep(opts.interval);
  }
}

/** What a person can do at a step where a run waits for one. */
const HUMAN_HINTS: Record<string, string> = {
  awaiting_approval: 'approve or deny it with the buttons of its Slack message (policy require_approval)',
  held_by_breaker:
    'the mass-leak breaker holds it: approve or deny it from its Slack message (docs/operating.md, Related waits)',
  awaiting_retry:
    'escalated: fix the cause, then retry it from its Slack message (docs/operating.md, Runbook)',
};

export async function recent(
  io: Io,
  opts: { url: string; limit: number; outcome?: string; system?: string; source?: string },
): Promise<void> {
  const q = new URLSearchParams({ limit: String(opts.limit) });
  if (opts.outcome) q.set('outcome', opts.outcome);
  if (opts.system) q.set('system', opts.system);
  if (opts.source) q.set('source', opts.source);
  const r = await getJson(io, `${opts.url}/api/detections?${q}`);
  if (r.status === 422) throw new UsageError(r.body.detail ?? 'invalid filter');
  if (r.status !== 200) throw new Failure(`${r.status}: ${r.body.detail ?? JSON.stringify(r.body)}`);
  const rows = r.body.detections ?? [];
  if (rows.length === 0) {
    io.out('no detections\n');
    return;
  }
  io.out(
    `${table([
      ['RECORDED', 'OUTCOME', 'SOURCE', 'TYPE', 'SYSTEM', 'POLICY', 'WORKFLOW'],
      ...rows.map((x) => [
        time(x.recordedAt),
        short(x.outcome),
        short(x.source),
        short(x.credentialType),
        short(x.owningSystem),
        short(x.policyAction),
        short(x.workflowId),
      ]),
    ])}\n`,
  );
}

/** A subscription as the API shows it, as far as the CLI prints it. */
interface SubscriptionShown {
  id: string;
  name: string;
  format: string;
  url: string | null;
  connection: { host?: string; port?: number } | null;
  eventTypes: string[];
  isActive: boolean;
  consecutiveFailures: number;
  disabledReason: string | null;
  origin: string;
}

const failed = (r: { status: number; body: ApiBody }) =>
  new Failure(`${r.status}: ${r.body.detail ?? JSON.stringify(r.body)}`);

async function listSubscriptionsOf(io: Io, url: string): Promise<SubscriptionShown[]> {
  const r = await getJson(io, `${url}/api/subscriptions`);
  if (r.status !== 200) throw failed(r);
  return (r.body as { subscriptions?: SubscriptionShown[] }).subscriptions ?? [];
}

/** The id of a subscription named by its id or its name. */
async function subscriptionIdOf(io: Io, url: string, idOrName: string): Promise<string> {
  const all = await listSubscriptionsOf(io, url);
  const found = all.find((s) => s.id === idOrName) ?? all.find((s) => s.name === idOrName);
  if (!found) throw new Failure(`no subscription has the id or name ${idOrName}`);
  return found.id;
}

const destination = (s: SubscriptionShown) =>
  s.url ?? (s.connection ? `${short(s.connection.host)}:${short(s.connection.port)}` : '-');

export async function subscriptionsList(io: Io, opts: { url: string }): Promise<void> {
  const subs = await listSubscriptionsOf(io, opts.url);
  if (subs.length === 0) {
    io.out('no subscriptions\n');
    return;
  }
  io.out(
    `${table([
      ['NAME', 'FORMAT', 'ACTIVE', 'FAILURES', 'ORIGIN', 'EVENTS', 'DESTINATION', 'ID'],
      ...subs.map((s) => [
        s.name,
        s.format,
        s.isActive ? 'yes' : `no${s.disabledReason ? ' (breaker)' : ''}`,
        String(s.consecutiveFailures),
        s.origin,
        s.eventTypes.join(','),
        destination(s),
        s.id,
      ]),
    ])}\n`,
  );
}

export async function subscriptionsDeliveries(
  io: Io,
  idOrName: string,
  opts: { url: string; limit: number; cursor?: string },
): Promise<void> {
  const id = await subscriptionIdOf(io, opts.url, idOrName);
  const q = new URLSearchParams({ limit: String(opts.limit) });
  if (opts.cursor) q.set('cursor', opts.cursor);
  const r = await getJson(io, `${opts.url}/api/subscriptions/${encodeURIComponent(id)}/deliveries?${q}`);
  if (r.status === 422) throw new UsageError(r.body.detail ?? 'invalid query');
  if (r.status !== 200) throw failed(r);
  const body = r.body as {
    deliveries?: Array<{
      eventId: string;
      eventType: string;
      attempt: number;
      statusCode: number | null;
      success: boolean;
      durationMs: number;
      error: string | null;
      at: string;
    }>;
    nextCursor?: string | null;
  };
  const rows = body.deliveries ?? [];
  if (rows.length === 0) io.out('no deliveries\n');
  else
    io.out(
      `${table([
        ['AT', 'EVENT', 'ATTEMPT', 'RESULT', 'STATUS', 'MS', 'ERROR', 'EVENT ID'],
        ...rows.map((d) => [
          time(d.at),
          d.eventType,
          String(d.attempt),
          d.success ? 'ok' : 'failed',
          short(d.statusCode),
          String(d.durationMs),
          short(d.error),
          d.eventId,
        ]),
      ])}\n`,
    );
  if (body.nextCursor)
    io.out(`more: killswitch subscriptions deliveries ${idOrName} --cursor ${body.nextCursor}\n`);
}

export async function subscriptionsTest(io: Io, idOrName: string, opts: { url: string }): Promise<void> {
  const id = await subscriptionIdOf(io, opts.url, idOrName);
  const r = await getJson(io, `${opts.url}/admin/subscriptions/${encodeURIComponent(id)}/test`, {
    method: 'POST',
    body: {},
    timeoutMs: 60_000,
  });
  if (r.status !== 200) throw failed(r);
  const t = r.body as { eventId?: string; delivered?: boolean; statusCode?: number; error?: string };
  io.out(
    `${table([
      ['subscription', id],
      ['event', short(t.eventId)],
      ['delivered', t.delivered ? 'yes' : 'no'],
      ['status', short(t.statusCode)],
      ...(t.error ? [['error', t.error]] : []),
    ])}\n`,
  );
  if (!t.delivered) throw new Failure('the test event was not delivered');
}

/** A rule as the API shows it, as far as the CLI prints it. */
interface RuleShown {
  id: string;
  name: string;
  enabled: boolean;
  origin: string;
  trigger: string[];
  actions: Array<{ subscription: string }>;
  executionCount: number;
  lastExecutedAt: string | null;
  lastEventType: string | null;
}

async function listRulesOf(io: Io, url: string): Promise<RuleShown[]> {
  const r = await getJson(io, `${url}/api/rules`);
  if (r.status !== 200) throw failed(r);
  return (r.body as { rules?: RuleShown[] }).rules ?? [];
}

export async function rulesList(io: Io, opts: { url: string }): Promise<void> {
  const rules = await listRulesOf(io, opts.url);
  if (rules.length === 0) {
    io.out('no rules\n');
    return;
  }
  io.out(
    `${table([
      ['NAME', 'ENABLED', 'ORIGIN', 'TRIGGER', 'ACTIONS', 'EXECUTIONS', 'LAST EXECUTION', 'ID'],
      ...rules.map((x) => [
        x.name,
        x.enabled ? 'yes' : 'no',
        x.origin,
        x.trigger.join(','),
        x.actions.map((a) => a.subscription).join(','),
        String(x.executionCount),
        x.lastExecutedAt ? `${time(x.lastExecutedAt)} ${short(x.lastEventType)}` : '-',
        x.id,
      ]),
    ])}\n`,
  );
}

/** Switches a rule (named by its id or its name) on or off; needs an admin token. */
export async function rulesSwitch(
  io: Io,
  idOrName: string,
  enabled: boolean,
  opts: { url: string },
): Promise<void> {
  const all = await listRulesOf(io, opts.url);
  const found = all.find((x) => x.id === idOrName) ?? all.find((x) => x.name === idOrName);
  if (!found) throw new Failure(`no rule has the id or name ${idOrName}`);
  const r = await getJson(
    io,
    `${opts.url}/admin/rules/${encodeURIComponent(found.id)}/${enabled ? 'enable' : 'disable'}`,
    { method: 'POST', body: {} },
  );
  if (r.status !== 200) throw failed(r);
  const after = r.body as Partial<RuleShown>;
  io.out(
    `${table([
      ['rule', `${short(after.name)} (${found.id})`],
      ['enabled', after.enabled ? 'yes' : 'no'],
      ['origin', short(after.origin)],
    ])}\n`,
  );
}

/** The version in package.json. */
export function version(): string {
  return (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
}

const ENV_HELP = `
Environment:
  KILLSWITCH_URL           the ingress (default http://localhost:$PORT, PORT default 3000)
  PORT                     the ingress port npm start listens on, when KILLSWITCH_URL is unset
  KILLSWITCH_API_TOKEN     a viewer or admin token of API_TOKENS for status, recent, subscriptions, rules;
                           unset: the local token npm start keeps in <data folder>/api-token
  KILLSWITCH_DATA_DIR      npm start's data folder (default .data): local tokens, webhook secret, demo service
  GENERIC_WEBHOOK_SECRETS  signing secrets of the generic webhook (send-test signs with the first);
                           unset: <data folder>/generic-webhook-secret
`;

export function buildProgram(io: Io): Command {
  const program = new Command('killswitch')
    .description(
      'Secret Kill Switch: send a canary or a demo leak, follow a run, list recent detections, manage outbound subscriptions and rules',
    )
    .version(version(), '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .addHelpText('after', ENV_HELP)
    .showHelpAfterError();
  const urlOption = () =>
    new Option('--url <url>', 'the kill switch ingress (KILLSWITCH_URL, else http://localhost:$PORT)')
      .default(io.env.KILLSWITCH_URL || `http://localhost:${io.env.PORT || '3000'}`)
      .argParser(baseUrl);

  program
    .command('send-test')
    .description(
      'send a signed canary detection that proves the intake works end to end (rotates nothing); with --demo, leak a fresh key of the demo service npm start runs and follow its run until contained',
    )
    .option('--demo', "leak a key of npm start's demo service (embedded defaults) and follow the run")
    .addOption(
      new Option('--source <source>', 'the source to send through').choices(['generic']).default('generic'),
    )
    .addOption(urlOption())
    .option(
      '--secret-file <file>',
      'file holding the whsec_ signing secret (default: GENERIC_WEBHOOK_SECRETS, then .data/generic-webhook-secret)',
    )
    .action((o: { source: string; url: string; secretFile?: string; demo?: boolean }) => sendTest(io, o));

  program
    .command('status')
    .description('show a detection or run: audit outcome, live step, Temporal UI link')
    .argument('<id>', 'a detection id or a workflow id')
    .addOption(urlOption())
    .option(
      '--wait',
      'follow the run, printing each step and the elapsed time, until it ends or waits for a person (approval, breaker, retry)',
    )
    .option('--timeout <seconds>', 'give up waiting after this long', intIn(1, 86_400), 300)
    .option('--interval <ms>', 'how often to poll while waiting', intIn(100, 60_000), 1000)
    .action((id: string, o: { url: string; wait?: boolean; timeout: number; interval: number }) => {
      if (!/^[^\p{Cc}]{1,512}$/u.test(id)) throw new UsageError('id: 1 to 512 printable characters');
      return status(io, id, o);
    });

  program
    .command('recent')
    .description('list the most recent detections (audit rows), newest first')
    .addOption(urlOption())
    .option('--limit <n>', 'how many (1-200)', intIn(1, 200), 20)
    .addOption(new Option('--outcome <outcome>', 'only this outcome').choices(OUTCOMES))
    .option('--system <system>', 'only this owning system (none: unowned)')
    .option('--source <source>', 'only this source')
    .action((o: { url: string; limit: number; outcome?: string; system?: string; source?: string }) =>
      recent(io, o),
    );

  const subs = program
    .command('subscriptions')
    .description('outbound event subscriptions: list them, their delivery history, send a test event');
  const idArg = (v: string) => {
    if (!/^[^\p{Cc}]{1,200}$/u.test(v)) throw new UsageError('id: 1 to 200 printable characters');
    return v;
  };
  subs
    .command('list')
    .description('list every subscription: format, active, failures, origin, events, destination')
    .addOption(urlOption())
    .action((o: { url: string }) => subscriptionsList(io, o));
  subs
    .command('deliveries')
    .description("a subscription's delivery attempts, newest first")
    .argument('<id>', 'a subscription id or name')
    .addOption(urlOption())
    .option('--limit <n>', 'how many (1-200)', intIn(1, 200), 20)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .action((id: string, o: { url: string; limit: number; cursor?: string }) =>
      subscriptionsDeliveries(io, idArg(id), o),
    );
  subs
    .command('test')
    .description('send the delivery.test event to a subscription now (needs an admin token)')
    .argument('<id>', 'a subscription id or name')
    .addOption(urlOption())
    .action((id: string, o: { url: string }) => subscriptionsTest(io, idArg(id), o));

  const rules = program
    .command('rules')
    .description('outbound rules: list them with their executions, switch one on or off');
  rules
    .command('list')
    .description('list every rule: enabled, origin, trigger, actions, executions, last execution')
    .addOption(urlOption())
    .action((o: { url: string }) => rulesList(io, o));
  for (const [name, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const)
    rules
      .command(name)
      .description(
        `${name} a rule at runtime, config rules included, until the next start for those (needs an admin token)`,
      )
      .argument('<id>', 'a rule id or name')
      .addOption(urlOption())
      .action((id: string, o: { url: string }) => rulesSwitch(io, idArg(id), enabled, o));

  return program;
}

/** Runs the CLI; resolves to the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError) {
      io.err(`killswitch: ${err.message}\n`);
      return 2;
    }
    io.err(`killswitch: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  run(process.argv.slice(2), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  })
    .then((code) => {
      process.exitCode = code;
    })
    .catch((err: unknown) => {
      process.stderr.write(`killswitch: ${String(err)}\n`);
      process.exit(1);
    });
}

/**
 * The kill switch assembled in-process from its real parts (config parsing, ingress, worker,
 * activities, audit store) against the run's real Temporal server and PostgreSQL, with Slack and
 * PagerDuty as loopback fakes. Every log line is captured for the secret-hygiene checks.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, bundleWorkflowCode, type Worker, type WorkflowBundle } from '@temporalio/worker';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { expect, inject } from 'vitest';
import { createIngressApp } from '../../api/server';
import { createOutboundControl } from '../../api/outbound-control';
import { createWorkflowDispatcher } from '../../lib/dispatch';
import { loadConfig, type Config } from '../../lib/config';
import type { DataConverter } from '@temporalio/common';
import {
  codecFromConfig,
  decodeDeep,
  FAILURE_CONVERTER_PATH,
  killSwitchDataConverter,
  type EncryptionCodec,
} from '../../lib/codec';
import { createPostgresDb, migrate, type Db } from '../../lib/db';
import { parseInventory, type Inventory } from '../../lib/inventory';
import { createServerKeys, newServerKey, newWebhookSecret } from '../../lib/keys';
import { type ServerKeys } from '../../contracts/keys';
import { createLogger, type Logger } from '../../lib/logger';
import { installTemporalLogging } from '../../lib/temporal-logging';
import type { Step, StepStatus } from '../../contracts/run';
import { buildActivityDeps, createKillSwitchWorker, WORKFLOWS_PATH } from '../../worker/build';
import { startPagerDutyFake, type PagerDutyFake } from '../fakes/pagerduty';
import { parseSlackBody, startSlackFake, type SlackFake, type SlackFakeOptions } from '../fakes/slack';

/** Everything every logger in this test process wrote. */
export const capturedLogs: string[] = [];
const capture = new Writable({
  write(chunk, _enc, cb) {
    capturedLogs.push(chunk.toString());
    cb();
  },
});
export const testLogger: Logger = createLogger({ level: 'debug', destination: capture });
installTemporalLogging(testLogger);

let bundle: Promise<WorkflowBundle> | undefined;
function workflowBundle(): Promise<WorkflowBundle> {
  bundle ??= bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    // The workflow side of the encrypting data converter: failure messages travel encoded.
    failureConverterPath: FAILURE_CONVERTER_PATH,
    logger: { info() {}, warn() {}, error() {}, debug() {}, trace() {}, log() {} } as never,
  });
  return bundle;
}

export const rand = () => randomBytes(4).toString('hex');

export interface OwnedSystem {
  /** Superuser connection for fixtures (over the unix socket). */
  su: pg.Client;
  adminRole: string;
  adminPassword: string;
  adminUrl: string;
  /** Creates a login role with a password; `superuser` makes it one the admin may not alter. */
  createRole(opts?: { superuser?: boolean; prefix?: string }): Promise<{ role: string; password: string }>;
  connectAs(role: string, password: string): Promise<pg.Client>;
  loginFails(role: string, password: string): Promise<string | null>;
  backendsOf(role: string): Promise<number>;
}

export async function ownedSystem(): Promise<OwnedSystem> {
  const o = inject('owned');
  const su = new pg.Client({ host: o.socketDir, port: o.port, user: 'postgres', database: 'postgres' });
  await su.connect();
  const adminRole = `ks_admin_${rand()}`;
  const adminPassword = `admin-${randomBytes(12).toString('hex')}`;
  await su.query(`CREATE ROLE ${adminRole} LOGIN CREATEROLE PASSWORD '${adminPassword}'`);
  await su.query(`GRANT pg_signal_backend TO ${adminRole}`);
  const adminUrl = `postgres://${adminRole}:${adminPassword}@${o.host}:${o.port}/postgres`;
  const clients: pg.Client[] = [];
  const connectAs = async (role: string, password: string) => {
    const c = new pg.Client({ host: o.host, port: o.port, user: role, password, database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  return {
    su,
    adminRole,
    adminPassword,
    adminUrl,
    async createRole(opts = {}) {
      const role = `${opts.prefix ?? (opts.superuser ? 'dba' : 'app')}_${rand()}`;
      // A password with characters that need quoting, so literal escaping is exercised.
      const password = `leak'${randomBytes(12).toString('base64url')}"$x`;
      await su.query(
        `CREATE ROLE ${su.escapeIdentifier(role)} LOGIN ${opts.superuser ? 'SUPERUSER' : ''} PASSWORD ${su.escapeLiteral(password)}`,
      );
      return { role, password };
    },
    connectAs,
    async loginFails(role, password) {
      const c = new pg.Client({ host: o.host, port: o.port, user: role, password, database: 'postgres' });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.end();
        return null;
      } catch (err) {
        return (err as { code?: string }).code ?? 'error';
      }
    },
    async backendsOf(role) {
      const r = await su.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [role]);
      return r.rows[0].n as number;
    },
  };
}

export interface Harness {
  config: Config;
  keys: ServerKeys;
  webhookSecret: string;
  taskQueue: string;
  client: Client;
  db: Db;
  slack: SlackFake;
  pagerduty: PagerDutyFake;
  owned: OwnedSystem;
  inventory: Inventory;
  baseUrl: string;
  /** The payload codec every client and worker of this harness uses (KILLSWITCH_CODEC_KEYS or derived). */
  codec: EncryptionCodec;
  dataConverter: DataConverter;
  /** A bearer token of the codec endpoint (CODEC_TOKENS). */
  codecToken: string;
  /** The environment the harness's ingress and worker were configured from (for a worker in its own process). */
  env: Record<string, string>;
  /** The config-file document the inventory was parsed from (written to INVENTORY_FILE for such a worker). */
  inventoryDoc: Record<string, unknown>;
  /** A run's history with every payload decoded by the codec: what the Temporal UI shows through /codec. */
  decodedHistory(workflowId: string, runId?: string): ReturnType<WorkflowHandle['fetchHistory']>;
  post(body: string | object, opts?: PostOptions): Promise<{ status: number; headers: Headers; json: any }>;
  close(): Promise<void>;
}

export interface PostOptions {
  secret?: string;
  webhookId?: string;
  timestamp?: Date;
  contentType?: string;
  signature?: string | null;
  path?: string;
  /** Extra headers sent as they are (not signed: Standard Webhooks signs the body). */
  headers?: Record<string, string>;
}

export function signedHeaders(secret: string, body: string, opts: PostOptions = {}): Record<string, string> {
  const id = opts.webhookId ?? `msg_${rand()}${rand()}`;
  const ts = opts.timestamp ?? new Date();
  const headers: Record<string, string> = {
    'content-type': opts.contentType ?? 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
  };
  const sig = opts.signature === undefined ? new Webhook(secret).sign(id, ts, body) : opts.signature;
  if (sig !== null) headers['webhook-signature'] = sig;
  return { ...headers, ...(opts.headers ?? {}) };
}

export interface HarnessOptions {
  /** Rate limits for the Slack fake (Slack's documented ones), e.g. to test burst digests. */
  slack?: SlackFakeOptions;
  worker?: boolean;
  temporalAddress?: string;
  deadlineMs?: number;
  env?: Record<string, string>;
  /** Config-file sections (sources, policy, knownSecrets, systems) merged over the default. */
  config?: Record<string, unknown>;
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const taskQueue = `kill-switch-test-${rand()}`;
  const webhookSecret = newWebhookSecret();
  const retiredSecret = newWebhookSecret();
  const [slack, pagerduty, owned] = await Promise.all([
    startSlackFake(undefined, opts.slack),
    startPagerDutyFake(),
    ownedSystem(),
  ]);
  const codecToken = `codec-${randomBytes(18).toString('base64url')}`;
  const env: Record<string, string> = {
    LOG_LEVEL: 'debug',
    CODEC_TOKENS: codecToken,
    TEMPORAL_ADDRESS: opts.temporalAddress ?? inject('temporalAddress'),
    TEMPORAL_TASK_QUEUE: taskQueue,
    TEMPORAL_CONNECT_TIMEOUT_MS: String(opts.deadlineMs ?? 5000),
    DATABASE_URL: inject('auditDatabaseUrl'),
    KILLSWITCH_SERVER_KEY: newServerKey(),
    // Two active signing secrets, as during a secret rotation.
    GENERIC_WEBHOOK_SECRETS: `${retiredSecret}, ${webhookSecret}`,
    SLACK_BOT_TOKEN: slack.token,
    SLACK_SIGNING_SECRET: slack.signingSecret,
    SLACK_CHANNEL: '#security-incidents',
    SLACK_API_URL: slack.apiUrl,
    PAGERDUTY_ROUTING_KEY: pagerduty.routingKey,
    PAGERDUTY_EVENTS_URL: pagerduty.url,
    OWNED_DB_ADMIN_URL: owned.adminUrl,
    // Test files share one database: the burst count (run messages in the last minute) would see
    // every file's runs. Burst digests are switched on by the tests that are about them.
    SLACK_DIGEST_AFTER: 'off',
    ...opts.env,
  };
  const config = loadConfig(env);
  const keys = createServerKeys(config.serverKey!);
  const inventoryDoc: Record<string, unknown> = {
    systems: [
      {
        name: 'owned-db',
        kind: 'postgres',
        adminUrlEnv: 'OWNED_DB_ADMIN_URL',
        roles: ['app_*', 'dba_*'],
        hosts: ['127.0.0.1', 'db.internal'],
      },
    ],
    ...(opts.config ?? {}),
    // Escalated runs end at once unless a test asks them to wait for a human retry.
    policy: { retryWindow: '0s', ...((opts.config?.policy as Record<string, unknown> | undefined) ?? {}) },
  };
  // Test files share one database and mostly one system name (owned-db), and the mass-leak breaker
  // counts leaks per system name in that database: at its default (25 in 5 minutes) the suite would
  // trip it and hold later files' runs for a human. A system that does not set its breaker gets one
  // out of reach; the breaker's own tests set theirs (breaker.e2e).
  inventoryDoc.systems = (inventoryDoc.systems as Array<Record<string, unknown>>).map((s) => ({
    breaker: { threshold: 100_000, window: '5m' },
    ...s,
  }));
  const inventory = parseInventory(inventoryDoc);
  const db = createPostgresDb(config.databaseUrl!);
  await migrate(db);

  // The config's connection options: the address, plus TLS, a client certificate or an API key when
  // a test's env sets TEMPORAL_TLS_* / TEMPORAL_API_KEY (test/e2e/temporal-tls.e2e.test.ts).
  const connectOptions = config.temporal.connection.connectOptions();
  const connection = opts.temporalAddress
    ? Connection.lazy(connectOptions)
    : await Connection.connect(connectOptions);
  const codec = codecFromConfig(config, keys);
  const dataConverter = killSwitchDataConverter(codec);
  const client = new Client({ connection, namespace: config.temporal.namespace, dataConverter });
  const temporal = {
    client,
    namespace: config.temporal.namespace,
    taskQueue,
    uiUrl: config.temporal.uiUrl,
    deadlineMs: config.temporal.connectTimeoutMs,
  };
  const deps = buildActivityDeps({ config, temporal, db, keys, inventory, env, logger: testLogger });

  let worker: Worker | undefined;
  let running: Promise<void> | undefined;
  let workerConnection: NativeConnection | undefined;
  if (opts.worker !== false) {
    workerConnection = await NativeConnection.connect(connectOptions);
    worker = await createKillSwitchWorker({
      connection: workerConnection,
      namespace: config.temporal.namespace,
      taskQueue,
      deps,
      dataConverter,
      workflowBundle: await workflowBundle(),
    });
    running = worker.run();
  }

  const app = createIngressApp(config, {
    logger: testLogger,
    client,
    keys,
    db,
    evidence: deps.evidence,
    genericSecrets: config.webhook.genericSecrets!,
    inventory,
    env,
    codec,
    outbound: createOutboundControl({ db, workflows: createWorkflowDispatcher(temporal) }),
  });
  const server = http.createServer(app);
  // fetch keeps connections alive; a server closing an idle one (Node's 5 s default) just as a slow
  // test reuses it resets the next request (ECONNRESET under load). Production sits behind its own
  // proxy; here the harness keeps them open longer than any test waits.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    config,
    keys,
    webhookSecret,
    taskQueue,
    client,
    db,
    slack,
    pagerduty,
    owned,
    inventory,
    baseUrl,
    codec,
    dataConverter,
    codecToken,
    env,
    inventoryDoc,
    async decodedHistory(workflowId, runId) {
      return decodeDeep(await client.workflow.getHandle(workflowId, runId).fetchHistory(), codec);
    },
    async post(body, po = {}) {
      const raw = typeof body === 'string' ? body : JSON.stringify(body);
      const res = await fetch(`${baseUrl}${po.path ?? '/webhooks/generic'}`, {
        method: 'POST',
        headers: signedHeaders(po.secret ?? webhookSecret, raw, po),
        body: raw,
      });
      const text = await res.text();
      let json: any;
      try {
        json = JSON.parse(text);
      } catch {
        json = text;
      }
      return { status: res.status, headers: res.headers, json };
    },
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      if (worker) {
        worker.shutdown();
        await running;
      }
      await workerConnection?.close();
      await connection.close();
      await deps.providers.closeAll();
      await db.close();
      await Promise.all([slack.close(), pagerduty.close()]);
      await owned.su.end();
    },
  };
}

/** Flattens a history (or anything) to text, decoding every byte array it holds, for secret searches. */
export function deepText(value: unknown): string {
  const parts: string[] = [];
  const walk = (v: unknown) => {
    if (v === null || v === undefined) return;
    if (v instanceof Uint8Array) {
      const b = Buffer.from(v);
      parts.push(b.toString('utf8'), b.toString('base64'));
      return;
    }
    if (typeof v === 'object') {
      for (const x of Object.values(v as Record<string, unknown>)) walk(x);
      return;
    }
    parts.push(String(v));
  };
  walk(value);
  return parts.join('\n');
}

/** The connection string a scanner would find for a role of the owned PostgreSQL. */
export function leakedUrl(role: string, password: string): string {
  const o = inject('owned');
  return `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`;
}

/**
 * Every place a secret must never reach, as searchable text: the runs' Temporal histories and
 * descriptions, the captured logs, the Temporal server's log, the audit and notification tables,
 * and what the Slack and PagerDuty fakes received. `extra` adds places of a test's own.
 */
export async function secretPlaces(
  h: Harness,
  workflowIds: Iterable<string>,
  extra: Record<string, string> = {},
): Promise<Record<string, string>> {
  const histories: string[] = [];
  for (const workflowId of new Set(workflowIds)) {
    const handle = h.client.workflow.getHandle(workflowId);
    // Decoded, as the UI shows it through the codec endpoint: encryption must not hide a leak here.
    histories.push(deepText(await h.decodedHistory(workflowId)));
    histories.push(JSON.stringify(await handle.describe()));
  }
  return {
    'Temporal history': histories.join('\n'),
    logs: capturedLogs.join(''),
    'Temporal server log': existsSync('test-results/temporal-dev.log')
      ? readFileSync('test-results/temporal-dev.log', 'utf8')
      : '',
    'audit table': JSON.stringify((await h.db.query('SELECT * FROM killswitch_audit')).rows),
    'notification ledger': JSON.stringify((await h.db.query('SELECT * FROM killswitch_notifications')).rows),
    'Slack digest lines': JSON.stringify(
      (await h.db.query('SELECT * FROM killswitch_slack_digest_items')).rows,
    ),
    'Slack requests': h.slack.requests
      .map((r) => `${JSON.stringify(r.headers)}\n${r.body}\n${JSON.stringify(parseSlackBody(r))}`)
      .join('\n'),
    'PagerDuty requests': h.pagerduty.requests
      .map((r) => `${JSON.stringify(r.headers)}\n${r.body}`)
      .join('\n'),
    ...extra,
  };
}

/** Fails naming the place if any secret appears in any of them, raw or in a common encoding. */
export function expectNowhere(places: Record<string, string>, secrets: readonly string[]): void {
  for (const secret of secrets) {
    const forms = [
      secret,
      encodeURIComponent(secret),
      new URLSearchParams({ s: secret }).toString().slice(2),
      Buffer.from(secret).toString('base64'),
      JSON.stringify(secret).slice(1, -1),
    ];
    for (const [place, text] of Object.entries(places))
      for (const form of forms) expect(text.includes(form), `secret found in ${place}`).toBe(false);
  }
}

/** Polls a run's currentStep query until it reaches `step` (20 s at most). */
export async function waitForStep(
  handle: { query: <T>(name: string) => Promise<T> },
  step: Step,
): Promise<StepStatus> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = await handle.query<StepStatus>('currentStep');
    if (s.step === step) return s;
    if (Date.now() > deadline) throw new Error(`never reached ${step}; at ${s.step}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

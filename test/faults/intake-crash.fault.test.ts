/**
 * Fault: the ingress dies mid-burst. A sender (Standard Webhooks: the same webhook-id, a fresh
 * timestamp) re-sends every delivery it got no 2xx for, until each has one. Wherever the SIGKILL
 * landed (before the ledger claim, between the claim and the start of the run, between the start
 * and the ledger's answer), every delivery must end in exactly one run with one audit row and one
 * page or Slack message: nothing lost, nothing doubled.
 *
 * 1. The ingress as its own process (api/server.ts), killed three times during a burst of 240.
 * 2. The whole `npm start` tree (ingress, worker and its Temporal dev server in one process group),
 *    killed twice during a burst of 120, restarted on the same data folder each time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseGeneric, validateGeneric } from '../../api/sources/generic';
import { PROJECT_ROOT } from '../../tools/temporal-cli';
import { freePort } from '../../tools/temporal-dev';
import { codecFromConfig, killSwitchDataConverter } from '../../lib/codec';
import { loadConfig } from '../../lib/config';
import { createServerKeys } from '../../lib/keys';
import { type ServerKeys } from '../../contracts/keys';
import { killSwitchWorkflowId } from '../../contracts/run';
import {
  expectNowhere,
  leakedUrl,
  rand,
  secretPlaces,
  signedHeaders,
  startHarness,
  type Harness,
} from '../helpers/harness';
import { sleep } from './support';

interface Planned {
  webhookId: string;
  body: string;
  workflowId: string;
  /** Contained (a real role of the owned PostgreSQL) or escalated (no owning system: a page). */
  expect: 'contained' | 'escalated';
  password?: string;
  role?: string;
  answer?: { status: number; json: any };
  attempts: number;
}

/** N deliveries: every fourth a leaked role of the owned database, the others unowned keys. */
async function plan(h: Harness, keys: ServerKeys, n: number, tag: string): Promise<Planned[]> {
  const out: Planned[] = [];
  for (let i = 0; i < n; i++) {
    let payload: Record<string, unknown>;
    let role: string | undefined;
    let password: string | undefined;
    if (i % 4 === 0) {
      ({ role, password } = await h.owned.createRole({ prefix: 'crash' }));
      payload = {
        scanner: 'crash-burst',
        findingId: `${tag}-${i}`,
        credentialType: 'postgres_password',
        secret: leakedUrl(role, password),
      };
    } else {
      payload = {
        scanner: 'crash-burst',
        findingId: `${tag}-${i}`,
        credentialType: 'generic',
        credentialRef: { keyId: `${tag}-key-${i}` },
      };
    }
    const body = JSON.stringify(payload);
    const s = normaliseGeneric(validateGeneric(JSON.parse(body)), keys, new Date());
    out.push({
      webhookId: `msg_${tag}_${i}_${rand()}`,
      body,
      workflowId: killSwitchWorkflowId(s.detection.credentialType, s.credentialKey),
      expect: role ? 'contained' : 'escalated',
      ...(role ? { role, password } : {}),
      attempts: 0,
    });
  }
  return out;
}

/**
 * Sends every delivery with `concurrency` in flight, re-sending (same webhook-id, new timestamp and
 * signature) whatever got no 2xx, and calls `onAnswered` after each 2xx so the test can kill on cue.
 */
async function sendAll(
  baseUrl: () => string,
  secret: string,
  deliveries: Planned[],
  concurrency: number,
  onAnswered: (n: number) => void,
): Promise<void> {
  const queue = [...deliveries];
  let answered = 0;
  const deadline = Date.now() + 240_000;
  const worker = async () => {
    while (queue.length > 0) {
      if (Date.now() > deadline) throw new Error(`${queue.length} deliveries still unanswered after 240 s`);
      const d = queue.shift()!;
      d.attempts += 1;
      try {
        const res = await fetch(`${baseUrl()}/webhooks/generic`, {
          method: 'POST',
          headers: signedHeaders(secret, d.body, { webhookId: d.webhookId }),
          body: d.body,
          signal: AbortSignal.timeout(20_000),
        });
        const text = await res.text();
        if (res.status >= 200 && res.status < 300) {
          d.answer = { status: res.status, json: JSON.parse(text) };
          onAnswered(++answered);
          continue;
        }
      } catch {
        // connection refused or reset: the ingress is down; the sender retries
      }
      queue.push(d);
      await sleep(150);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

interface Proc {
  child: ChildProcess;
  output(): string;
  /** SIGKILL to the whole process group; resolves once the leader is gone. */
  kill(): Promise<void>;
}

/** A process group led by `node --import tsx <entry>`; resolves once `readyText` is logged. */
async function spawnReady(
  entry: string,
  env: Record<string, string>,
  readyText: string,
  timeoutMs = 120_000,
): Promise<Proc> {
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + timeoutMs;
  while (!out.includes(readyText)) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${entry} exited before ready:\n${out.slice(-3000)}`);
    if (Date.now() > deadline)
      throw new Error(`${entry} not ready after ${timeoutMs} ms:\n${out.slice(-3000)}`);
    await sleep(100);
  }
  return {
    child,
    output: () => out,
    async kill() {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    },
  };
}

/**
 * Starts `entry`, sends the burst to it, and each time the count of 2xx answers passes the next of
 * `killsAt`, SIGKILLs its whole process group and starts it again (the sender keeps re-sending
 * meanwhile). Returns the process left running and everything each incarnation logged.
 */
async function burstWithKills(o: {
  entry: string;
  env: Record<string, string>;
  readyText: string;
  port: number;
  secret: string;
  deliveries: Planned[];
  concurrency: number;
  killsAt: number[];
}): Promise<{ proc: Proc; outputs: string[] }> {
  let proc = await spawnReady(o.entry, o.env, o.readyText);
  const outputs: string[] = [];
  const kills = [...o.killsAt];
  let restarting: Promise<void> | undefined;
  await sendAll(
    () => `http://127.0.0.1:${o.port}`,
    o.secret,
    o.deliveries,
    o.concurrency,
    (n) => {
      if (kills.length > 0 && n >= kills[0]! && !restarting) {
        kills.shift();
        restarting = (async () => {
          await proc.kill();
          outputs.push(proc.output());
          proc = await spawnReady(o.entry, o.env, o.readyText);
        })().finally(() => (restarting = undefined));
      }
    },
  );
  await restarting;
  expect(kills).toEqual([]);
  // The kills landed mid-burst: some deliveries needed more than one attempt.
  expect(o.deliveries.filter((d) => d.attempts > 1).length).toBeGreaterThan(0);
  return { proc, outputs };
}

/** Every delivery: a 2xx naming its run, one execution, one audit row, one page or one message. */
async function expectExactlyOnce(
  h: Harness,
  client: Client,
  deliveries: Planned[],
  kills: number,
  pagesOf: (wf: string) => { alerts: number; triggers: number },
  messagesOf: (wf: string) => number,
): Promise<void> {
  for (const d of deliveries) {
    expect(d.answer?.status, d.webhookId).toBe(202);
    expect(d.answer?.json.workflowId, d.webhookId).toBe(d.workflowId);
    expect(typeof d.answer?.json.runId, d.webhookId).toBe('string');
  }
  const ids = deliveries.map((d) => d.workflowId);
  // Every run ends: an audit row per credential (the unowned ones escalate at once: retryWindow 0s).
  const missing = async () => {
    const r = await h.db.query<{ workflow_id: string }>(
      'SELECT DISTINCT workflow_id FROM killswitch_audit WHERE workflow_id = ANY($1)',
      [ids],
    );
    const have = new Set(r.rows.map((x) => x.workflow_id));
    return ids.filter((id) => !have.has(id));
  };
  const deadline = Date.now() + 240_000;
  for (let left = await missing(); left.length > 0; left = await missing()) {
    if (Date.now() > deadline) {
      const states = await Promise.all(
        left.slice(0, 5).map(async (id) => {
          const d = await client.workflow
            .getHandle(id)
            .describe()
            .catch((e: Error) => ({ status: { name: e.message }, raw: {} }) as never);
          const pending = ((d as any).raw?.pendingActivities ?? []).map(
            (a: any) => `${a.activityType?.name} attempt ${a.attempt}: ${a.lastFailure?.message ?? ''}`,
          );
          return `${id}: ${(d as any).status?.name} ${pending.join('; ')}`;
        }),
      );
      throw new Error(
        `${left.length} of ${ids.length} credentials have no audit row after 240 s:\n${states.join('\n')}`,
      );
    }
    await sleep(1000);
  }
  const rows = await h.db.query<{ workflow_id: string; run_id: string; outcome: string }>(
    'SELECT workflow_id, run_id, outcome FROM killswitch_audit WHERE workflow_id = ANY($1)',
    [ids],
  );
  const byWf = new Map<string, Array<{ run_id: string; outcome: string }>>();
  for (const r of rows.rows) byWf.set(r.workflow_id, [...(byWf.get(r.workflow_id) ?? []), r]);
  const executions = new Map<string, string[]>();
  for await (const e of client.workflow.list({
    query: `WorkflowType = 'killSwitch' AND StartTime > '${new Date(Date.now() - 30 * 60_000).toISOString()}'`,
  })) {
    executions.set(e.workflowId, [...(executions.get(e.workflowId) ?? []), e.runId]);
  }
  // The Slack message follows the audit row (and Slack's 1 message/s per channel paces a burst): wait,
  // bounded, until every run has shown its message before counting them.
  const slackDeadline = Date.now() + 90_000;
  while (deliveries.some((d) => messagesOf(d.workflowId) === 0) && Date.now() < slackDeadline)
    await sleep(500);
  const problems: string[] = [];
  for (const d of deliveries) {
    const audit = byWf.get(d.workflowId) ?? [];
    const runs = executions.get(d.workflowId) ?? [];
    if (runs.length !== 1) problems.push(`${d.webhookId}: ${runs.length} runs`);
    if (audit.length !== 1) problems.push(`${d.webhookId}: ${audit.length} audit rows`);
    else {
      if (audit[0]!.outcome !== d.expect)
        problems.push(`${d.webhookId}: outcome ${audit[0]!.outcome}, expected ${d.expect}`);
      if (audit[0]!.run_id !== d.answer?.json.runId)
        problems.push(
          `${d.webhookId}: answered run ${d.answer?.json.runId}, audited run ${audit[0]!.run_id}`,
        );
    }
    const { alerts, triggers } = pagesOf(d.workflowId);
    const messages = messagesOf(d.workflowId);
    if (d.expect === 'escalated' && alerts !== 1) problems.push(`${d.webhookId}: ${alerts} PagerDuty alerts`);
    if (d.expect === 'contained' && triggers !== 0) problems.push(`${d.webhookId}: ${triggers} pages`);
    // A trigger is at least once: a kill between PagerDuty's answer and the activity's completion
    // sends it again with the same dedup key, which PagerDuty groups into the open alert.
    if (triggers > 1 + kills) problems.push(`${d.webhookId}: ${triggers} triggers for ${kills} kills`);
    if (messages !== 1) problems.push(`${d.webhookId}: ${messages} Slack messages`);
  }
  expect(problems).toEqual([]);
}

/** PagerDuty alerts and trigger events per dedup key (the workflow id). */
const triggersOf = (h: Harness) => (wf: string) => ({
  alerts: h.pagerduty.alertsOpened(wf),
  triggers: h.pagerduty.events().filter((e) => e.dedup_key === wf && e.event_action === 'trigger').length,
});
/** Slack run messages (chat.postMessage) naming the run. */
const postsOf = (h: Harness) => (wf: string) =>
  h.slack
    .messageRequests()
    .filter(
      (m) =>
        m.method === 'chat.postMessage' &&
        (m.text.includes(wf) || JSON.stringify(m.blocks ?? '').includes(wf)),
    ).length;

describe('a killed ingress loses nothing and doubles nothing', () => {
  let h: Harness;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-intake-crash-'));
  beforeAll(async () => {
    h = await startHarness({
      // A system of its own with a breaker sized for the burst: the mass-leak breaker counts leaks per
      // system name in the shared test database, and would otherwise hold these runs for a human.
      config: {
        systems: [
          {
            name: 'crash-db',
            kind: 'postgres',
            adminUrlEnv: 'OWNED_DB_ADMIN_URL',
            roles: ['crash_*'],
            breaker: { threshold: 10_000, window: '5m' },
          },
        ],
      },
    });
  });
  afterAll(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the ingress process, SIGKILLed three times during a burst of 240, then re-sent to', async () => {
    const deliveries = await plan(h, h.keys, 240, `ing${rand()}`);
    const inventoryFile = path.join(dir, 'inventory.json');
    writeFileSync(inventoryFile, JSON.stringify(h.inventoryDoc));
    const port = await freePort();
    const env = {
      ...h.env,
      LOG_LEVEL: 'info',
      INVENTORY_FILE: inventoryFile,
      PORT: String(port),
      HOST: '127.0.0.1',
    };
    const { proc: ingress, outputs } = await burstWithKills({
      entry: 'api/server.ts',
      env,
      readyText: 'ingress listening',
      port,
      secret: h.webhookSecret,
      deliveries,
      concurrency: 24,
      killsAt: [40, 110, 180],
    });
    outputs.push(ingress.output());
    await ingress.kill();

    await expectExactlyOnce(h, h.client, deliveries, 0, triggersOf(h), postsOf(h)); // the worker is never killed: one trigger each
    for (const d of deliveries.filter((x) => x.role))
      expect(await h.owned.loginFails(d.role!, d.password!)).toBe('28P01');
    const passwords = deliveries.flatMap((d) => (d.password ? [d.password] : []));
    expectNowhere(
      await secretPlaces(
        h,
        deliveries.filter((d) => d.password).map((d) => d.workflowId),
        { 'ingress log': outputs.join('\n') },
      ),
      passwords,
    );
  });

  it('the whole npm start tree (ingress, worker, Temporal dev server), SIGKILLed twice during a burst of 120', async () => {
    const dataDir = path.join(dir, 'data');
    const inventoryFile = path.join(dir, 'inventory-start.json');
    writeFileSync(inventoryFile, JSON.stringify(h.inventoryDoc));
    const [port, devPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    const taskQueue = `kill-switch-crash-${rand()}`;
    const env: Record<string, string> = {
      ...h.env,
      LOG_LEVEL: 'info',
      INVENTORY_FILE: inventoryFile,
      PORT: String(port),
      HOST: '127.0.0.1',
      KILLSWITCH_DATA_DIR: dataDir,
      TEMPORAL_DEV_PORT: String(devPort),
      TEMPORAL_DEV_UI_PORT: String(uiPort),
      TEMPORAL_TASK_QUEUE: taskQueue,
    };
    delete env.TEMPORAL_ADDRESS; // npm start runs its own dev server, killed with it
    const config = loadConfig(env);
    const keys = createServerKeys(config.serverKey!);
    const deliveries = await plan(h, keys, 120, `all${rand()}`);

    const { proc: tree, outputs } = await burstWithKills({
      entry: 'scripts/start.ts',
      env,
      readyText: 'kill switch ready',
      port,
      secret: h.webhookSecret,
      deliveries,
      concurrency: 16,
      killsAt: [30, 75],
    });

    const connection = await Connection.connect({ address: `127.0.0.1:${devPort}` });
    try {
      const client = new Client({
        connection,
        dataConverter: killSwitchDataConverter(codecFromConfig(config, keys)),
      });
      await expectExactlyOnce(h, client, deliveries, 2, triggersOf(h), postsOf(h));
    } finally {
      await connection.close();
      outputs.push(tree.output());
      await tree.kill();
    }
    for (const d of deliveries.filter((x) => x.role))
      expect(await h.owned.loginFails(d.role!, d.password!)).toBe('28P01');
    const passwords = deliveries.flatMap((d) => (d.password ? [d.password] : []));
    const log = outputs.join('\n');
    for (const p of passwords) expect(log.includes(p), 'secret in the npm start log').toBe(false);
  });
});

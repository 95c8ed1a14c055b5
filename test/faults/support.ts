/**
 * What the fault scenarios share: bounded waiting, the worker as its own OS process (so it can be
 * killed for real), a PostgreSQL role held locked so a rotation stops mid-way on cue, a loopback
 * admin API that accepts connections and never answers, and counters read from the run's history.
 */
import { activityCountsOf, type ActivityCount } from '../helpers/history';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { PROJECT_ROOT } from '../../tools/temporal-cli';
import type { Harness } from '../helpers/harness';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something truthy; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 30_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (let i = 0; i < Math.ceil(timeoutMs / everyMs) + 1; i++) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) break;
    await sleep(everyMs);
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`,
  );
}

export interface WorkerProcess {
  child: ChildProcess;
  /** Resolves once the worker logged "worker running". */
  ready: Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the process wrote (its logs), for the secret-hygiene checks. */
  output(): string;
  /** SIGTERM (drains) then SIGKILL after 15 s; resolves when it is gone. */
  stop(): Promise<void>;
}

/**
 * The production worker entry (`worker/index.ts`) as a separate OS process, configured exactly like
 * the harness's in-process worker: same environment, the same config document as INVENTORY_FILE.
 */
export function spawnWorker(h: Harness, env: Record<string, string> = {}): WorkerProcess {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-fault-worker-'));
  const inventoryFile = path.join(dir, 'inventory.json');
  writeFileSync(inventoryFile, JSON.stringify(h.inventoryDoc));
  // One process (node with tsx's loader, not the tsx CLI, which would fork a child): SIGKILL hits the worker itself.
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/index.ts'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...h.env, LOG_LEVEL: 'info', INVENTORY_FILE: inventoryFile, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let onReady: () => void = () => undefined;
  let onFail: (e: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onFail = reject;
  });
  const timer = setTimeout(
    () => onFail(new Error(`worker not running after 90 s:\n${out.slice(-2000)}`)),
    90_000,
  );
  const take = (chunk: Buffer) => {
    out += chunk.toString();
    if (out.includes('"msg":"worker running"')) {
      clearTimeout(timer);
      onReady();
    }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      onFail(
        new Error(`worker exited (code ${code}, signal ${signal}) before running:\n${out.slice(-2000)}`),
      );
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, signal });
    }),
  );
  ready.catch(() => undefined);
  return {
    child,
    ready,
    exited,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Holds a row lock on the role's pg_authid tuple: an open transaction that altered the same role.
 * The provider's `ALTER ROLE … PASSWORD` then waits until `release()` rolls it back: a rotation
 * stopped mid-way, on cue.
 */
export async function holdRole(role: string): Promise<{ release(): Promise<void> }> {
  const o = inject('owned');
  const c = new pg.Client({ host: o.socketDir, port: o.port, user: 'postgres', database: 'postgres' });
  await c.connect();
  return heldInTransaction(c, `ALTER ROLE ${c.escapeIdentifier(role)} CONNECTION LIMIT -1`);
}

/** Runs `sql` in a transaction left open on `c` (its locks held) until `release()` rolls it back. */
export async function heldInTransaction(c: pg.Client, sql: string): Promise<{ release(): Promise<void> }> {
  await c.query('BEGIN');
  await c.query(sql);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await c.query('ROLLBACK');
      await c.end();
    },
  };
}

/** The backend of `adminRole` blocked in `ALTER ROLE` on a lock, once there is one. */
export async function blockedAlter(h: Harness): Promise<number | undefined> {
  const r = await h.owned.su.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock' AND query ILIKE 'ALTER ROLE%'`,
    [h.owned.adminRole],
  );
  return r.rows[0]?.pid;
}

/** How many backends of `adminRole` are blocked in `ALTER ROLE` on a lock. */
export async function blockedAlters(h: Harness): Promise<number> {
  const r = await h.owned.su.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock' AND query ILIKE 'ALTER ROLE%'`,
    [h.owned.adminRole],
  );
  return r.rows[0]?.n ?? 0;
}

export type { ActivityCount } from '../helpers/history';

/** Per activity type (regular or local), from the run's history: the proof that something was (not) done twice. */
export async function activityCounts(
  h: Harness,
  workflowId: string,
  runId?: string,
): Promise<Record<string, ActivityCount>> {
  return activityCountsOf(await h.client.workflow.getHandle(workflowId, runId).fetchHistory());
}

/** How many executions (runs) Temporal has of this workflow id. */
export async function executionsOf(h: Harness, workflowId: string): Promise<number> {
  let n = 0;
  for await (const _ of h.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) n += 1;
  return n;
}

export async function auditRows(h: Harness, workflowId: string): Promise<Array<Record<string, any>>> {
  return (
    await h.db.query<Record<string, any>>(
      'SELECT * FROM killswitch_audit WHERE workflow_id = $1 ORDER BY recorded_at',
      [workflowId],
    )
  ).rows;
}

/** The run's Slack messages (the fake's current state of each message that names the run). */
export function slackMessagesOf(h: Harness, workflowId: string) {
  return h.slack
    .messages()
    .filter((m) => m.text.includes(workflowId) || JSON.stringify(m.blocks).includes(workflowId));
}

export interface Blackhole {
  url: string;
  /** Connections accepted (each request attempt opens one or reuses one; see `requests`). */
  connections: number;
  /** Request heads seen (method and path, when), never answered. */
  requests: Array<{ head: string; at: number }>;
  close(): Promise<void>;
}

/** An admin API that accepts every connection, reads the request and never answers: a hung provider. */
export async function startBlackhole(): Promise<Blackhole> {
  const sockets = new Set<net.Socket>();
  const state = { connections: 0, requests: [] as Blackhole['requests'] };
  const server = net.createServer((s) => {
    state.connections += 1;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      for (const m of d.toString('latin1').matchAll(/^(GET|POST|PUT|PATCH|DELETE|HEAD) (\S+) HTTP\/1\.1/gm))
        state.requests.push({ head: `${m[1]} ${m[2]}`, at: Date.now() });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
}

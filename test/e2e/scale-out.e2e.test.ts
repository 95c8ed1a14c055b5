/**
 * Scale out on one engine: two worker processes and two ingress processes (the production entry
 * points, each its own OS process, the ingresses on different ports) against one Temporal server
 * and one PostgreSQL database, under a burst of 40 detections. Each detection goes to a random
 * ingress; some go to both at once, with the same delivery id (a sender that fans out) or with two
 * ids (two scanners). Proof: per credential one run, one rotation, one audit row, the password dead;
 * and both workers did work (the worker identities in the runs' histories).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../tools/temporal-cli';
import { leakedUrl, rand, signedHeaders, startHarness, type Harness } from '../helpers/harness';
import { activityCounts, auditRows, executionsOf, spawnWorker, type WorkerProcess } from '../faults/support';

interface IngressProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The production ingress entry (api/server.ts) as its own OS process on `port`, once it listens. */
async function spawnIngress(h: Harness, inventoryFile: string): Promise<IngressProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'api/server.ts'], {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      ...h.env,
      LOG_LEVEL: 'info',
      LOG_FORMAT: 'json',
      INVENTORY_FILE: inventoryFile,
      PORT: String(port),
      HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`ingress not listening after 90 s:\n${out.slice(-2000)}`)),
      90_000,
    );
    const take = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('"msg":"ingress listening"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ingress exited (${code}) before listening:\n${out.slice(-2000)}`));
    });
  });
  return {
    child,
    url: `http://127.0.0.1:${port}`,
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

async function deliver(ingress: IngressProcess, secret: string, body: string, webhookId: string) {
  const res = await fetch(`${ingress.url}/webhooks/generic`, {
    method: 'POST',
    headers: signedHeaders(secret, body, { webhookId }),
    body,
  });
  return {
    status: res.status,
    json: (await res.json()) as { workflowId: string; runId: string; duplicate?: boolean },
  };
}

let h: Harness;
let dir: string;
const workers: WorkerProcess[] = [];
const ingresses: IngressProcess[] = [];

beforeAll(async () => {
  h = await startHarness({ worker: false });
  dir = mkdtempSync(path.join(os.tmpdir(), 'ks-scale-out-'));
  const inventoryFile = path.join(dir, 'inventory.json');
  writeFileSync(inventoryFile, JSON.stringify(h.inventoryDoc));
  workers.push(spawnWorker(h), spawnWorker(h));
  ingresses.push(await spawnIngress(h, inventoryFile), await spawnIngress(h, inventoryFile));
  await Promise.all(workers.map((w) => w.ready));
});

afterAll(async () => {
  await Promise.all([...ingresses, ...workers].map((p) => p.stop()));
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('2 workers and 2 ingress processes share a burst of 40 detections: one run, one rotation, one audit row each', async () => {
  expect(new Set(ingresses.map((i) => i.url)).size).toBe(2);
  const credentials: Array<{ role: string; password: string }> = [];
  for (let i = 0; i < 40; i++) credentials.push(await h.owned.createRole());
  const pick = () => ingresses[Math.floor(Math.random() * ingresses.length)]!;

  const sends = credentials.map(async ({ role, password }, i) => {
    const body = JSON.stringify({
      scanner: 'scale-out',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
      location: { repository: 'acme/scale', file: '.env', line: i + 1 },
    });
    const id = () => `msg_scale_${rand()}${rand()}`;
    if (i % 4 === 0) {
      // One delivery reaching both ingresses at once (a sender fanning out, or a retry racing).
      const webhookId = id();
      return Promise.all(ingresses.map((ing) => deliver(ing, h.webhookSecret, body, webhookId)));
    }
    if (i % 4 === 1) {
      // The same leak reported twice (two deliveries), one to each ingress.
      return Promise.all(ingresses.map((ing) => deliver(ing, h.webhookSecret, body, id())));
    }
    return [await deliver(pick(), h.webhookSecret, body, id())];
  });
  const answers = await Promise.all(sends);

  const runs = answers.map((forOne, i) => {
    for (const a of forOne) expect(a.status, `credential ${i}`).toBe(202);
    const ids = new Set(forOne.map((a) => `${a.json.workflowId}/${a.json.runId}`));
    expect(ids.size, `credential ${i}: every answer names the one run`).toBe(1);
    return forOne[0]!.json;
  });
  expect(new Set(runs.map((r) => r.workflowId)).size).toBe(40);

  const results = await Promise.all(runs.map((r) => h.client.workflow.getHandle(r.workflowId).result()));
  expect(results.map((r) => r.outcome)).toEqual(runs.map(() => 'contained'));

  const identities = new Map<string, number>();
  for (const [i, r] of runs.entries()) {
    expect(await executionsOf(h, r.workflowId), `credential ${i}: one run`).toBe(1);
    const counts = await activityCounts(h, r.workflowId);
    expect(counts.revokeCredential, `credential ${i}: one rotation`).toMatchObject({
      scheduled: 1,
      maxAttempt: 1,
    });
    const rows = await auditRows(h, r.workflowId);
    expect(rows, `credential ${i}: one audit row`).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'contained', run_id: r.runId });
    const { role, password } = credentials[i]!;
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const history = await h.client.workflow.getHandle(r.workflowId).fetchHistory();
    for (const e of history.events ?? []) {
      const identity =
        e.workflowTaskStartedEventAttributes?.identity ?? e.activityTaskStartedEventAttributes?.identity;
      if (identity) identities.set(identity, (identities.get(identity) ?? 0) + 1);
    }
  }

  // Both worker processes took tasks, and nobody else did (the SDK's identity is <pid>@<host>).
  const workerOf = (identity: string) => workers.findIndex((w) => identity.startsWith(`${w.child.pid}@`));
  expect([...identities.keys()].filter((id) => workerOf(id) === -1)).toEqual([]);
  const perWorker = workers.map((_, w) =>
    [...identities.entries()].filter(([id]) => workerOf(id) === w).reduce((n, [, c]) => n + c, 0),
  );
  for (const [w, n] of perWorker.entries())
    expect(n, `worker ${w} took tasks (${perWorker.join(' / ')})`).toBeGreaterThan(0);
});

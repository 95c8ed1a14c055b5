/**
 * `npm run bench`: N signed detections through the whole kill switch (ingress → Temporal workflow →
 * revoke → expire sessions → verify dead → audit → Slack fake) against real PostgreSQL roles and
 * Redis ACL users made for the run, plus an inline baseline that makes the same provider calls
 * without Temporal. Figures come from the timestamps the system records (audit table) and the
 * ingress's 202 answers; results go to results/bench-<timestamp>.json, results/latest.json and
 * results/latest.svg. Everything it creates is removed at the end, also on Ctrl-C or failure.
 *
 *   npm run bench -- --n 1000 --concurrency 32 --mix postgres=70,redis=30 --sqlite both
 *   npm run bench -- --rate 20 --duration 60 --sqlite wal      # paced, open loop
 *   npm run bench -- --n 400 --sqlite wal --workers 1,2,1,2     # contained/s per worker count, interleaved
 *
 * Besides latency it reports the cost of a containment: CPU ms per contained credential for each
 * process (/proc), persistence requests per run (the dev server's Prometheus counters) and the
 * shape of a run's history (events, workflow tasks), next to the inline baseline's CPU.
 *
 * The worker and the ingress run as in production: compiled JavaScript and the prebuilt workflow
 * bundle (`npm run build`, which the bench runs first). WORKER_* variables (lib/config.ts) in the
 * environment are passed to the worker process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  closeSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { Redis } from 'ioredis';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { stringify as toYaml } from 'yaml';
import type { CredentialRef } from '../contracts/detection';
import { parseInventory } from '../lib/inventory';
import { createServerKeys, newServerKey, newWebhookSecret } from '../lib/keys';
import { resolveTemporalCli, PROJECT_ROOT } from '../tools/temporal-cli';
import { freePort, startDevServer, type DevServer } from '../tools/temporal-dev';
import { createProviderRegistry, type ProviderRegistry } from '../activities/providers';
import { startScramCluster, type ScramCluster } from '../test/helpers/pg-cluster';
import { startSlackFake, type SlackFake } from '../test/fakes/slack';
import { startPagerDutyFake, type PagerDutyFake } from '../test/fakes/pagerduty';
import { cdfSvg } from './bench-chart';
import {
  CpuMeter,
  counterDelta,
  historyShape,
  postmasterPid,
  scrapeCounters,
  type HistoryShape,
  type Measured,
} from './bench-measure';

// ---------------------------------------------------------------------------------------------
// Options

type SqliteMode = 'default' | 'wal';

interface Options {
  /** burst: N detections, `concurrency` in flight (closed loop); paced: `rate`/s for `duration` s on a fixed schedule (open loop). */
  mode: 'burst' | 'paced';
  n: number;
  concurrency: number;
  /** Paced mode: detections per second, and for how many seconds. */
  rate: number | undefined;
  durationSeconds: number | undefined;
  mix: { postgres: number; redis: number };
  sqlite: SqliteMode[];
  baseline: boolean;
  slackPerSecond: number;
  pagerDutyPerMinute: number;
  slackDrainSeconds: number;
  timeoutSeconds: number;
  outDir: string;
  auditUrl: string;
  redisUrl: string;
  label: string | undefined;
  /** Write V8 CPU profiles of the worker and the ingress here (node --cpu-prof). */
  profileDir: string | undefined;
  /** Keep the work folder (processes' logs, inventory) instead of removing it. */
  keep: boolean;
  /** Node flags for the worker process, replacing the production ones (WORKER_NODE_FLAGS in package.json). */
  workerNodeFlags: string[] | undefined;
  /** Worker processes per scenario, one scenario (per SQLite mode) for each entry, in this order. */
  workers: number[];
  /** Outbound events: `json` subscriptions (every event type, signed) to receivers on loopback. */
  subscriptions: number;
  /** How many of them are dead: they accept the connection and never answer for `deadSeconds` after the load starts, then answer 200. */
  deadSubscriptions: number;
  deadSeconds: number;
  /** The subscriptions' circuit-breaker threshold (unset: the table's default). */
  subscriptionFailureThreshold: number | undefined;
  /** After the load, how long the bench waits for every queued row to be delivered. */
  outboundWaitSeconds: number;
}

/**
 * Calls `fn(i, at)` for i < count: paced, each at its scheduled time (open loop: never waiting for
 * earlier calls; `lag` gets how late each started); burst, `concurrency` loops one after another.
 */
async function drive(
  count: number,
  opts: Pick<Options, 'mode' | 'rate' | 'concurrency'>,
  fn: (i: number, at: number) => Promise<void>,
  lag?: number[],
): Promise<void> {
  if (opts.mode === 'paced') {
    const interval = 1000 / opts.rate!;
    const first = performance.now() + 20;
    const inFlight: Array<Promise<void>> = [];
    for (let i = 0; i < count; i++) {
      const at = first + i * interval;
      const wait = at - performance.now();
      if (wait > 1) await sleep(wait);
      lag?.push(Math.max(0, performance.now() - at));
      inFlight.push(fn(i, at));
    }
    await Promise.all(inFlight);
    return;
  }
  let next = 0;
  const loop = async () => {
    for (let i = next++; i < count; i = next++) await fn(i, performance.now());
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, count) }, loop));
}

function usage(): never {
  process.stderr
    .write(`usage: npm run bench -- [--n 1000 [--concurrency 32] | --rate R --duration S] [--mix postgres=70,redis=30]
       [--sqlite default|wal|both] [--no-baseline] [--slack-per-second 1] [--pagerduty-per-minute 120]
       [--slack-drain-seconds 90] [--timeout-seconds 300] [--out results] [--label text] [--profile dir] [--keep] [--worker-node-flags "--flag ..."]
       [--subscriptions 0 [--dead-subscriptions 0 [--dead-seconds 120]] [--subscription-failure-threshold T] [--outbound-wait-seconds 600]]
       [--workers 1[,2,...]]
env: BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres), BENCH_REDIS_URL
     (default redis://127.0.0.1:6379), WORKER_* (passed to the worker)
--worker-node-flags: node flags for the worker instead of the production ones ("" for none)
--workers N[,M...]: N worker processes on the one task queue (default 1); a list runs one scenario per
       entry, in order (repeat entries to interleave: 1,2,1,2), and reports contained/s per worker count
--keep: keep the work folder (the worker's, ingress's and dev server's logs)
--profile dir: V8 CPU profiles (.cpuprofile) of the worker and the ingress, written when they stop
--subscriptions N: N outbound json subscriptions (every event type, signed) to receivers the bench
       starts on loopback; --dead-subscriptions K of them accept connections and never answer for the
       first --dead-seconds S of the load, then answer 200; after the load the bench waits (at most
       --outbound-wait-seconds) until every queued event is delivered and reports what each received
modes: burst (default): N detections, --concurrency in flight; paced: --rate R detections per second
       (decimals allowed) for --duration S seconds on a fixed schedule, open loop
`);
  process.exit(2);
}

export function parseArgs(argv: string[], env = process.env): Options {
  const o: Options = {
    mode: 'burst',
    n: 1000,
    concurrency: 32,
    rate: undefined,
    durationSeconds: undefined,
    mix: { postgres: 70, redis: 30 },
    sqlite: ['default', 'wal'],
    baseline: true,
    slackPerSecond: 1,
    pagerDutyPerMinute: 120,
    slackDrainSeconds: 90,
    timeoutSeconds: 300,
    outDir: path.join(PROJECT_ROOT, 'results'),
    auditUrl: env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    redisUrl: env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    label: undefined,
    profileDir: undefined,
    keep: false,
    workerNodeFlags: undefined,
    workers: [1],
    subscriptions: 0,
    deadSubscriptions: 0,
    deadSeconds: 120,
    subscriptionFailureThreshold: undefined,
    outboundWaitSeconds: 600,
  };
  const int = (v: string | undefined, name: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] =
      a.includes('=') && a.startsWith('--')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined];
    const value = () => inline ?? argv[++i];
    seen.add(flag!);
    switch (flag) {
      case '--n':
        o.n = int(value(), '--n', 1, 100_000);
        break;
      case '--concurrency':
        o.concurrency = int(value(), '--concurrency', 1, 1000);
        break;
      case '--rate': {
        const v = value();
        const r = Number(v);
        if (v === undefined || v.trim() === '' || !Number.isFinite(r) || r <= 0 || r > 1000)
          throw new Error('--rate must be a number of detections per second above 0, at most 1000');
        o.rate = r;
        break;
      }
      case '--duration':
        o.durationSeconds = int(value(), '--duration', 1, 3600);
        break;
      case '--mix': {
        const m = { postgres: 0, redis: 0 };
        for (const part of (value() ?? '').split(',')) {
          const [k, v] = part.split('=');
          if (k !== 'postgres' && k !== 'redis')
            throw new Error(`--mix: unknown system kind "${k}" (postgres, redis)`);
          m[k] = int(v, `--mix ${k}`, 0, 1_000_000);
        }
        if (m.postgres + m.redis === 0) throw new Error('--mix: at least one weight must be positive');
        o.mix = m;
        break;
      }
      case '--sqlite': {
        const v = value();
        if (v === 'both') o.sqlite = ['default', 'wal'];
        else if (v === 'default' || v === 'wal') o.sqlite = [v];
        else throw new Error('--sqlite must be default, wal or both');
        break;
      }
      case '--no-baseline':
        o.baseline = false;
        break;
      case '--slack-per-second':
        o.slackPerSecond = int(value(), '--slack-per-second', 0, 10_000);
        break;
      case '--pagerduty-per-minute':
        o.pagerDutyPerMinute = int(value(), '--pagerduty-per-minute', 0, 1_000_000);
        break;
      case '--slack-drain-seconds':
        o.slackDrainSeconds = int(value(), '--slack-drain-seconds', 0, 3600);
        break;
      case '--timeout-seconds':
        o.timeoutSeconds = int(value(), '--timeout-seconds', 10, 3600);
        break;
      case '--out':
        o.outDir = path.resolve(value() ?? usage());
        break;
      case '--label':
        o.label = value();
        break;
      case '--worker-node-flags':
        o.workerNodeFlags = (value() ?? '').split(/\s+/).filter(Boolean);
        break;
      case '--workers':
        o.workers = String(value() ?? '')
          .split(',')
          .map((w) => int(w.trim(), '--workers (each count)', 1, 16));
        break;
      case '--keep':
        o.keep = true;
        break;
      case '--subscriptions':
        o.subscriptions = int(value(), '--subscriptions', 0, 100);
        break;
      case '--dead-subscriptions':
        o.deadSubscriptions = int(value(), '--dead-subscriptions', 0, 100);
        break;
      case '--dead-seconds':
        o.deadSeconds = int(value(), '--dead-seconds', 0, 3600);
        break;
      case '--subscription-failure-threshold':
        o.subscriptionFailureThreshold = int(value(), '--subscription-failure-threshold', 1, 1000);
        break;
      case '--outbound-wait-seconds':
        o.outboundWaitSeconds = int(value(), '--outbound-wait-seconds', 10, 7200);
        break;
      case '--profile':
        o.profileDir = path.resolve(value() ?? usage());
        break;
      case '--help':
      case '-h':
        usage();
        break;
      default:
        throw new Error(`unknown option ${a} (--help lists them)`);
    }
  }
  if (o.deadSubscriptions > o.subscriptions)
    throw new Error('--dead-subscriptions cannot exceed --subscriptions');
  if (
    o.subscriptions === 0 &&
    [
      '--dead-subscriptions',
      '--dead-seconds',
      '--subscription-failure-threshold',
      '--outbound-wait-seconds',
    ].some((f) => seen.has(f))
  )
    throw new Error(
      '--dead-subscriptions, --dead-seconds, --subscription-failure-threshold and --outbound-wait-seconds need --subscriptions',
    );
  if (seen.has('--rate') || seen.has('--duration')) {
    if (!seen.has('--rate')) throw new Error('--duration needs --rate (detections per second)');
    if (!seen.has('--duration')) throw new Error('--rate needs --duration (seconds)');
    if (seen.has('--n'))
      throw new Error('--n is for burst mode; in paced mode the count is --rate × --duration');
    if (seen.has('--concurrency'))
      throw new Error(
        '--concurrency is for burst mode; paced mode sends on a fixed schedule, however many are in flight',
      );
    o.mode = 'paced';
    o.n = Math.round(o.rate! * o.durationSeconds!);
    if (o.n < 1) throw new Error('--rate × --duration must be at least one detection');
    if (o.n > 100_000) throw new Error('--rate × --duration must be at most 100000 detections');
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
/** Every leaked value starts with this, so one search proves none reached a log. */
const SECRET_MARK = 'kspw';
const newPassword = () => `${SECRET_MARK}${randomBytes(18).toString('base64url')}`;

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export function stats(values: number[]) {
  const v = [...values].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    count: v.length,
    p50: r(percentile(v, 50)),
    p95: r(percentile(v, 95)),
    p99: r(percentile(v, 99)),
    max: r(v[v.length - 1] ?? NaN),
    mean: r(v.reduce((a, b) => a + b, 0) / (v.length || 1)),
  };
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

/** A progress bar on stderr (only when it is a terminal, else a line every few seconds). */
function progress(label: string, total: number) {
  const tty = process.stderr.isTTY;
  let last = 0;
  const t0 = Date.now();
  return {
    update(done: number, extra = '') {
      const now = Date.now();
      if (!tty && now - last < 5000 && done < total) return;
      last = now;
      const width = 30;
      const filled = Math.round((Math.min(done, total) / total) * width);
      const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${((now - t0) / 1000).toFixed(1)}s ${extra}`;
      process.stderr.write(tty ? `\r${line.padEnd(110)}` : `${line}\n`);
    },
    done() {
      if (tty) process.stderr.write('\n');
    },
  };
}

/** Peak resident set (VmHWM) and current RSS of a process, in MiB. */
function memoryOf(pid: number | undefined): { peakRssMiB: number; rssMiB: number } | null {
  if (!pid) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { peakRssMiB: Math.round(kb('VmHWM') / 102.4) / 10, rssMiB: Math.round(kb('VmRSS') / 102.4) / 10 };
  } catch {
    return null;
  }
}

/** SQLite's journal mode as the file header records it: bytes 18/19 are 2 in WAL mode, 1 otherwise. */
function sqliteJournalMode(file: string): string {
  try {
    const fd = openSync(file, 'r');
    const b = Buffer.alloc(20);
    readSync(fd, b, 0, 20, 0);
    closeSync(fd);
    return b[18] === 2 && b[19] === 2 ? 'wal' : 'delete (rollback journal)';
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup registry: everything created is undone in reverse order, on success, failure or Ctrl-C.

const cleanups: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];
let cleaning: Promise<void> | undefined;
function onCleanup(what: string, fn: () => Promise<unknown> | unknown) {
  cleanups.push({ what, fn });
}
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) {
      const c = cleanups.pop()!;
      try {
        await Promise.race([
          Promise.resolve(c.fn()),
          sleep(30_000).then(() => Promise.reject(new Error('timed out after 30 s'))),
        ]);
      } catch (err) {
        process.stderr.write(`cleanup: ${c.what} failed: ${(err as Error).message}\n`);
      }
    }
  })();
  return cleaning;
}

// ---------------------------------------------------------------------------------------------
// The owned systems: a password-enforcing PostgreSQL cluster and the machine's Redis.

interface Credential {
  kind: 'postgres' | 'redis';
  name: string;
  password: string;
  leakedUrl: string;
}

interface OwnedSystems {
  pg: ScramCluster;
  pgSu: pg.Client;
  pgAdminUrl: string;
  redis: Redis;
  redisAdminUrl: string;
  /** Creates `count` credentials of the mix, named with `tag`; each is removed at cleanup. */
  create(count: number, tag: string, mix: Options['mix']): Promise<Credential[]>;
}

async function ownedSystems(opts: Options): Promise<OwnedSystems> {
  // The machine's PostgreSQL trusts every local login, so a leaked password would still "work"
  // after rotation and verify-dead could never pass: the roles live in a throwaway cluster that
  // enforces scram-sha-256 (the tests' owned system), started on a free loopback port.
  const cluster = await startScramCluster();
  onCleanup('stop the throwaway PostgreSQL cluster', () => cluster.stop());
  const su = new pg.Client(cluster.superuserConfig);
  await su.connect();
  onCleanup('close the cluster connection', () => su.end());
  const adminRole = `ksbench_admin_${runId}`;
  const adminPassword = randomBytes(18).toString('hex');
  await su.query(`CREATE ROLE ${adminRole} LOGIN CREATEROLE PASSWORD '${adminPassword}'`);
  await su.query(`GRANT pg_signal_backend TO ${adminRole}`);
  const pgAdminUrl = `postgres://${adminRole}:${adminPassword}@${cluster.host}:${cluster.port}/postgres`;

  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  onCleanup('close the Redis connection', () => redis.quit());
  const redisUsers: string[] = [];
  onCleanup('delete the Redis ACL users made for the run', async () => {
    for (let i = 0; i < redisUsers.length; i += 200)
      await redis.call('ACL', ['DELUSER', ...redisUsers.slice(i, i + 200)]);
  });

  return {
    pg: cluster,
    pgSu: su,
    pgAdminUrl,
    redis,
    redisAdminUrl: opts.redisUrl,
    async create(count, tag, mix) {
      const total = mix.postgres + mix.redis;
      const creds: Credential[] = [];
      for (let i = 0; i < count; i++) {
        // Deterministic interleaving that honours the mix at every prefix of the sequence.
        const kind: Credential['kind'] =
          Math.floor(((i + 1) * mix.postgres) / total) > Math.floor((i * mix.postgres) / total)
            ? 'postgres'
            : 'redis';
        const name = `ksb_${runId}_${tag}_${i}`;
        const password = newPassword();
        const leakedUrl =
          kind === 'postgres'
            ? `postgres://${name}:${encodeURIComponent(password)}@${cluster.host}:${cluster.port}/postgres`
            : `redis://${name}:${encodeURIComponent(password)}@127.0.0.1:${new URL(opts.redisUrl).port || 6379}`;
        creds.push({ kind, name, password, leakedUrl });
      }
      const roles = creds.filter((c) => c.kind === 'postgres');
      for (let i = 0; i < roles.length; i += 100) {
        const batch = roles.slice(i, i + 100);
        await su.query(
          batch
            .map(
              (c) =>
                `CREATE ROLE ${su.escapeIdentifier(c.name)} LOGIN PASSWORD ${su.escapeLiteral(c.password)};`,
            )
            .join('\n'),
        );
      }
      const users = creds.filter((c) => c.kind === 'redis');
      const pipe = redis.pipeline();
      for (const c of users) {
        redisUsers.push(c.name);
        pipe.call('ACL', ['SETUSER', c.name, 'reset', 'on', `>${c.password}`, '+ping']);
      }
      if (users.length) {
        const r = await pipe.exec();
        const failed = (r ?? []).find(([err]) => err);
        if (failed)
          throw new Error(
            `creating Redis users failed: ${(failed[0] as Error).message.split(SECRET_MARK)[0]}`,
          );
      }
      return creds;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Outbound events: json subscriptions to receivers on loopback, some of them dead for a while.

/** A webhook receiver: counts each event once (by its webhook-id) and checks its HMAC signature. */
interface Receiver {
  name: string;
  url: string;
  secret: string;
  dead: boolean;
  /** Epoch ms from which a dead receiver answers (Infinity until the load starts). */
  aliveAt: number;
  /** First time each event id was answered with 200. */
  received: Map<string, number>;
  duplicates: number;
  badSignatures: number;
  /** Requests a dead receiver held without answering. */
  hung: number;
  close(): Promise<void>;
}

async function startReceiver(name: string, dead: boolean): Promise<Receiver> {
  const r: Receiver = {
    name,
    url: '',
    secret: newWebhookSecret(),
    dead,
    aliveAt: dead ? Infinity : 0,
    received: new Map(),
    duplicates: 0,
    badSignatures: 0,
    hung: 0,
    close: () => Promise.resolve(),
  };
  const server = http.createServer((req, res) => {
    if (Date.now() < r.aliveAt) {
      // Down: the connection is accepted and the request read, but no answer ever comes (the
      // sender's timeout ends the attempt).
      r.hung++;
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const id = String(req.headers['webhook-id'] ?? '');
      const want = `sha256=${createHmac('sha256', r.secret).update(body).digest('hex')}`;
      const got = String(req.headers['x-webhook-signature'] ?? '');
      if (got.length !== want.length || !timingSafeEqual(Buffer.from(got), Buffer.from(want))) {
        r.badSignatures++;
        res.writeHead(401).end();
        return;
      }
      if (r.received.has(id)) r.duplicates++;
      else r.received.set(id, Date.now());
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  r.close = () =>
    new Promise<void>((done) => {
      server.closeAllConnections();
      server.close(() => done());
    });
  return r;
}

interface SubscriptionFigures {
  name: string;
  dead: boolean;
  /** Events the run's subscriptions were offered (every stored event but subscription.*). */
  events: number;
  received: number;
  duplicates: number;
  badSignatures: number;
  hungRequests: number;
  queued: number;
  delivered: number;
  pending: number;
  rejected: number;
  /** Events never queued for it (it was switched off when they were emitted). */
  notQueued: number;
  /** Events it did not receive that its queue still holds (pending: delivered once it is re-enabled). */
  held: number;
  /** Events it did not receive and never will: not queued, or rejected. */
  lost: number;
  attempts: number;
  failedAttempts: number;
  switchedOff: string | null;
  /** A dead one: from when it answered again to its last new event; null if it never caught up. */
  caughtUpAfterSeconds: number | null;
}

interface OutboundFigures {
  subscriptions: number;
  dead: number;
  deadSeconds: number;
  failureThreshold: number | null;
  /** From the end of the load until every queued row was delivered (or the wait ended). */
  drainedAfterLoadSeconds: number;
  drained: boolean;
  perSubscription: SubscriptionFigures[];
  received: number;
  held: number;
  lost: number;
  secretInLogs: boolean;
  line: string;
}

interface OutboundBench {
  receivers: Receiver[];
  ids: string[];
  /** The dead receivers start their down time now (the load starts). */
  startClock(): void;
  /** Waits until every subscription's queue is delivered (or it is switched off), then reports. */
  finish(db: pg.Client, loadEndedAt: number): Promise<OutboundFigures>;
}

/**
 * Starts the receivers and inserts their subscriptions (direct SQL, as the admin API would store
 * them: the secret sealed with the server key for `subscription:<id>`). The worker delivers to
 * them because OUTBOUND_ALLOW_HOSTS permits 127.0.0.1.
 */
async function startOutbound(opts: Options, db: pg.Client, serverKey: string): Promise<OutboundBench> {
  const keys = createServerKeys(serverKey);
  const receivers: Receiver[] = [];
  for (let i = 0; i < opts.subscriptions; i++) {
    const dead = i >= opts.subscriptions - opts.deadSubscriptions;
    receivers.push(await startReceiver(`bench-${dead ? 'dead' : 'live'}-${i}`, dead));
  }
  onCleanup('stop the outbound receivers', () => Promise.all(receivers.map((r) => r.close())));
  const ids: string[] = [];
  for (const r of receivers) {
    const id = `sub_bench_${runId}_${ids.length}`;
    await db.query(
      `INSERT INTO killswitch_subscriptions (id, name, format, url, secret_sealed, event_types, failure_threshold)
       VALUES ($1, $2, 'json', $3, $4, $5, COALESCE($6::int, 10))`,
      [
        id,
        r.name,
        r.url,
        keys.encrypt(r.secret, `subscription:${id}`),
        ['*'],
        opts.subscriptionFailureThreshold ?? null,
      ],
    );
    ids.push(id);
  }
  const r1 = (x: number) => Math.round(x * 10) / 10;

  return {
    receivers,
    ids,
    startClock() {
      const at = Date.now() + opts.deadSeconds * 1000;
      for (const r of receivers) if (r.dead) r.aliveAt = at;
    },
    async finish(dbc, loadEndedAt) {
      interface QueueRow {
        subscription_id: string;
        queued: number;
        delivered: number;
        pending: number;
        rejected: number;
        is_active: boolean;
        disabled_reason: string | null;
      }
      const queues = async () =>
        (
          await dbc.query<QueueRow>(
            `SELECT s.id AS subscription_id, s.is_active, s.disabled_reason,
                    count(q.event_id)::int AS queued,
                    count(*) FILTER (WHERE q.state = 'delivered')::int AS delivered,
                    count(*) FILTER (WHERE q.state = 'pending')::int AS pending,
                    count(*) FILTER (WHERE q.state = 'rejected')::int AS rejected
               FROM killswitch_subscriptions s LEFT JOIN killswitch_event_queue q ON q.subscription_id = s.id
              WHERE s.id = ANY($1) GROUP BY s.id`,
            [ids],
          )
        ).rows;
      // Every queued row delivered, rejected, or left on a switched-off subscription (no delivery
      // run will take it) ends the wait; so does the bound.
      const waitUntil = loadEndedAt + opts.outboundWaitSeconds * 1000;
      const bar = progress('outbound delivered %', 100);
      let rows = await queues();
      let drained = false;
      for (;;) {
        rows = await queues();
        const pending = rows.reduce((a, q) => a + (q.is_active ? q.pending : 0), 0);
        const queued = rows.reduce((a, q) => a + q.queued, 0);
        const delivered = rows.reduce((a, q) => a + q.delivered, 0);
        bar.update(
          queued ? Math.floor((100 * delivered) / queued) : 100,
          `delivered ${delivered}/${queued}, pending ${pending}${rows.some((q) => !q.is_active) ? ', a subscription is switched off' : ''}`,
        );
        if (pending === 0) {
          drained = true;
          break;
        }
        if (Date.now() > waitUntil) break;
        await sleep(1000);
      }
      bar.done();
      const drainedAfterLoadSeconds = r1((Date.now() - loadEndedAt) / 1000);
      const expected = (
        await dbc.query<{ id: string }>(
          `SELECT id FROM killswitch_events WHERE type NOT LIKE 'subscription.%'`,
        )
      ).rows.map((e) => e.id);
      const attempts = (
        await dbc.query<{ subscription_id: string; n: number; failed: number }>(
          `SELECT subscription_id, count(*)::int AS n, count(*) FILTER (WHERE NOT success)::int AS failed
             FROM killswitch_event_deliveries WHERE subscription_id = ANY($1) GROUP BY subscription_id`,
          [ids],
        )
      ).rows;
      const queueOf = async (id: string) =>
        new Map(
          (
            await dbc.query<{ event_id: string; state: string }>(
              'SELECT event_id, state FROM killswitch_event_queue WHERE subscription_id = $1',
              [id],
            )
          ).rows.map((q) => [q.event_id, q.state]),
        );
      const perSubscription: SubscriptionFigures[] = [];
      for (const [i, r] of receivers.entries()) {
        const id = ids[i]!;
        const q = rows.find((x) => x.subscription_id === id);
        const a = attempts.find((x) => x.subscription_id === id);
        const mine = await queueOf(id);
        const missing = expected.filter((e) => !r.received.has(e));
        const held = missing.filter((e) => mine.get(e) === 'pending').length;
        const lost = missing.length - held;
        const lastNew = r.received.size ? Math.max(...r.received.values()) : NaN;
        perSubscription.push({
          name: r.name,
          dead: r.dead,
          events: expected.length,
          received: expected.filter((e) => r.received.has(e)).length,
          duplicates: r.duplicates,
          badSignatures: r.badSignatures,
          hungRequests: r.hung,
          queued: q?.queued ?? 0,
          delivered: q?.delivered ?? 0,
          pending: q?.pending ?? 0,
          rejected: q?.rejected ?? 0,
          notQueued: expected.filter((e) => !mine.has(e)).length,
          held,
          lost,
          attempts: a?.n ?? 0,
          failedAttempts: a?.failed ?? 0,
          switchedOff: q && !q.is_active ? (q.disabled_reason ?? 'switched off') : null,
          caughtUpAfterSeconds:
            r.dead && missing.length === 0 && Number.isFinite(lastNew)
              ? r1((lastNew - r.aliveAt) / 1000)
              : null,
        });
      }
      const received = perSubscription.reduce((n, p) => n + p.received, 0);
      const lost = perSubscription.reduce((n, p) => n + p.lost, 0);
      const held = perSubscription.reduce((n, p) => n + p.held, 0);
      const sum = (k: 'queued' | 'delivered' | 'pending' | 'rejected') =>
        perSubscription.reduce((n, p) => n + p[k], 0);
      const deadOnes = perSubscription.filter((p) => p.dead);
      const line =
        `outbound: ${opts.subscriptions} subscriptions (${opts.deadSubscriptions} dead ${opts.deadSeconds} s` +
        `${opts.subscriptionFailureThreshold ? `, breaker at ${opts.subscriptionFailureThreshold}` : ''}): ` +
        `${expected.length} events each; received ${received}/${expected.length * receivers.length}; ` +
        `queued ${sum('queued')}, delivered ${sum('delivered')}, pending ${sum('pending')}, rejected ${sum('rejected')}; ` +
        `${held ? `held undelivered ${held}; ` : ''}lost ${lost}; ${drained ? 'drained' : 'NOT drained'} ${drainedAfterLoadSeconds} s after the load` +
        deadOnes
          .map((p) =>
            p.caughtUpAfterSeconds !== null
              ? `; ${p.name} caught up ${p.caughtUpAfterSeconds} s after it came back`
              : `; ${p.name} never caught up${p.switchedOff ? ` (switched off by its circuit breaker after ${p.failedAttempts} failed attempts)` : ''}`,
          )
          .join('');
      return {
        subscriptions: opts.subscriptions,
        dead: opts.deadSubscriptions,
        deadSeconds: opts.deadSeconds,
        failureThreshold: opts.subscriptionFailureThreshold ?? null,
        drainedAfterLoadSeconds,
        drained,
        perSubscription,
        received,
        held,
        lost,
        secretInLogs: false,
        line,
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The kill switch under test: its own Temporal dev server, audit database, worker and ingress.

/** The processes that make up the system under test: their sum is the CPU total per containment. */
const SYSTEM_PROCESSES = [
  'devServer',
  'worker',
  'ingress',
  'auditPostgres',
  'ownedPostgres',
  'redis',
] as const;
const PERSISTENCE_COUNTERS = ['persistence_requests', 'visibility_persistence_requests'];
const HISTORY_SAMPLE = 20;
/** The worker's production node flags: those of `npm run start:worker` (the Dockerfile's CMD has the same). */
const WORKER_NODE_FLAGS: string[] = (() => {
  const script =
    (
      JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts['start:worker'] ?? '';
  const words = script.split(/\s+/);
  return words
    .slice(words.indexOf('node') + 1, words.indexOf('dist/worker/index.js'))
    .filter((w) => w.startsWith('--'));
})();

interface CpuFigures {
  windowSeconds: number;
  windowClosedWhen: string;
  /** CPU ms per contained credential, per process; `total` is the system under test (not the driver). */
  perContainedMs: Record<string, number>;
  windowMs: Record<string, number>;
  /** CPU ms per second in the 2 quiet seconds before the window. */
  idleMsPerSecond: Record<string, number>;
}

interface Scenario {
  mode: Options['mode'];
  rate: number | null;
  durationSeconds: number | null;
  sqlite: SqliteMode;
  /** Worker processes on the task queue (--workers). */
  workers: number;
  pragmas: Record<string, string>;
  journalModeOnDisk: string;
  n: number;
  concurrency: number;
  outcomes: Record<string, number>;
  ack: ReturnType<typeof stats>;
  ackStatus: Record<string, number>;
  timeToContain: ReturnType<typeof stats>;
  /** From when the detection was sent (paced mode: its scheduled time) to verified dead. */
  timeToContainFromSend: ReturnType<typeof stats>;
  /** Paced mode: how late the driver started each send after its scheduled time. */
  sendLag: ReturnType<typeof stats> | null;
  /** 202 answers that named no workflow id (not in timeToContainFromSend). */
  unmatchedAcks: number;
  cpu: CpuFigures;
  persistence: {
    requestsPerRun: number;
    visibilityRequestsPerRun: number | null;
    requests: number;
    byOperationPerRun: Record<string, number>;
  } | null;
  history: HistoryShape | null;
  timeToRevoke: ReturnType<typeof stats>;
  byKind: Record<string, ReturnType<typeof stats>>;
  /** contained per second between the first receipt and the last verified death. */
  containedPerSecond: number;
  offeredPerSecond: number;
  wallSeconds: number;
  slack: {
    perSecondLimit: number;
    /** Runs given a message of their own. */
    messages: number;
    /** Burst digest messages, and how many times they were posted or updated. */
    digests: number;
    digestRenders: number;
    outcomeShown: number;
    rateLimited429: number;
    lagAfterVerifiedDeadMs: ReturnType<typeof stats> | null;
    lastOutcomeShownAfterLastDeathSeconds: number | null;
    /** Runs whose workflow completed without its Slack message showing the outcome. */
    outcomeLost: number;
    /** Runs still open (retrying Slack) when the drain window closed. */
    stillRetrying: number;
  };
  pagerduty: { events: number; rateLimited429: number };
  memory: {
    worker: ReturnType<typeof memoryOf>;
    ingress: ReturnType<typeof memoryOf>;
    temporal: ReturnType<typeof memoryOf>;
  };
  workerTuning: Record<string, string>;
  secretMarkInLogs: boolean;
  /** --subscriptions: what each outbound receiver got, and whether a dead one caught up. */
  outbound: OutboundFigures | null;
  /** Raw samples for the chart (ms). */
  samples: { ack: number[]; contain: number[] };
}

/**
 * The worker and the ingress run what production runs (the Dockerfile, `npm run start:worker`):
 * the compiled code and the prebuilt workflow bundle of `npm run build`, rebuilt here so they are
 * the sources' (the bundle only when a file it is made from changed).
 */
function buildForProduction(): void {
  const built = spawnSync('npm', ['run', '-s', 'build'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`npm run build failed:\n${built.stderr}${built.stdout}`);
  process.stderr.write(built.stdout);
}

function spawnNode(
  entry: string,
  env: Record<string, string>,
  logFile: string,
  profileDir?: string,
  nodeFlags: string[] = [],
): ChildProcess {
  // Plain `node dist/<entry>.js`: the compiled entry in this one process, so its pid is the one to measure.
  const flags = profileDir
    ? [
        '--cpu-prof',
        `--cpu-prof-dir=${profileDir}`,
        `--cpu-prof-name=${path.basename(entry, '.js')}-${Date.now()}.cpuprofile`,
      ]
    : [];
  const child = spawn(process.execPath, [...nodeFlags, ...flags, entry], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  return child;
}

async function stopChild(child: ChildProcess, name: string): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => {
    process.stderr.write(`${name} did not stop within 20 s; killing it\n`);
    child.kill('SIGKILL');
  }, 20_000);
  await done;
  clearTimeout(t);
}

async function runScenario(
  opts: Options,
  owned: OwnedSystems,
  mode: SqliteMode,
  workDir: string,
  workers = 1,
  /** Which scenario of the run this is: names its credentials, database and folder apart from the others. */
  index = 0,
): Promise<Scenario> {
  const tag = `t${mode === 'wal' ? 'w' : 'd'}${index || ''}`;
  const dir = path.join(workDir, index ? `${mode}-${index}` : mode);
  mkdirSync(dir, { recursive: true });
  const scenarioCleanups = cleanups.length;

  // Fresh audit database on the machine's PostgreSQL.
  const dbName = `ks_bench_${runId}_${mode}${index ? `_${index}` : ''}`;
  const root = new pg.Client({ connectionString: opts.auditUrl });
  await root.connect();
  await root.query(`CREATE DATABASE ${dbName}`);
  onCleanup(`drop the audit database ${dbName}`, async () => {
    await root.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await root.end();
  });
  const auditUrlObj = new URL(opts.auditUrl);
  auditUrlObj.pathname = `/${dbName}`;
  const auditUrl = auditUrlObj.toString();

  // Fakes with Slack's and PagerDuty's documented rate limits.
  const slack: SlackFake = await startSlackFake(
    'xoxb-bench-token',
    opts.slackPerSecond ? { postMessagePerSecond: opts.slackPerSecond, updatePerMinute: 50 } : {},
  );
  const pagerduty: PagerDutyFake = await startPagerDutyFake(
    undefined,
    opts.pagerDutyPerMinute ? { perMinute: opts.pagerDutyPerMinute } : {},
  );
  onCleanup('stop the Slack and PagerDuty fakes', () => Promise.all([slack.close(), pagerduty.close()]));

  // Temporal dev server with a db file, default SQLite settings or WAL.
  const pragmas: Record<string, string> =
    mode === 'wal' ? { journal_mode: 'wal', synchronous: 'normal' } : {};
  const dbFile = path.join(dir, 'temporal.db');
  const dev: DevServer = await startDevServer({
    cli: resolveTemporalCli({ log: (m) => process.stderr.write(`${m}\n`) }),
    headless: true,
    dbFile,
    logFile: path.join(dir, 'temporal.log'),
    sqlitePragmas: pragmas,
    metricsPort: await freePort(),
  });
  onCleanup('stop the Temporal dev server', () => dev.stop());

  // The owned credentials of this scenario.
  const creds = await owned.create(opts.n, tag, opts.mix);

  // Inventory and environment shared by the worker and the ingress.
  const inventory = {
    systems: [
      {
        name: 'bench-pg',
        kind: 'postgres',
        adminUrlEnv: 'BENCH_PG_ADMIN_URL',
        roles: ['ksb_*'],
        hosts: ['127.0.0.1'],
        // Pacing and the mass-leak breaker would (by design) hold a burst of 1,000 leaks of one
        // system for a human; the benchmark measures the machinery, so both are opened wide.
        limits: { concurrency: 32, perMinute: 100_000 },
        breaker: { threshold: 100_000, window: '5m' },
      },
      {
        name: 'bench-redis',
        kind: 'redis',
        adminUrlEnv: 'BENCH_REDIS_ADMIN_URL',
        users: ['ksb_*'],
        hosts: ['127.0.0.1'],
        persist: 'none',
        limits: { concurrency: 32, perMinute: 100_000 },
        breaker: { threshold: 100_000, window: '5m' },
      },
    ],
    sources: { generic: { rateLimit: { perMinute: 1_000_000 } } },
    policy: { retryWindow: '0s' },
  };
  parseInventory(inventory); // fail here, not in a child
  const inventoryFile = path.join(dir, 'inventory.yaml');
  writeFileSync(inventoryFile, toYaml(inventory));
  const webhookSecret = newWebhookSecret();
  const port = await freePort();
  const taskQueue = `kill-switch-bench-${runId}`;
  const workerTuning = Object.fromEntries(
    Object.entries(process.env).filter(([k, v]) => k.startsWith('WORKER_') && v) as Array<[string, string]>,
  );
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: String(port),
    TEMPORAL_ADDRESS: dev.address,
    TEMPORAL_TASK_QUEUE: taskQueue,
    TEMPORAL_CONNECT_TIMEOUT_MS: '10000',
    DATABASE_URL: auditUrl,
    KILLSWITCH_SERVER_KEY: newServerKey(),
    GENERIC_WEBHOOK_SECRETS: webhookSecret,
    INVENTORY_FILE: inventoryFile,
    BENCH_PG_ADMIN_URL: owned.pgAdminUrl,
    BENCH_REDIS_ADMIN_URL: owned.redisAdminUrl,
    SLACK_BOT_TOKEN: slack.token,
    SLACK_SIGNING_SECRET: slack.signingSecret,
    SLACK_CHANNEL: '#security-incidents',
    SLACK_API_URL: slack.apiUrl,
    PAGERDUTY_ROUTING_KEY: pagerduty.routingKey,
    PAGERDUTY_EVENTS_URL: pagerduty.url,
    // Outbound receivers (--subscriptions) listen on loopback over http: allow-listed, as an
    // operator would for a destination inside the network.
    OUTBOUND_ALLOW_HOSTS: '127.0.0.1',
    ...workerTuning,
  };
  const workerLog = path.join(dir, 'worker.log');
  const ingressLog = path.join(dir, 'ingress.log');
  // The ingress first: it runs the migrations on the fresh database before the worker does.
  const ingress = spawnNode('dist/api/server.js', env, ingressLog, opts.profileDir);
  onCleanup('stop the ingress', () => stopChild(ingress, 'ingress'));
  const base = `http://127.0.0.1:${port}`;
  const readyBy = Date.now() + 60_000;
  for (;;) {
    if (ingress.exitCode !== null)
      throw new Error(`the ingress exited (${ingress.exitCode}); see ${ingressLog}`);
    const ok = await fetch(`${base}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > readyBy) throw new Error(`the ingress was not ready within 60 s; see ${ingressLog}`);
    await sleep(200);
  }
  // --workers N: N worker processes on the one task queue (worker.log, worker-2.log, ...).
  const workerLogs = Array.from({ length: workers }, (_, i) =>
    i === 0 ? workerLog : path.join(dir, `worker-${i + 1}.log`),
  );
  const workerProcs = workerLogs.map((log, i) => {
    const child = spawnNode(
      'dist/worker/index.js',
      env,
      log,
      opts.profileDir,
      opts.workerNodeFlags ?? WORKER_NODE_FLAGS,
    );
    onCleanup(`stop the worker ${i + 1}`, () => stopChild(child, `worker ${i + 1}`));
    return child;
  });
  const worker = workerProcs[0]!;
  const conn = await Connection.connect({ address: dev.address });
  onCleanup('close the Temporal connection', () => conn.close());
  // Every worker polls both task queue types (pollers are told apart by their identity, <pid>@<host>).
  const pollingWorkers = (pollers: Array<{ identity?: string | null }> | null | undefined) =>
    new Set((pollers ?? []).map((p) => p.identity)).size;
  for (;;) {
    for (const [i, w] of workerProcs.entries())
      if (w.exitCode !== null)
        throw new Error(`the worker ${i + 1} exited (${w.exitCode}); see ${workerLogs[i]}`);
    const d = await conn.workflowService
      .describeTaskQueue({ namespace: 'default', taskQueue: { name: taskQueue }, taskQueueType: 1 })
      .catch(() => null);
    const a = await conn.workflowService
      .describeTaskQueue({ namespace: 'default', taskQueue: { name: taskQueue }, taskQueueType: 2 })
      .catch(() => null);
    if (pollingWorkers(d?.pollers) >= workers && pollingWorkers(a?.pollers) >= workers) break;
    if (Date.now() > readyBy + 60_000)
      throw new Error(`not all ${workers} workers polled within 120 s; see ${workerLogs.join(', ')}`);
    await sleep(250);
  }
  // Figures of a worker that bundled its workflow code at start (a stale build) are not production's.
  for (const log of workerLogs)
    for (
      let i = 0;
      !readFileSync(log, 'utf8').includes('"msg":"running the prebuilt workflow bundle"');
      i++
    ) {
      if (i >= 20)
        throw new Error(
          `the worker did not run the prebuilt workflow bundle (a workflow file changed after the build?); see ${log}`,
        );
      await sleep(100);
    }

  // What the window measures: CPU of each process (from /proc), the dev server's persistence
  // counters, and the audit database's backends (pg_stat_activity, polled while the window runs).
  const wh = new Webhook(webhookSecret);
  const acks: number[] = [];
  const ackStatus: Record<string, number> = {};
  const audit = new pg.Client({ connectionString: auditUrl });
  await audit.connect();
  onCleanup('close the audit connection', () => audit.end());
  const outbound = opts.subscriptions ? await startOutbound(opts, audit, env.KILLSWITCH_SERVER_KEY!) : null;
  const auditBackends = async () =>
    (
      await audit.query<{ pid: number }>(
        'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
      )
    ).rows.map((r) => r.pid);
  const redisPid = Number(/process_id:(\d+)/.exec(await owned.redis.info('server'))?.[1]) || undefined;
  const measured: Record<string, Measured> = {
    devServer: { kind: 'tree', pid: dev.process.pid },
    worker:
      workers === 1
        ? { kind: 'tree', pid: worker.pid }
        : { kind: 'pids', list: async () => workerProcs.flatMap((w) => (w.pid ? [w.pid] : [])) },
    ingress: { kind: 'tree', pid: ingress.pid },
    auditPostgres: { kind: 'pids', list: auditBackends },
    ownedPostgres: { kind: 'tree', pid: postmasterPid(path.join(owned.pg.socketDir, 'data')) },
    redis: { kind: 'tree', pid: redisPid },
    driver: { kind: 'self' },
  };
  // Two quiet seconds first: what each process burns doing nothing, to read the window against.
  const idleMeter = new CpuMeter(measured);
  await idleMeter.begin();
  await sleep(2000);
  const idle = await idleMeter.end();
  const metricsBefore = dev.metricsUrl ? await scrapeCounters(dev.metricsUrl, PERSISTENCE_COUNTERS) : null;
  const cpuMeter = new CpuMeter(measured);
  await cpuMeter.begin();

  // The load: a burst (N deliveries, `concurrency` in flight) or a fixed schedule (`rate`/s, open
  // loop: each send starts at its scheduled time whether or not earlier ones were answered, and its
  // ack and time to contain count from that scheduled time, so a slow answer cannot hide a queue).
  const bar = progress(`${mode.padEnd(7)} contained`, opts.n);
  let acked = 0;
  outbound?.startClock();
  const sendStart = Date.now();
  let lastAckAt = sendStart;
  /** Epoch ms each run's detection was sent (paced: scheduled), by the workflow id the ingress answered. */
  const sentAt = new Map<string, number>();
  const sendLag: number[] = [];
  let unmatchedAcks = 0;
  const send = async (i: number, from: number) => {
    const c = creds[i]!;
    const body = JSON.stringify({
      credentialType: c.kind === 'postgres' ? 'postgres_password' : 'redis_password',
      secret: c.leakedUrl,
      scanner: 'bench',
      findingId: `${runId}-${tag}-${i}`,
      location: { repository: 'acme/bench', file: `config/${i}.env`, line: 1 },
    });
    const id = `msg_${runId}_${tag}_${i}`;
    const ts = new Date();
    let status = 'error';
    let workflowId: string | undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const r = await fetch(`${base}/webhooks/generic`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'webhook-id': id,
            'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
            'webhook-signature': wh.sign(id, ts, body),
          },
          body,
          signal: AbortSignal.timeout(30_000),
        });
        const text = await r.text();
        status = String(r.status);
        if (r.status === 202) {
          try {
            const b = JSON.parse(text) as { workflowId?: string; runs?: Array<{ workflowId?: string }> };
            workflowId = b.workflowId ?? b.runs?.[0]?.workflowId;
          } catch {
            // an answer without a JSON body: the run is still measured from receipt
          }
        }
        if (r.status !== 503 && r.status !== 429) break;
      } catch (err) {
        status = (err as Error).name;
      }
      await sleep(500 * (attempt + 1));
    }
    acks.push(performance.now() - from);
    ackStatus[status] = (ackStatus[status] ?? 0) + 1;
    if (workflowId) sentAt.set(workflowId, performance.timeOrigin + from);
    else if (status === '202') unmatchedAcks++;
    acked++;
    lastAckAt = Date.now();
  };
  const senders = drive(creds.length, opts, send, sendLag);

  // Wait for every audit row (bounded), with the bar.
  const deadline = Date.now() + ((opts.durationSeconds ?? 0) + opts.timeoutSeconds) * 1000;
  let audited = 0;
  let sendDone = false;
  void senders.then(() => (sendDone = true));
  while (Date.now() < deadline) {
    audited = Number((await audit.query('SELECT count(*)::int AS n FROM killswitch_audit')).rows[0].n);
    await cpuMeter.poll();
    bar.update(audited, `acked ${acked}`);
    if (sendDone && audited >= opts.n) break;
    await sleep(250);
  }
  bar.done();
  const loadEndedAt = Date.now();
  await Promise.race([senders, sleep(1000)]);
  if (audited < opts.n)
    process.stderr.write(
      `warning: only ${audited}/${opts.n} runs recorded an outcome within ${opts.timeoutSeconds} s\n`,
    );
  // Kill-switch runs only: a subscription's delivery run (deliverEvents) stays open while its
  // destination is down or for a minute of idleness, and is reported by the outbound figures.
  const openRunsQuery = `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running' AND WorkflowType != 'deliverEvents'`;
  // The window closes when the last run has closed (what a run does after its audit row, its
  // notifications, is part of its cost), at most 60 s after the last audit row.
  const openRuns = async () =>
    conn.workflowService
      .countWorkflowExecutions({
        namespace: 'default',
        query: openRunsQuery,
      })
      .then(
        (r) => Number(r.count ?? 0),
        () => NaN,
      );
  const closeBy = Date.now() + 60_000;
  let stillOpen = await openRuns();
  while (stillOpen !== 0 && Date.now() < closeBy) {
    await cpuMeter.poll();
    await sleep(250);
    stillOpen = await openRuns();
  }
  const cpuWindow = await cpuMeter.end();
  const metricsAfter = dev.metricsUrl ? await scrapeCounters(dev.metricsUrl, PERSISTENCE_COUNTERS) : null;

  const rows = (
    await audit.query<{
      workflow_id: string;
      outcome: string;
      owning_system: string | null;
      received_at: Date;
      revoked_at: Date | null;
      verified_dead_at: Date | null;
      recorded_at: Date;
    }>(
      'SELECT workflow_id, outcome, owning_system, received_at, revoked_at, verified_dead_at, recorded_at FROM killswitch_audit',
    )
  ).rows;
  const outcomes: Record<string, number> = {};
  for (const r of rows) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
  const contained = rows.filter((r) => r.outcome === 'contained' && r.verified_dead_at);
  const contain = contained.map((r) => r.verified_dead_at!.getTime() - r.received_at.getTime());
  const revoke = contained
    .filter((r) => r.revoked_at)
    .map((r) => r.revoked_at!.getTime() - r.received_at.getTime());
  const fromSend = contained
    .filter((r) => sentAt.has(r.workflow_id))
    .map((r) => r.verified_dead_at!.getTime() - sentAt.get(r.workflow_id)!);

  // Cost per contained credential: CPU per process, persistence requests, history shape.
  const per = (x: number) => (contained.length ? Math.round((x / contained.length) * 10) / 10 : NaN);
  const r1 = (x: number) => Math.round(x * 10) / 10;
  const systemMs = SYSTEM_PROCESSES.reduce((a, k) => a + cpuWindow.ms[k]!, 0);
  const cpu: CpuFigures = {
    windowSeconds: r1(cpuWindow.seconds),
    windowClosedWhen:
      stillOpen === 0
        ? 'every run closed'
        : `60 s after the last audit row, ${Number.isNaN(stillOpen) ? 'unknown' : stillOpen} runs still open`,
    perContainedMs: {
      ...Object.fromEntries(Object.entries(cpuWindow.ms).map(([k, v]) => [k, per(v)])),
      total: per(systemMs),
    },
    windowMs: {
      ...Object.fromEntries(Object.entries(cpuWindow.ms).map(([k, v]) => [k, Math.round(v)])),
      total: Math.round(systemMs),
    },
    idleMsPerSecond: Object.fromEntries(Object.entries(idle.ms).map(([k, v]) => [k, r1(v / idle.seconds)])),
  };
  const persisted = counterDelta(metricsBefore, metricsAfter, 'persistence_requests');
  const visibility = counterDelta(metricsBefore, metricsAfter, 'visibility_persistence_requests');
  const persistence = persisted
    ? {
        requestsPerRun: per(persisted.total),
        visibilityRequestsPerRun: visibility ? per(visibility.total) : null,
        requests: persisted.total,
        byOperationPerRun: Object.fromEntries(
          Object.entries(persisted.byOperation)
            .sort((a, b) => b[1] - a[1])
            .map(([op, v]) => [op, per(v)] as const)
            .filter(([, v]) => v > 0),
        ),
      }
    : null;
  const history = await historyShape(
    new Client({ connection: conn }),
    contained.map((r) => r.workflow_id),
    HISTORY_SAMPLE,
  );

  const byKind: Record<string, ReturnType<typeof stats>> = {};
  for (const sys of ['bench-pg', 'bench-redis']) {
    const v = contained
      .filter((r) => r.owning_system === sys)
      .map((r) => r.verified_dead_at!.getTime() - r.received_at.getTime());
    if (v.length) byKind[sys] = stats(v);
  }
  const firstReceived = Math.min(...rows.map((r) => r.received_at.getTime()));
  const lastDead = Math.max(...contained.map((r) => r.verified_dead_at!.getTime()));
  const containedPerSecond = contained.length / Math.max(0.001, (lastDead - firstReceived) / 1000);

  // Slack: how far behind the people are, and whether any outcome never reached them.
  const deadAt = new Map(contained.map((r) => [r.workflow_id, r.verified_dead_at!.getTime()]));
  const wfOf = (text: string) => {
    const m = /\/workflows\/([^/]+)\//.exec(text);
    return m ? decodeURIComponent(m[1]!) : undefined;
  };
  /**
   * When each contained run's outcome became visible in the channel: its own message showing
   * "contained", or (a run folded into a burst digest) the first digest render whose contained
   * count includes it, the digest's contained lines taken in the order the kill switch recorded them.
   */
  const outcomeShownAt = async () => {
    const shown = new Map<string, number>();
    const digestCounts = new Map<string, Array<{ at: number; n: number }>>();
    for (const m of slack.messageRequests()) {
      if (m.text.startsWith(':zap: Burst digest:')) {
        const n = Number(/(?:: |, )(\d+) contained/.exec(m.text)?.[1] ?? 0);
        const list = digestCounts.get(m.ts!) ?? [];
        list.push({ at: m.at, n });
        digestCounts.set(m.ts!, list);
        continue;
      }
      if (!m.text.startsWith(':white_check_mark: Leaked credential contained')) continue;
      const wf = wfOf(m.text);
      if (wf && !shown.has(wf)) shown.set(wf, m.at);
    }
    if (digestCounts.size) {
      const items = await audit.query<{ workflow_id: string; ts: string | null }>(
        `SELECT i.workflow_id, d.ts FROM killswitch_slack_digest_items i JOIN killswitch_slack_digests d ON d.id = i.digest_id
          WHERE i.state = 'contained' ORDER BY i.changed_at, i.workflow_id`,
      );
      const rank = new Map<string, number>();
      for (const it of items.rows) {
        if (!it.ts) continue;
        const k = (rank.get(it.ts) ?? 0) + 1;
        rank.set(it.ts, k);
        const at = digestCounts.get(it.ts)?.find((c) => c.n >= k)?.at;
        if (at !== undefined && !shown.has(it.workflow_id)) shown.set(it.workflow_id, at);
      }
    }
    return {
      shown,
      digests: digestCounts.size,
      digestRenders: [...digestCounts.values()].reduce((a, l) => a + l.length, 0),
    };
  };
  const drainBy = Date.now() + opts.slackDrainSeconds * 1000;
  const slackBar = progress(`${mode.padEnd(7)} Slack    `, contained.length);
  let view = await outcomeShownAt();
  let shown = view.shown;
  let open = Infinity;
  while (Date.now() < drainBy) {
    view = await outcomeShownAt();
    shown = view.shown;
    const listed = await conn.workflowService
      .countWorkflowExecutions({
        namespace: 'default',
        query: openRunsQuery,
      })
      .catch(() => null);
    open = listed ? Number(listed.count ?? 0) : open;
    slackBar.update(shown.size, `runs still open ${Number.isFinite(open) ? open : '?'}`);
    if (shown.size >= contained.length || open === 0) break;
    await sleep(1000);
  }
  slackBar.done();
  view = await outcomeShownAt();
  shown = view.shown;
  const lags = [...shown.entries()].filter(([wf]) => deadAt.has(wf)).map(([wf, at]) => at - deadAt.get(wf)!);
  const runsWithMessage = new Set(
    slack
      .messageRequests()
      .filter((m) => !m.text.startsWith(':zap: Burst digest:'))
      .map((m) => wfOf(m.text))
      .filter(Boolean),
  ).size;
  const lostOrOpen = contained.filter((r) => !shown.has(r.workflow_id));
  let stillRetrying = 0;
  let outcomeLost = 0;
  for (const r of lostOrOpen) {
    const d = await conn.workflowService
      .describeWorkflowExecution({ namespace: 'default', execution: { workflowId: r.workflow_id } })
      .catch(() => null);
    if (d?.workflowExecutionInfo?.status === 1) stillRetrying++;
    else outcomeLost++;
  }

  // Peak memory, then stop the processes of this scenario.
  const memory = {
    worker: memoryOf(worker.pid),
    ingress: memoryOf(ingress.pid),
    temporal: memoryOf(dev.process.pid),
  };
  const outboundFigures = outbound ? await outbound.finish(audit, loadEndedAt) : null;
  const logs = [...workerLogs, ingressLog, path.join(dir, 'temporal.log')]
    .map((f) => (existsSync(f) ? readFileSync(f, 'utf8') : ''))
    .join('\n');
  if (outboundFigures)
    outboundFigures.secretInLogs = outbound!.receivers.some((r) => logs.includes(r.secret));
  const scenario: Scenario = {
    mode: opts.mode,
    rate: opts.rate ?? null,
    durationSeconds: opts.durationSeconds ?? null,
    sqlite: mode,
    workers,
    pragmas,
    journalModeOnDisk: sqliteJournalMode(dbFile),
    n: opts.n,
    concurrency: opts.concurrency,
    outcomes,
    ack: stats(acks),
    ackStatus,
    timeToContain: stats(contain),
    timeToContainFromSend: stats(fromSend),
    sendLag: opts.mode === 'paced' ? stats(sendLag) : null,
    unmatchedAcks,
    cpu,
    persistence,
    history,
    timeToRevoke: stats(revoke),
    byKind,
    containedPerSecond: Math.round(containedPerSecond * 10) / 10,
    offeredPerSecond:
      opts.mode === 'paced'
        ? opts.rate!
        : Math.round((opts.n / Math.max(0.001, (lastAckAt - sendStart) / 1000)) * 10) / 10,
    wallSeconds: Math.round((lastDead - firstReceived) / 100) / 10,
    slack: {
      perSecondLimit: opts.slackPerSecond,
      messages: runsWithMessage,
      digests: view.digests,
      digestRenders: view.digestRenders,
      outcomeShown: shown.size,
      rateLimited429: slack.rateLimited(),
      lagAfterVerifiedDeadMs: lags.length ? stats(lags) : null,
      lastOutcomeShownAfterLastDeathSeconds: shown.size
        ? Math.round((Math.max(...shown.values()) - lastDead) / 100) / 10
        : null,
      outcomeLost,
      stillRetrying,
    },
    pagerduty: { events: pagerduty.events().length, rateLimited429: pagerduty.rateLimited() },
    memory,
    workerTuning,
    secretMarkInLogs: logs.includes(SECRET_MARK),
    outbound: outboundFigures,
    samples: { ack: acks, contain },
  };
  // Undo this scenario's resources now (the owned systems stay for the next scenario).
  while (cleanups.length > scenarioCleanups) {
    const c = cleanups.pop()!;
    try {
      await c.fn();
    } catch (err) {
      process.stderr.write(`cleanup: ${c.what} failed: ${(err as Error).message}\n`);
    }
  }
  return scenario;
}

// ---------------------------------------------------------------------------------------------
// Baseline: the same provider calls, inline, no Temporal, no ingress, no audit.

async function runBaseline(opts: Options, owned: OwnedSystems) {
  const creds = await owned.create(opts.n, 'b', opts.mix);
  const inventory = parseInventory({
    systems: [
      {
        name: 'bench-pg',
        kind: 'postgres',
        adminUrlEnv: 'A',
        roles: ['ksb_*'],
        limits: { concurrency: 32, perMinute: 100_000 },
      },
      {
        name: 'bench-redis',
        kind: 'redis',
        adminUrlEnv: 'B',
        users: ['ksb_*'],
        persist: 'none',
        limits: { concurrency: 32, perMinute: 100_000 },
      },
    ],
  });
  const registry: ProviderRegistry = createProviderRegistry(inventory, {
    A: owned.pgAdminUrl,
    B: owned.redisAdminUrl,
  });
  onCleanup('close the baseline providers', () => registry.closeAll());
  const times: number[] = [];
  const failures: string[] = [];
  const bar = progress('baseline contained', creds.length);
  // The bench process's own CPU (process.cpuUsage) plus what the owned systems spent answering it.
  const redisPid = Number(/process_id:(\d+)/.exec(await owned.redis.info('server'))?.[1]) || undefined;
  const meter = new CpuMeter({
    process: { kind: 'self' },
    ownedPostgres: { kind: 'tree', pid: postmasterPid(path.join(owned.pg.socketDir, 'data')) },
    redis: { kind: 'tree', pid: redisPid },
  });
  await meter.begin();
  const t0 = Date.now();
  const containOne = async (i: number, from: number) => {
    const c = creds[i]!;
    const rt = registry.get(c.kind === 'postgres' ? 'bench-pg' : 'bench-redis')!;
    const ref: CredentialRef =
      c.kind === 'postgres' ? { role: c.name, host: '127.0.0.1' } : { user: c.name, host: '127.0.0.1' };
    const req = { workflowId: `baseline-${i}`, credentialRef: ref };
    try {
      await rt.provider.revoke({ ...req, mode: 'emergency', leakedValue: c.password });
      await rt.provider.expireSessions(req);
      const v = await rt.provider.verifyDead(req, c.password);
      if (!v.verifiedDeadAt) throw new Error(`not verified: ${v.method}`);
      times.push(performance.now() - from);
    } catch (err) {
      failures.push(((err as Error).message ?? '').split(SECRET_MARK)[0]!);
    }
    bar.update(times.length + failures.length);
  };
  // The same schedule as the measured runs (paced: open loop).
  await drive(creds.length, opts, containOne);
  bar.done();
  const wall = (Date.now() - t0) / 1000;
  const used = await meter.end();
  const per = (x: number) => (times.length ? Math.round((x / times.length) * 10) / 10 : NaN);
  const total = used.ms.process! + used.ms.ownedPostgres! + used.ms.redis!;
  return {
    cpuPerContainedMs: {
      process: per(used.ms.process!),
      ownedPostgres: per(used.ms.ownedPostgres!),
      redis: per(used.ms.redis!),
      total: per(total),
    },
    n: creds.length,
    contained: times.length,
    failures: failures.length,
    firstFailure: failures[0],
    timeToContain: stats(times),
    containedPerSecond: Math.round((times.length / Math.max(0.001, wall)) * 10) / 10,
    samples: times,
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    usage();
  }
  let interrupted = false;
  const onSignal = (sig: string) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\n${sig}: cleaning up (roles, users, databases, processes)…\n`);
    void cleanupAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const workDir = mkdtempSync(path.join(os.tmpdir(), 'ks-bench-'));
  if (!opts.keep)
    onCleanup('remove the work folder', () => rmSync(workDir, { recursive: true, force: true }));
  const started = new Date();
  const load =
    opts.mode === 'paced'
      ? `paced ${opts.rate}/s for ${opts.durationSeconds} s (N=${opts.n})`
      : `burst N=${opts.n}, concurrency ${opts.concurrency}`;
  process.stderr.write(
    `bench ${runId}: ${load}, mix postgres=${opts.mix.postgres},redis=${opts.mix.redis}, sqlite ${opts.sqlite.join('+')}; work folder ${workDir}\n`,
  );
  buildForProduction();
  const owned = await ownedSystems(opts);

  const scenarios: Scenario[] = [];
  // One name per scenario: the SQLite mode, and with --workers lists the worker count and the run's number.
  const keyOf = (sc: Scenario) =>
    opts.workers.length > 1 ? `${sc.sqlite}, ${sc.workers} workers #${scenarios.indexOf(sc) + 1}` : sc.sqlite;
  for (const workers of opts.workers)
    for (const mode of opts.sqlite)
      scenarios.push(await runScenario(opts, owned, mode, workDir, workers, scenarios.length));
  const baseline = opts.baseline ? await runBaseline(opts, owned) : null;

  const result = {
    benchmark: 'secret-kill-switch end-to-end containment',
    label: opts.label ?? null,
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
    },
    options: {
      mode: opts.mode,
      n: opts.n,
      concurrency: opts.mode === 'burst' ? opts.concurrency : null,
      rate: opts.rate ?? null,
      durationSeconds: opts.durationSeconds ?? null,
      mix: opts.mix,
      sqlite: opts.sqlite,
      workers: opts.workers,
      slackPerSecond: opts.slackPerSecond,
      pagerDutyPerMinute: opts.pagerDutyPerMinute,
      subscriptions: opts.subscriptions,
      deadSubscriptions: opts.subscriptions ? opts.deadSubscriptions : null,
      deadSeconds: opts.subscriptions ? opts.deadSeconds : null,
    },
    scenarios: scenarios.map(({ samples: _s, ...s }) => s),
    baseline: baseline ? (({ samples: _s, ...b }) => b)(baseline) : null,
    priceOfDurability: baseline
      ? Object.fromEntries(
          scenarios.map((s) => [
            keyOf(s),
            Math.round((s.timeToContain.p50 / baseline.timeToContain.p50) * 10) / 10,
          ]),
        )
      : null,
    /** CPU per contained credential, all processes of the system ÷ the inline baseline's (its process and the owned systems). */
    cpuRatio: baseline
      ? Object.fromEntries(
          scenarios.map((s) => [
            keyOf(s),
            Math.round((s.cpu.perContainedMs.total! / baseline.cpuPerContainedMs.total) * 10) / 10,
          ]),
        )
      : null,
  };

  mkdirSync(opts.outDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const json = `${JSON.stringify(result, null, 2)}\n`;
  writeFileSync(path.join(opts.outDir, `bench-${stamp}.json`), json);
  writeFileSync(path.join(opts.outDir, 'latest.json'), json);
  const colors = ['#d62728', '#1f77b4'];
  const svg = cdfSvg(`Kill switch, ${load}: CDF of latency`, [
    ...scenarios.map((s, i) => ({
      label: `time to contain (sqlite ${keyOf(s)})`,
      color: colors[i % 2]!,
      values: s.samples.contain,
    })),
    ...(baseline
      ? [{ label: 'inline baseline (no Temporal)', color: '#2ca02c', values: baseline.samples }]
      : []),
    ...scenarios.map((s, i) => ({
      label: `ingress 202 ack (sqlite ${keyOf(s)})`,
      color: colors[i % 2]!,
      values: s.samples.ack,
      dashed: true,
    })),
  ]);
  writeFileSync(path.join(opts.outDir, 'latest.svg'), svg);

  // The summary.
  const lines: string[] = [];
  lines.push(
    `\nSecret Kill Switch benchmark: ${load}, mix postgres ${opts.mix.postgres} / redis ${opts.mix.redis}`,
  );
  for (const s of scenarios) {
    lines.push(
      `\n[Temporal dev server SQLite: ${s.sqlite}; ${s.workers} worker process${s.workers === 1 ? '' : 'es'}; pragmas ${
        Object.keys(s.pragmas).length
          ? Object.entries(s.pragmas)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')
          : 'none (SQLite defaults: journal_mode=delete, synchronous=full)'
      }; on disk: ${s.journalModeOnDisk}]`,
    );
    lines.push(
      `  outcomes              ${JSON.stringify(s.outcomes)}   ingress answers ${JSON.stringify(s.ackStatus)}`,
    );
    const from = s.mode === 'paced' ? 'scheduled send' : 'send';
    lines.push(
      `  ingress 202 ack       p50 ${fmtMs(s.ack.p50)}  p95 ${fmtMs(s.ack.p95)}  p99 ${fmtMs(s.ack.p99)}  (${from} → answer)`,
    );
    if (s.sendLag)
      lines.push(
        `  driver send lag       p50 ${fmtMs(s.sendLag.p50)}  p99 ${fmtMs(s.sendLag.p99)}  max ${fmtMs(s.sendLag.max)}  (scheduled → actually sent)`,
      );
    lines.push(
      `  time to contain       p50 ${fmtMs(s.timeToContain.p50)}  p95 ${fmtMs(s.timeToContain.p95)}  p99 ${fmtMs(s.timeToContain.p99)}  (received → verified dead)`,
    );
    lines.push(
      `                        p50 ${fmtMs(s.timeToContainFromSend.p50)}  p95 ${fmtMs(s.timeToContainFromSend.p95)}  p99 ${fmtMs(s.timeToContainFromSend.p99)}  (${from} → verified dead, n=${s.timeToContainFromSend.count})`,
    );
    lines.push(
      `  time to revoke        p50 ${fmtMs(s.timeToRevoke.p50)}  p95 ${fmtMs(s.timeToRevoke.p95)}  p99 ${fmtMs(s.timeToRevoke.p99)}`,
    );
    for (const [k, v] of Object.entries(s.byKind))
      lines.push(
        `    ${k.padEnd(18)}  p50 ${fmtMs(v.p50)}  p95 ${fmtMs(v.p95)}  p99 ${fmtMs(v.p99)}  (n=${v.count})`,
      );
    lines.push(
      `  sustained             ${s.containedPerSecond} contained/s over ${s.wallSeconds} s (offered ${s.offeredPerSecond}/s)`,
    );
    const c = s.cpu.perContainedMs;
    const f = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '?' : v.toFixed(1));
    lines.push(
      `  CPU per contained     ${f(c.total)} ms = dev server ${f(c.devServer)} + worker ${f(c.worker)} + ingress ${f(c.ingress)} + audit PG backends ${f(c.auditPostgres)} + owned PG cluster ${f(c.ownedPostgres)} + redis ${f(c.redis)}; bench driver and fakes ${f(c.driver)}`,
    );
    const i = s.cpu.idleMsPerSecond;
    lines.push(
      `                        window ${s.cpu.windowSeconds} s, closed when ${s.cpu.windowClosedWhen}; idle before, ms/s: dev server ${f(i.devServer)}, worker ${f(i.worker)}, ingress ${f(i.ingress)}, PG ${f(i.auditPostgres)}+${f(i.ownedPostgres)}, redis ${f(i.redis)}`,
    );
    if (s.persistence) {
      const top = Object.entries(s.persistence.byOperationPerRun)
        .slice(0, 5)
        .map(([op, v]) => `${op} ${v}`)
        .join(', ');
      lines.push(
        `  persistence per run   ${s.persistence.requestsPerRun} requests (visibility ${s.persistence.visibilityRequestsPerRun ?? '?'}); most: ${top}`,
      );
    } else lines.push('  persistence per run   ? (the dev server metrics could not be read)');
    const h = s.history;
    lines.push(
      h
        ? `  history per run       events mean ${h.events.mean} max ${h.events.max}; workflow tasks mean ${h.workflowTasks.mean} max ${h.workflowTasks.max}; activities ${h.activitiesScheduled.mean}, markers ${h.markers.mean}, search-attribute upserts ${h.searchAttributeUpserts.mean} (mean of ${h.sampled} random runs)`
        : '  history per run       ? (no history could be read)',
    );
    lines.push(
      `  peak RSS              worker ${s.memory.worker?.peakRssMiB ?? '?'} MiB, ingress ${s.memory.ingress?.peakRssMiB ?? '?'} MiB, temporal dev server ${s.memory.temporal?.peakRssMiB ?? '?'} MiB`,
    );
    const l = s.slack.lagAfterVerifiedDeadMs;
    lines.push(
      `  Slack (${s.slack.perSecondLimit}/s/channel) outcome shown for ${s.slack.outcomeShown}/${s.outcomes.contained ?? 0}; own messages ${s.slack.messages}; digests ${s.slack.digests ?? 0} (${s.slack.digestRenders ?? 0} renders); 429s ${s.slack.rateLimited429}; lost ${s.slack.outcomeLost}; still retrying ${s.slack.stillRetrying}` +
        (l ? `; lag after death p50 ${fmtMs(l.p50)} p95 ${fmtMs(l.p95)} max ${fmtMs(l.max)}` : ''),
    );
    lines.push(`  secret values in worker/ingress/Temporal logs: ${s.secretMarkInLogs ? 'FOUND' : 'none'}`);
    const o = s.outbound;
    if (o) {
      lines.push(`  ${o.line}`);
      for (const p of o.perSubscription)
        lines.push(
          `    ${p.name.padEnd(16)}  received ${p.received}/${p.events}, queued ${p.queued}, delivered ${p.delivered}, pending ${p.pending}, rejected ${p.rejected}, not queued ${p.notQueued}; held ${p.held}, lost ${p.lost}; attempts ${p.attempts} (failed ${p.failedAttempts}${p.dead ? `, held unanswered ${p.hungRequests}` : ''})` +
            (p.duplicates ? `; duplicates ${p.duplicates}` : '') +
            (p.badSignatures ? `; BAD SIGNATURES ${p.badSignatures}` : '') +
            (p.switchedOff ? `; switched off: ${p.switchedOff}` : '') +
            (p.dead
              ? p.caughtUpAfterSeconds !== null
                ? `; caught up ${p.caughtUpAfterSeconds} s after it came back`
                : '; never caught up'
              : ''),
        );
      lines.push(`  subscription secrets in logs: ${o.secretInLogs ? 'FOUND' : 'none'}`);
    }
  }
  if (baseline) {
    lines.push(`\n[inline baseline: the providers' revoke → expireSessions → verifyDead, no Temporal]`);
    lines.push(
      `  contained ${baseline.contained}/${baseline.n}${baseline.failures ? ` (failures ${baseline.failures}: ${baseline.firstFailure})` : ''}`,
    );
    lines.push(
      `  time to contain       p50 ${fmtMs(baseline.timeToContain.p50)}  p95 ${fmtMs(baseline.timeToContain.p95)}  p99 ${fmtMs(baseline.timeToContain.p99)}; ${baseline.containedPerSecond} contained/s`,
    );
    const b = baseline.cpuPerContainedMs;
    lines.push(
      `  CPU per contained     ${b.total.toFixed(1)} ms = bench process ${b.process.toFixed(1)} + owned PG cluster ${b.ownedPostgres.toFixed(1)} + redis ${b.redis.toFixed(1)}`,
    );
    for (const s of scenarios) {
      lines.push(
        `  price of durability (sqlite ${keyOf(s)}): median time to contain ×${result.priceOfDurability![keyOf(s)]}; CPU per contained ×${result.cpuRatio![keyOf(s)]}`,
      );
    }
  }
  if (opts.workers.length > 1 || opts.workers[0] !== 1) {
    // --workers: contained/s per worker count (each run in order, then the median per count and mode).
    lines.push('\ncontained/s per worker count (burst throughput, received → last verified dead):');
    lines.push('  workers  sqlite   contained/s (each run)   median   time to contain p50 / p95');
    const groups = new Map<string, Scenario[]>();
    for (const sc of scenarios) {
      const k = `${sc.workers}\u0000${sc.sqlite}`;
      groups.set(k, [...(groups.get(k) ?? []), sc]);
    }
    for (const group of [...groups.values()].sort((a, b) => a[0]!.workers - b[0]!.workers)) {
      const rates = group.map((sc) => sc.containedPerSecond);
      const sorted = [...rates].sort((a, b) => a - b);
      const median = percentile(sorted, 50);
      const p50 = percentile(
        group.map((sc) => sc.timeToContain.p50).sort((a, b) => a - b),
        50,
      );
      const p95 = percentile(
        group.map((sc) => sc.timeToContain.p95).sort((a, b) => a - b),
        50,
      );
      lines.push(
        `  ${String(group[0]!.workers).padStart(7)}  ${group[0]!.sqlite.padEnd(7)}  ${rates.join(', ').padEnd(23)}  ${median.toFixed(1).padStart(6)}   ${fmtMs(p50)} / ${fmtMs(p95)}`,
      );
    }
  }
  lines.push(
    `\nwritten: ${path.relative(process.cwd(), path.join(opts.outDir, `bench-${stamp}.json`))}, latest.json, latest.svg`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  const leaked = scenarios.some((s) => s.secretMarkInLogs || s.outbound?.secretInLogs);
  const incomplete = scenarios.some((s) => (s.outcomes.contained ?? 0) < opts.n);
  if (leaked || incomplete) process.exitCode = 1;
}

main()
  .catch((err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack?.split(SECRET_MARK)[0] ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanupAll().finally(() => process.exit(process.exitCode ?? 0)));

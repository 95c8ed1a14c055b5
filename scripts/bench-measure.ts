/**
 * What the benchmark reads besides latencies: CPU time per process from /proc (utime + stime in
 * clock ticks), the Temporal dev server's Prometheus counters, and the shape of run histories.
 * Linux only (/proc); elsewhere the CPU figures come out empty rather than wrong.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';

// ---------------------------------------------------------------------------------------------
// /proc

let ticksPerSecond: number | undefined;
/** `getconf CLK_TCK` (100 on Linux almost everywhere). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

export interface ProcStat {
  pid: number;
  ppid: number;
  /** Own CPU, user + system, in clock ticks. */
  own: number;
  /** CPU of children that exited and were waited for by this process, in clock ticks. */
  reaped: number;
}

/** /proc/<pid>/stat, fields counted after the parenthesised command name (which may hold spaces). */
export function readStat(pid: number): ProcStat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    return {
      pid,
      ppid: Number(f[1]),
      own: Number(f[11]) + Number(f[12]),
      reaped: Number(f[13]) + Number(f[14]),
    };
  } catch {
    return null;
  }
}

function allStats(): ProcStat[] {
  let pids: number[] = [];
  try {
    pids = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [];
  }
  return pids.map(readStat).filter((s): s is ProcStat => s !== null);
}

/**
 * CPU of a process and every live descendant, in clock ticks. A descendant that exited during the
 * window is not lost: once its parent waits for it, its time moves into the parent's
 * cutime/cstime, which is counted here. (A child left unreaped, or reaped by init after its parent
 * died, is the exception.)
 */
export function treeTicks(root: number, stats = allStats()): number {
  const children = new Map<number, ProcStat[]>();
  for (const s of stats) {
    const l = children.get(s.ppid) ?? [];
    l.push(s);
    children.set(s.ppid, l);
  }
  const rootStat = stats.find((s) => s.pid === root) ?? readStat(root);
  if (!rootStat) return NaN;
  let total = 0;
  const todo = [rootStat];
  while (todo.length) {
    const s = todo.pop()!;
    total += s.own + s.reaped;
    todo.push(...(children.get(s.pid) ?? []));
  }
  return total;
}

/**
 * Processes measured over a window. `tree` counts a process tree (see treeTicks); `pids` counts a
 * set of processes that can change during the window (PostgreSQL backends of one database): call
 * `poll` often; a pid first seen after `begin` counts from zero, one that exits counts up to its
 * last poll.
 */
export type Measured =
  | { kind: 'tree'; pid: number | undefined }
  | { kind: 'self' }
  | { kind: 'pids'; list: () => Promise<number[]> };

export class CpuMeter {
  private startTree = new Map<string, number>();
  private startSelf: NodeJS.CpuUsage | undefined;
  private backends = new Map<string, Map<number, { first: number; last: number }>>();
  private t0 = 0;

  constructor(private readonly what: Record<string, Measured>) {}

  async begin(): Promise<void> {
    const stats = allStats();
    this.t0 = performance.now();
    for (const [name, m] of Object.entries(this.what)) {
      if (m.kind === 'tree') this.startTree.set(name, m.pid ? treeTicks(m.pid, stats) : NaN);
      else if (m.kind === 'self') this.startSelf = process.cpuUsage();
      else {
        const seen = new Map<number, { first: number; last: number }>();
        for (const pid of await m.list().catch(() => [])) {
          const own = readStat(pid)?.own;
          if (own !== undefined) seen.set(pid, { first: own, last: own });
        }
        this.backends.set(name, seen);
      }
    }
  }

  /** Samples the changing sets (cheap: one query and a few /proc reads). */
  async poll(): Promise<void> {
    for (const [name, m] of Object.entries(this.what)) {
      if (m.kind !== 'pids') continue;
      const seen = this.backends.get(name)!;
      for (const pid of await m.list().catch(() => [])) {
        const own = readStat(pid)?.own;
        if (own === undefined) continue;
        const e = seen.get(pid);
        if (e) e.last = own;
        else seen.set(pid, { first: 0, last: own });
      }
      for (const [pid, e] of seen) {
        const own = readStat(pid)?.own;
        if (own !== undefined) e.last = own;
      }
    }
  }

  /** CPU milliseconds per measured name over the window, and the window's length in seconds. */
  async end(): Promise<{ ms: Record<string, number>; seconds: number }> {
    await this.poll();
    const stats = allStats();
    const seconds = (performance.now() - this.t0) / 1000;
    const tick = 1000 / clockTicksPerSecond();
    const ms: Record<string, number> = {};
    for (const [name, m] of Object.entries(this.what)) {
      if (m.kind === 'tree')
        ms[name] = m.pid ? (treeTicks(m.pid, stats) - this.startTree.get(name)!) * tick : NaN;
      else if (m.kind === 'self') {
        const u = process.cpuUsage(this.startSelf);
        ms[name] = (u.user + u.system) / 1000;
      } else
        ms[name] = [...this.backends.get(name)!.values()].reduce((a, e) => a + (e.last - e.first), 0) * tick;
    }
    return { ms, seconds };
  }
}

/** The postmaster's pid from its data directory's postmaster.pid (first line). */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]) || undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format

/** Every sample of the named counters, summed over their labels, plus per `operation` label. */
export async function scrapeCounters(
  url: string,
  names: string[],
): Promise<Record<string, { total: number; byOperation: Record<string, number> }> | null> {
  let text: string;
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!r.ok) return null;
    text = await r.text();
  } catch {
    return null;
  }
  const out: Record<string, { total: number; byOperation: Record<string, number> }> = {};
  for (const n of names) out[n] = { total: 0, byOperation: {} };
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !out[m[1]!]) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    const c = out[m[1]!]!;
    c.total += v;
    const op = /operation="([^"]*)"/.exec(m[2] ?? '')?.[1] ?? '';
    c.byOperation[op] = (c.byOperation[op] ?? 0) + v;
  }
  return out;
}

export function counterDelta(
  before: Awaited<ReturnType<typeof scrapeCounters>>,
  after: Awaited<ReturnType<typeof scrapeCounters>>,
  name: string,
): { total: number; byOperation: Record<string, number> } | null {
  const a = before?.[name];
  const b = after?.[name];
  if (!a || !b) return null;
  const byOperation: Record<string, number> = {};
  for (const [op, v] of Object.entries(b.byOperation)) {
    const d = v - (a.byOperation[op] ?? 0);
    if (d) byOperation[op] = d;
  }
  return { total: b.total - a.total, byOperation };
}

// ---------------------------------------------------------------------------------------------
// Run histories

// temporal.api.enums.v1.EventType
const WORKFLOW_TASK_COMPLETED = 7;
const ACTIVITY_TASK_SCHEDULED = 10;
const MARKER_RECORDED = 25;
const UPSERT_WORKFLOW_SEARCH_ATTRIBUTES = 40;

export interface HistoryShape {
  sampled: number;
  events: { mean: number; max: number };
  workflowTasks: { mean: number; max: number };
  activitiesScheduled: { mean: number; max: number };
  markers: { mean: number; max: number };
  searchAttributeUpserts: { mean: number; max: number };
}

/** Counts events by type in the histories of up to `sample` randomly chosen runs. */
export async function historyShape(
  client: Client,
  workflowIds: string[],
  sample: number,
): Promise<HistoryShape | null> {
  const ids = [...workflowIds];
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  const rows: number[][] = [];
  for (const id of ids.slice(0, sample)) {
    const h = await client.workflow
      .getHandle(id)
      .fetchHistory()
      .catch(() => null);
    if (!h?.events) continue;
    const count = (t: number) => h.events!.filter((e) => e.eventType === t).length;
    rows.push([
      h.events.length,
      count(WORKFLOW_TASK_COMPLETED),
      count(ACTIVITY_TASK_SCHEDULED),
      count(MARKER_RECORDED),
      count(UPSERT_WORKFLOW_SEARCH_ATTRIBUTES),
    ]);
  }
  if (!rows.length) return null;
  const col = (k: number) => {
    const v = rows.map((r) => r[k]!);
    return { mean: Math.round((v.reduce((a, b) => a + b, 0) / v.length) * 10) / 10, max: Math.max(...v) };
  };
  return {
    sampled: rows.length,
    events: col(0),
    workflowTasks: col(1),
    activitiesScheduled: col(2),
    markers: col(3),
    searchAttributeUpserts: col(4),
  };
}

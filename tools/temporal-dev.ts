/**
 * Starts and stops a Temporal dev server (`temporal server start-dev`) with the project's search
 * attributes registered. Used by `npm start` on embedded defaults and by the test setup.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../contracts/run';

export interface DevServerOptions {
  cli: string;
  ip?: string;
  port?: number;
  uiPort?: number;
  headless?: boolean;
  /** Persist workflow state here; in-memory when unset. */
  dbFile?: string;
  namespace?: string;
  logFile?: string;
  readyTimeoutMs?: number;
  /** The codec endpoint the UI calls to show payloads decoded (`--ui-codec-endpoint`). */
  uiCodecEndpoint?: string;
  /** SQLite pragmas of the persistence store (`--sqlite-pragma journal_mode=wal`); unset: SQLite's defaults. */
  sqlitePragmas?: Record<string, string>;
  /**
   * Serve the server's Prometheus metrics on this port (`--metrics-port`, at
   * `http://<ip>:<port>/metrics`); unset: the CLI picks a port of its own and `metricsUrl` is undefined.
   */
  metricsPort?: number;
}

export interface DevServer {
  address: string;
  uiUrl: string | undefined;
  /** The Prometheus endpoint when `metricsPort` was given. */
  metricsUrl: string | undefined;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Whether a TCP listener can bind this port now. */
function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * A port free to listen on, for a server started a moment later. Picked below the kernel's
 * ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default), where the system hands
 * out ports to outgoing connections and to `listen(0)`: a port taken from that range can be given
 * to another process's connection before our server binds it, which made dev servers started
 * under load exit with "address already in use". Falls back to the kernel's choice.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (await canListen(port, host)) return port;
  }
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Appends a child's stdout and stderr to a log file, or drains them so the child never blocks on a full pipe. */
export function captureOutput(child: ChildProcess, logFile: string | undefined): void {
  if (logFile) {
    mkdirSync(path.dirname(logFile), { recursive: true });
    const out = createWriteStream(logFile, { flags: 'a' });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
  } else {
    child.stdout?.resume();
    child.stderr?.resume();
  }
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const ip = opts.ip ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(ip));
  const args = [
    'server',
    'start-dev',
    '--ip',
    ip,
    '--port',
    String(port),
    '--log-level',
    'warn',
    '--log-format',
    'json',
  ];
  if (opts.namespace && opts.namespace !== 'default') args.push('--namespace', opts.namespace);
  if (opts.headless) args.push('--headless');
  else if (opts.uiPort) args.push('--ui-port', String(opts.uiPort), '--ui-ip', ip);
  if (!opts.headless && opts.uiCodecEndpoint) args.push('--ui-codec-endpoint', opts.uiCodecEndpoint);
  if (opts.dbFile) {
    mkdirSync(path.dirname(opts.dbFile), { recursive: true });
    args.push('--db-filename', opts.dbFile);
  }
  for (const sa of SEARCH_ATTRIBUTE_DEFINITIONS) args.push('--search-attribute', `${sa.name}=${sa.type}`);
  for (const [k, v] of Object.entries(opts.sqlitePragmas ?? {})) args.push('--sqlite-pragma', `${k}=${v}`);
  if (opts.metricsPort) args.push('--metrics-port', String(opts.metricsPort));

  const child = spawn(opts.cli, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  captureOutput(child, opts.logFile);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `temporal dev server exited (code ${code}, signal ${signal})`;
  });

  const address = `${ip}:${port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (exited) throw new Error(`${exited}${opts.logFile ? `; see ${opts.logFile}` : ''}`);
    try {
      const conn = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await conn.workflowService.getSystemInfo({});
        // The namespace and search attributes are ready once describe succeeds.
        await conn.workflowService.describeNamespace({ namespace: opts.namespace ?? 'default' });
      } finally {
        await conn.close();
      }
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`temporal dev server not ready at ${address}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  return {
    address,
    uiUrl: opts.headless
      ? undefined
      : `http://${ip === '0.0.0.0' ? 'localhost' : ip}:${opts.uiPort ?? port + 1000}`,
    metricsUrl: opts.metricsPort
      ? `http://${ip === '0.0.0.0' ? '127.0.0.1' : ip}:${opts.metricsPort}/metrics`
      : undefined,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(timer);
    },
  };
}

/**
 * On a cluster we did not start, registers the search attributes if they are missing (needs the
 * operator permission; a production cluster may instead have them registered by its operators).
 */
export async function ensureSearchAttributes(
  conn: Connection,
  namespace: string,
): Promise<{ added: string[]; error?: string }> {
  try {
    const existing = await conn.operatorService.listSearchAttributes({ namespace });
    const have = new Set(Object.keys(existing.customAttributes ?? {}));
    const missing = SEARCH_ATTRIBUTE_DEFINITIONS.filter((d) => !have.has(d.name));
    if (missing.length === 0) return { added: [] };
    const KEYWORD = 2; // temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    await conn.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((d) => [d.name, KEYWORD])),
    });
    return { added: missing.map((d) => d.name) };
  } catch (err) {
    return { added: [], error: (err as Error).message };
  }
}

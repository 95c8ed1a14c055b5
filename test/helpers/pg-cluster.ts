/**
 * A throwaway PostgreSQL cluster that enforces passwords (scram-sha-256 over TCP), standing in for
 * a system the kill switch owns. The machine's own server trusts every local login, so it cannot
 * show that a leaked password stops working; this one can. Started once per test run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../tools/temporal-dev';

export interface ScramCluster {
  host: string;
  port: number;
  socketDir: string;
  /** Superuser over the unix socket (trust): for test fixtures only. */
  superuserConfig: { host: string; port: number; user: string; database: string };
  /** Stops the server (fast shutdown: connections are cut) and keeps its data, for outage tests. */
  pause(): void;
  /** Starts the paused server again on the same port, with the same data. */
  resume(): void;
  stop(): void;
}

function pgBinDir(): string {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(root, versions[0], 'bin');
  }
  const fromPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (fromPath) return path.dirname(fromPath);
  throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found; set PG_BINDIR');
}

/** initdb refuses to run as root; run the server binaries as the postgres system user then. */
function asPostgres(cmd: string, args: string[]): void {
  const isRoot = process.getuid?.() === 0;
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function startScramCluster(): Promise<ScramCluster> {
  const bin = pgBinDir();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-owned-pg-'));
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const data = path.join(dir, 'data');
  asPostgres(path.join(bin, 'initdb'), [
    '-D',
    data,
    '-U',
    'postgres',
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '-E',
    'UTF8',
    '--no-sync',
  ]);
  const hba = ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n');
  writeFileSync(path.join(data, 'pg_hba.conf'), hba);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(
      path.join(data, 'pg_hba.conf'),
      uid,
      uid === 0 ? 0 : Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
    );
  }
  const port = await freePort();
  const start = () =>
    asPostgres(path.join(bin, 'pg_ctl'), [
      '-D',
      data,
      '-l',
      path.join(dir, 'server.log'),
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c password_encryption=scram-sha-256 -c max_connections=200`,
      'start',
    ]);
  start();
  return {
    host: '127.0.0.1',
    port,
    socketDir: dir,
    superuserConfig: { host: dir, port, user: 'postgres', database: 'postgres' },
    pause() {
      asPostgres(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    },
    resume: start,
    stop() {
      try {
        asPostgres(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

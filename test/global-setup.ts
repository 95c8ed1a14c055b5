/**
 * One run of the suite: a real Temporal dev server (the project's own CLI), a fresh PostgreSQL
 * database for the kill switch's audit on the machine's server, and a password-enforcing PostgreSQL
 * cluster playing the owned system. Test files share these and isolate by task queue and ids.
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { resolveTemporalCli } from '../lib/temporal-cli';
import { startDevServer, type DevServer } from '../lib/temporal-dev';
import { startScramCluster, type ScramCluster } from './helpers/pg-cluster';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    auditDatabaseUrl: string;
    owned: { host: string; port: number; socketDir: string };
  }
}

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let dev: DevServer | undefined;
let owned: ScramCluster | undefined;
let dbName: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  const cli = resolveTemporalCli();
  const [server, cluster] = await Promise.all([
    startDevServer({ cli, headless: true, logFile: 'test-results/temporal-dev.log' }),
    startScramCluster(),
  ]);
  dev = server;
  owned = cluster;

  dbName = `killswitch_test_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(dbName)}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${dbName}`;

  project.provide('temporalAddress', dev.address);
  project.provide('auditDatabaseUrl', url.toString());
  project.provide('owned', { host: owned.host, port: owned.port, socketDir: owned.socketDir });
}

export async function teardown(): Promise<void> {
  await dev?.stop();
  owned?.stop();
  if (dbName) {
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(dbName)} WITH (FORCE)`);
    await admin.end();
  }
}

/**
 * One run of the suite: a real Temporal dev server (the project's own CLI), a fresh PostgreSQL
 * database for the kill switch's audit on the machine's server, and a password-enforcing PostgreSQL
 * cluster playing the owned system, and moto (AWS IAM, STS, Secrets Manager) with IAM auth enforced.
 * Test files share these and isolate by task queue, ids, and unique user and secret names.
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startMoto, type MotoServer } from '../tools/moto';
import { resolveTemporalCli } from '../tools/temporal-cli';
import { startDevServer, type DevServer } from '../tools/temporal-dev';
import { startScramCluster, type ScramCluster } from './helpers/pg-cluster';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    auditDatabaseUrl: string;
    owned: { host: string; port: number; socketDir: string };
    /** moto's endpoint; every request must be signed by a key moto's IAM knows. */
    awsEndpoint: string;
    /** An allow-all admin key of moto's IAM, for fixtures and the providers under test. */
    awsAdmin: { accessKeyId: string; secretAccessKey: string };
  }
}

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let dev: DevServer | undefined;
let owned: ScramCluster | undefined;
let moto: MotoServer | undefined;
let dbName: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  const cli = resolveTemporalCli();
  const [server, cluster, aws] = await Promise.all([
    startDevServer({ cli, headless: true, logFile: 'test-results/temporal-dev.log' }),
    startScramCluster(),
    startMoto({ enforceAuth: true, logFile: 'test-results/moto.log' }),
  ]);
  dev = server;
  owned = cluster;
  moto = aws;

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
  project.provide('awsEndpoint', moto.endpoint);
  project.provide('awsAdmin', moto.admin!);
}

export async function teardown(): Promise<void> {
  await dev?.stop();
  await moto?.stop();
  owned?.stop();
  if (dbName) {
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(dbName)} WITH (FORCE)`);
    await admin.end();
  }
}

/**
 * The kill switch's own database (audit, notification ledger, evidence): real PostgreSQL through
 * `pg` when DATABASE_URL is set, otherwise an embedded PostgreSQL (PGlite) in the data folder.
 * Both sit behind one small interface; schema changes run through node-pg-migrate.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from './logger';
import { PROJECT_ROOT } from './paths';

export interface QueryResult<R> {
  rows: R[];
}

export interface Db {
  readonly kind: 'postgres' | 'pglite';
  query<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<QueryResult<R>>;
  /** Runs fn on one connection: session state (advisory locks, transactions) must not hop across a pool. */
  withSession<T>(fn: (session: Pick<Db, 'query'>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export const MIGRATIONS_DIR = path.join(PROJECT_ROOT, 'migrations');
const MIGRATIONS_TABLE = 'killswitch_migrations';

export function createPostgresDb(databaseUrl: string, opts: { max?: number } = {}): Db {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.max ?? 10,
    application_name: 'secret-kill-switch',
  });
  // A dropped idle connection must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return {
    kind: 'postgres',
    query: async <R>(text: string, params?: unknown[]) => {
      const r = await pool.query(text, params as unknown[]);
      return { rows: r.rows as R[] };
    },
    withSession: async (fn) => {
      const client = await pool.connect();
      try {
        return await fn({
          query: async <R>(text: string, params?: unknown[]) => ({
            rows: (await client.query(text, params as unknown[])).rows as R[],
          }),
        });
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}

export async function createPgliteDb(dataDir: string): Promise<Db> {
  const { PGlite } = await import('@electric-sql/pglite');
  mkdirSync(dataDir, { recursive: true });
  const db = await PGlite.create(path.resolve(dataDir, 'pglite'));
  const query = async <R>(text: string, params?: unknown[]): Promise<QueryResult<R>> => {
    if (params && params.length > 0) {
      const r = await db.query<R>(text, params);
      return { rows: r.rows.map(normaliseRow) as R[] };
    }
    // exec() takes several statements (migrations); its last result is the statement's answer.
    const results = await db.exec(text);
    const last = results[results.length - 1];
    return { rows: (last?.rows ?? []).map(normaliseRow) as R[] };
  };
  return {
    kind: 'pglite',
    query,
    // PGlite is a single connection already.
    withSession: (fn) => fn({ query }),
    close: () => db.close(),
  };
}

/** PGlite returns bytea as Uint8Array where pg returns Buffer; make them one shape. */
function normaliseRow<R>(row: R): R {
  if (row && typeof row === 'object') {
    for (const [k, v] of Object.entries(row)) {
      if (v instanceof Uint8Array && !Buffer.isBuffer(v))
        (row as Record<string, unknown>)[k] = Buffer.from(v);
    }
  }
  return row;
}

export async function openDb(opts: { databaseUrl: string | undefined; dataDir: string }): Promise<Db> {
  return opts.databaseUrl ? createPostgresDb(opts.databaseUrl) : createPgliteDb(opts.dataDir);
}

/**
 * Brings the schema up to date. Safe to run from several processes at once (worker and ingress
 * start together): node-pg-migrate waits on an advisory lock held by one session.
 */
export async function migrate(db: Db, logger?: Logger): Promise<string[]> {
  return db.withSession((session) => migrateOn(session, logger));
}

async function migrateOn(session: Pick<Db, 'query'>, logger?: Logger): Promise<string[]> {
  const client = {
    query: (textOrConfig: string | { text: string; values?: unknown[] }, values?: unknown[]) =>
      typeof textOrConfig === 'string'
        ? session.query(textOrConfig, values)
        : session.query(textOrConfig.text, textOrConfig.values),
  };
  const applied = await runner({
    advisoryLockMode: 'wait',
    dbClient: client as unknown as pg.ClientBase,
    dir: MIGRATIONS_DIR,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'up',
    count: Infinity,
    checkOrder: true,
    logger: {
      debug: () => undefined,
      info: (msg: string) => logger?.debug({ migration: msg }, 'migration'),
      warn: (msg: string) => logger?.warn({ migration: msg }, 'migration'),
      error: (msg: string) => logger?.error({ migration: msg }, 'migration'),
    },
  });
  return applied.map((m) => m.name);
}

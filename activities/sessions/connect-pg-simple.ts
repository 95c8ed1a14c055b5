/**
 * An Express app's sessions in PostgreSQL, as connect-pg-simple stores them: a table
 * (sid varchar primary key, sess json, expire timestamp). Every row whose session JSON names one of
 * the users at `userField` (e.g. passport.user) is deleted, so the app sees no session on the next
 * request and the user must log in again. A second run finds none; a dry run only counts.
 */
import pg from 'pg';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType } from '../../contracts/errors';
import type { SessionTargetConfig } from '../../lib/systems';
import type { SessionTarget } from '../../lib/systems/provider';

type PgSimpleConfig = Extract<SessionTargetConfig, { kind: 'connect_pg_simple' }>;

function classify(err: unknown, what: string): Error {
  const e = err as { code?: string; message?: string };
  const msg = `${what}: ${e.code ?? 'error'} ${e.message ?? ''}`.trim();
  switch (e.code) {
    case '42501':
      return ApplicationFailure.create({
        type: ErrorType.PERMISSION_DENIED,
        message: msg,
        nonRetryable: true,
      });
    case '42P01': // undefined_table
    case '3F000': // invalid_schema_name
    case '42703': // undefined_column (not a connect-pg-simple table)
    case '28P01':
    case '28000':
    case '3D000':
      return ApplicationFailure.create({ type: ErrorType.MISCONFIGURED, message: msg, nonRetryable: true });
    default:
      return new Error(msg);
  }
}

export class ConnectPgSimpleSessionTarget implements SessionTarget {
  readonly kind = 'connect_pg_simple';
  private pool: pg.Pool | undefined;

  constructor(
    readonly config: PgSimpleConfig,
    private readonly url: string,
  ) {}

  private db(): pg.Pool {
    if (!this.pool) {
      this.pool = new pg.Pool({
        connectionString: this.url,
        max: 1,
        connectionTimeoutMillis: 5_000,
        idleTimeoutMillis: 30_000,
        application_name: 'secret-kill-switch',
      });
      this.pool.on('error', () => undefined);
    }
    return this.pool;
  }

  async expire(opts: { dryRun?: boolean }): Promise<{ expired: number; wouldExpire?: number }> {
    const { schema, table, userField, users } = this.config;
    const target = `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`;
    // sess is json; #>> with a text[] path reads the user as text (a numeric id matches "42").
    const where = 'sess #>> $1::text[] = ANY($2::text[])';
    const params = [userField.split('.'), users];
    const what = `connect_pg_simple ${schema}.${table}`;
    try {
      if (opts.dryRun) {
        const r = await this.db().query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${target} WHERE ${where}`,
          params,
        );
        return { expired: 0, wouldExpire: r.rows[0]!.n };
      }
      const r = await this.db().query(`DELETE FROM ${target} WHERE ${where}`, params);
      return { expired: r.rowCount ?? 0 };
    } catch (err) {
      throw classify(err, what);
    }
  }

  async close(): Promise<void> {
    await this.pool?.end();
    this.pool = undefined;
  }
}

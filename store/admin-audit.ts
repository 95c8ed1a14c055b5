/** killswitch_admin_audit: every admin change, append-only. */
import type { Db } from '../lib/db';

export interface AdminAuditEntry {
  actor: string;
  role: string;
  token: string;
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  requestId: string | null;
}

export async function insertAdminAudit(db: Pick<Db, 'query'>, e: AdminAuditEntry): Promise<void> {
  await db.query(
    `INSERT INTO killswitch_admin_audit (actor, role, token, action, target, before, after, request_id)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)`,
    [
      e.actor,
      e.role,
      e.token,
      e.action,
      e.target,
      JSON.stringify(e.before ?? null),
      JSON.stringify(e.after ?? null),
      e.requestId,
    ],
  );
}

export interface AdminAuditRow {
  id: unknown;
  at: unknown;
  actor: unknown;
  role: unknown;
  token: unknown;
  action: unknown;
  target: unknown;
  before: unknown;
  after: unknown;
  request_id: unknown;
}

/** Entries newest first, at most `limit`, below the id `cursor` when given. */
export async function listAdminAudit(
  db: Pick<Db, 'query'>,
  limit: number,
  cursor?: string,
): Promise<AdminAuditRow[]> {
  const r = await db.query<AdminAuditRow>(
    `SELECT id, at, actor, role, token, action, target, before, after, request_id FROM killswitch_admin_audit
        ${cursor ? 'WHERE id < $2::bigint' : ''} ORDER BY id DESC LIMIT $1`,
    cursor ? [limit, cursor] : [limit],
  );
  return r.rows;
}

/** Audit rows in PostgreSQL: one per run, insert-only, a retried insert is a no-op (store/audit.ts). */
import type { Db } from '../lib/db';
import type { RunSummary } from '../contracts/run';
import { insertAuditRow as insertRow } from '../store/audit';
import { wellFormed } from './boundary';

export async function insertAuditRow(db: Db, summary: RunSummary): Promise<{ inserted: boolean }> {
  // Scanner text is stored in text and jsonb columns: no lone surrogate, no U+0000 (see boundary.ts).
  return insertRow(db, wellFormed(summary));
}

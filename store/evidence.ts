/**
 * killswitch_evidence: leaked values sealed for their run (lib/evidence.ts says why and how), and
 * the EvidenceStore over it. A value is only ever stored sealed; it is opened in memory.
 */
import type { Db } from '../lib/db';
import type { ServerKeys } from '../contracts/keys';
import type { EvidenceStore, SealedEvidence } from '../lib/evidence';

/** Stores a sealed value; false when its workflow holds one already (that one is kept). */
export async function insertEvidence(db: Pick<Db, 'query'>, e: SealedEvidence): Promise<boolean> {
  const r = await db.query<{ workflow_id: string }>(
    `INSERT INTO killswitch_evidence (workflow_id, fingerprint, sealed, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4::int))
         ON CONFLICT (workflow_id) DO NOTHING
         RETURNING workflow_id`,
    [e.workflowId, e.fingerprint, e.sealed, e.ttlHours],
  );
  return r.rows.length === 1;
}

/** The workflow's sealed value and its fingerprint, unless expired. */
export async function sealedEvidenceOf(
  db: Pick<Db, 'query'>,
  workflowId: string,
): Promise<{ sealed: Buffer; fingerprint: string } | undefined> {
  const r = await db.query<{ sealed: Buffer; fingerprint: string }>(
    'SELECT sealed, fingerprint FROM killswitch_evidence WHERE workflow_id = $1 AND expires_at > now()',
    [workflowId],
  );
  return r.rows[0];
}

export async function deleteEvidence(db: Pick<Db, 'query'>, workflowId: string): Promise<void> {
  await db.query('DELETE FROM killswitch_evidence WHERE workflow_id = $1', [workflowId]);
}

/** Deletes every value past its expiry; returns how many. */
export async function deleteExpiredEvidence(db: Pick<Db, 'query'>): Promise<number> {
  const r = await db.query<{ workflow_id: string }>(
    'DELETE FROM killswitch_evidence WHERE expires_at <= now() RETURNING workflow_id',
  );
  return r.rows.length;
}

export function createEvidenceStore(db: Db, keys: ServerKeys, ttlHours: number): EvidenceStore {
  const seal = (workflowId: string, fingerprint: string, value: string): SealedEvidence => ({
    workflowId,
    fingerprint,
    sealed: keys.encrypt(value, workflowId),
    ttlHours: Math.ceil(ttlHours),
  });
  return {
    seal,
    async put(workflowId, fingerprint, value) {
      return insertEvidence(db, seal(workflowId, fingerprint, value));
    },
    async take(workflowId) {
      const row = await sealedEvidenceOf(db, workflowId);
      if (!row) return undefined;
      const value = keys.decrypt(Buffer.from(row.sealed), workflowId);
      if (!keys.fingerprintMatches(value, row.fingerprint))
        throw new Error('evidence does not match its fingerprint');
      return value;
    },
    async purge(workflowId) {
      await deleteEvidence(db, workflowId);
    },
    async purgeExpired() {
      return deleteExpiredEvidence(db);
    },
  };
}

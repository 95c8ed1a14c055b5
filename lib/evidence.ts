/**
 * Where a leaked value waits, sealed, between the ingress and the verify-dead step. Verifying that
 * "a login with the leaked password fails" needs the value, and Temporal must never see it, so it
 * lives here: AES-256-GCM under a key derived from the server key, bound to the workflow id,
 * purged when the run ends or when it expires.
 */
import type { Db } from './db';
import type { ServerKeys } from '../contracts/keys';

/** A leaked value sealed for one workflow, ready to be written (by `put`, or with the ingress's claim). */
export interface SealedEvidence {
  workflowId: string;
  fingerprint: string;
  sealed: Buffer;
  ttlHours: number;
}

export interface EvidenceStore {
  /** Seals a value for this workflow without storing it: the caller writes it in its own statement. */
  seal(workflowId: string, fingerprint: string, value: string): SealedEvidence;
  /** Keeps the value for this workflow; returns true when this call stored it (false: already held). */
  put(workflowId: string, fingerprint: string, value: string): Promise<boolean>;
  take(workflowId: string): Promise<string | undefined>;
  purge(workflowId: string): Promise<void>;
  purgeExpired(): Promise<number>;
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
      const e = seal(workflowId, fingerprint, value);
      const r = await db.query<{ workflow_id: string }>(
        `INSERT INTO killswitch_evidence (workflow_id, fingerprint, sealed, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4::int))
         ON CONFLICT (workflow_id) DO NOTHING
         RETURNING workflow_id`,
        [e.workflowId, e.fingerprint, e.sealed, e.ttlHours],
      );
      return r.rows.length === 1;
    },
    async take(workflowId) {
      const r = await db.query<{ sealed: Buffer; fingerprint: string }>(
        'SELECT sealed, fingerprint FROM killswitch_evidence WHERE workflow_id = $1 AND expires_at > now()',
        [workflowId],
      );
      const row = r.rows[0];
      if (!row) return undefined;
      const value = keys.decrypt(Buffer.from(row.sealed), workflowId);
      if (!keys.fingerprintMatches(value, row.fingerprint)) throw new Error('evidence does not match its fingerprint');
      return value;
    },
    async purge(workflowId) {
      await db.query('DELETE FROM killswitch_evidence WHERE workflow_id = $1', [workflowId]);
    },
    async purgeExpired() {
      const r = await db.query<{ workflow_id: string }>(
        'DELETE FROM killswitch_evidence WHERE expires_at <= now() RETURNING workflow_id',
      );
      return r.rows.length;
    },
  };
}

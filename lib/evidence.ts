/**
 * Where a leaked value waits, sealed, between the ingress and the verify-dead step. Verifying that
 * "a login with the leaked password fails" needs the value, and Temporal must never see it, so it
 * lives in the kill switch's database: AES-256-GCM under a key derived from the server key, bound
 * to the workflow id, purged when the run ends or when it expires. The store over the table is
 * store/evidence.ts (createEvidenceStore).
 */

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

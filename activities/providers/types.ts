import type { CredentialRef } from '../../lib/detection';

export interface ProviderRequest {
  /** Workflow id: the idempotency key of this containment. */
  workflowId: string;
  credentialRef: CredentialRef;
  /** Ask the system what it would do; change nothing. */
  dryRun?: boolean;
}

export interface RotateResult {
  /** null in a dry run. */
  rotatedAt: string | null;
  /** True when a replacement value reached a secret sink (none exists yet for postgres). */
  newValueDelivered: boolean;
  note: string;
}

export interface ExpireResult {
  /** null in a dry run. */
  sessionsExpiredAt: string | null;
  terminated: number;
  /** Dry run: how many sessions would have been terminated. */
  wouldTerminate?: number;
}

export interface VerifyResult {
  verifiedDeadAt: string | null;
  /** How death was established: `login_rejected`, or why it could not be tested. */
  method: 'login_rejected' | 'not_verifiable_no_leaked_value' | 'dry_run';
}

/**
 * One per owning system. Every method is idempotent (Temporal runs activities at least once) and
 * throws a non-retryable ApplicationFailure for permanent conditions, a plain error for transient ones.
 */
export interface CredentialProvider {
  readonly kind: string;
  rotate(req: ProviderRequest): Promise<RotateResult>;
  expireSessions(req: ProviderRequest): Promise<ExpireResult>;
  /** `leakedValue` comes from the sealed evidence store, never from Temporal. */
  verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult>;
  close(): Promise<void>;
}

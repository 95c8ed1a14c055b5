/**
 * The provider contract: what a kind's provider does to a credential of its owning system, and
 * where replacements (sinks) and users' sessions (session targets) go. Types only.
 */
import type { CredentialRef } from '../../contracts/detection';
import type { KillMode } from '../../contracts/kill-modes';

export interface ProviderRequest {
  /** Workflow id: the idempotency key of this containment. */
  workflowId: string;
  credentialRef: CredentialRef;
  /** Ask the system what it would do; change nothing. */
  dryRun?: boolean;
}

export interface RevokeRequest extends ProviderRequest {
  mode: KillMode;
  /** Reversible quarantine (disable and deny, keep for forensics) instead of deletion. */
  quarantine?: boolean;
  /**
   * The leaked value, from the sealed evidence store, when the scanner sent it (never in a dry
   * run). For owners whose revocation takes the value itself (GitHub, Slack) or removes exactly
   * that value (a Redis password among several). Never logged, never returned.
   */
  leakedValue?: string;
}

export interface RevokeResult {
  /** The moment the leaked credential stopped working; null in a dry run. */
  revokedAt: string | null;
  note: string;
}

export interface IssueRequest extends ProviderRequest {
  mode: KillMode;
}

export interface IssueResult {
  /** When the replacement became usable; null in a dry run. */
  issuedAt: string | null;
  /** True when the replacement reached the sink. */
  delivered: boolean;
  /** Non-secret reference to where it went (secret ARN and version id). */
  sinkRef?: string;
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
  /**
   * How death was established: `login_rejected` (the leaked value was tried and refused),
   * `revoked_by_owner` (the owner's API confirmed the credential is gone), or why it could not be
   * tested (`not_verifiable_no_leaked_value`, `dry_run`).
   */
  method: 'login_rejected' | 'revoked_by_owner' | 'not_verifiable_no_leaked_value' | 'dry_run';
}

/** A replacement value, as the applications read it from the sink (e.g. username + password). */
export type SecretValue = Readonly<Record<string, string>>;

/**
 * Where replacements go. `put` makes the value the current version; called again with the same
 * token it leaves one version (idempotent). Returns a non-secret reference, never the value.
 */
export interface SecretSink {
  readonly kind: string;
  put(value: SecretValue, opts: { idempotencyToken: string }): Promise<{ ref: string }>;
  close(): Promise<void>;
}

/**
 * One per owning system. Every method is idempotent (Temporal runs activities at least once) and
 * throws a non-retryable ApplicationFailure for permanent conditions, a plain error for transient ones.
 *
 * What it can do (graceful, quarantine, a replacement) is its kind's `supports` (./kind.ts), the one
 * place the inventory and the workflow read it from.
 *
 * Emergency: revoke → issueReplacement → expireSessions → verifyDead.
 * Graceful:  issueReplacement → (durable overlap timer) → revoke → expireSessions → verifyDead.
 */
export interface CredentialProvider {
  readonly kind: string;
  /** Makes the leaked credential stop working. */
  revoke(req: RevokeRequest): Promise<RevokeResult>;
  /** Issues a replacement and hands it straight to the sink; returns references only. */
  issueReplacement(req: IssueRequest, sink: SecretSink): Promise<IssueResult>;
  expireSessions(req: ProviderRequest): Promise<ExpireResult>;
  /** `leakedValue` comes from the sealed evidence store, never from Temporal. */
  verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult>;
  close(): Promise<void>;
}

/** Application sessions of the users tied to a credential (session stores, IdPs). */
export interface SessionTarget {
  readonly kind: string;
  /** Ends every session of the target's users; idempotent (a second run finds none). */
  expire(opts: { dryRun?: boolean }): Promise<{ expired: number; wouldExpire?: number }>;
  close(): Promise<void>;
}

/**
 * The error taxonomy: the failure types activities throw and the workflow branches on (permanent
 * ones are non-retryable, so the run escalates at once), and the HTTP problem every refusal of the
 * ingress's rules becomes (RFC 9457; also thrown by the finding reduction and by activities whose
 * input breaks those rules). Pure code.
 */
/** String-typed error taxonomy. Permanent ones are thrown non-retryable so the workflow branches at once. */
export const ErrorType = {
  /** The owning system refused: the admin credential may not alter this credential. */
  PERMISSION_DENIED: 'PermissionDenied',
  /** The owning system does not know the credential (role gone, key id unknown). */
  UNKNOWN_CREDENTIAL: 'UnknownCredential',
  /** The inventory names something that cannot work (missing env var, bad URL). */
  MISCONFIGURED: 'Misconfigured',
  /** Verification could still log in with the leaked value. */
  CREDENTIAL_STILL_VALID: 'CredentialStillValid',
  /** A notification endpoint rejected the request as malformed (4xx other than 429). */
  NOTIFICATION_REJECTED: 'NotificationRejected',
  /** A scanner's API refused the enrichment or loop-closing call (401/403/404). */
  UPSTREAM_REFUSED: 'UpstreamRefused',
  /** Nobody decided on a require_approval run in time. */
  APPROVAL_TIMEOUT: 'ApprovalTimeout',
  /** The owner refuses another credential (AWS allows two access keys per user). */
  CREDENTIAL_LIMIT: 'AccessKeyLimitExceeded',
  /** The mass-leak breaker held the run and nobody released it in time. */
  MASS_LEAK_HOLD: 'MassLeakHold',
  /** An activity's input can never be processed (a finding our own checks refuse, 4xx of the ingress's rules). */
  INVALID_INPUT: 'InvalidInput',
  /** PostgreSQL refused the data or the statement (SQLSTATE classes 22, 23, 42): a retry fails the same way. */
  STORE_REJECTED: 'StoreRejected',
  /** A finding could not be fetched in time: its run escalated while the fetch goes on (enrichDetection). */
  ENRICHMENT_DELAYED: 'EnrichmentDelayed',
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];

export const NON_RETRYABLE_CONTAINMENT_ERRORS: string[] = [
  ErrorType.PERMISSION_DENIED,
  ErrorType.UNKNOWN_CREDENTIAL,
  ErrorType.MISCONFIGURED,
  ErrorType.CREDENTIAL_LIMIT,
];

export interface ProblemExtras {
  errors?: Array<{ field: string; message: string }>;
  [key: string]: unknown;
}

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
    readonly extras: ProblemExtras = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'HttpProblem';
  }
}

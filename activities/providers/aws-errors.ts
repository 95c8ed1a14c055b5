/** What the AWS kinds (IAM provider, Secrets Manager sink) share: client configuration and error classes. */
import { ApplicationFailure } from '@temporalio/common';
import type { AwsConnection } from '../../lib/systems/common';
import { ErrorType } from '../../contracts/errors';

/** Two IAM keys per user is a hard AWS limit: a human must decide which key goes. */
export const AWS_KEY_LIMIT = ErrorType.CREDENTIAL_LIMIT;

type Env = Readonly<Record<string, string | undefined>>;

export function awsClientConfig(aws: AwsConnection, env: Env) {
  return {
    region: aws.region,
    ...(aws.endpointUrl ? { endpoint: aws.endpointUrl } : {}),
    ...(aws.accessKeyIdEnv ? { credentials: { accessKeyId: env[aws.accessKeyIdEnv]!, secretAccessKey: env[aws.secretAccessKeyEnv!]! } } : {}),
    // Temporal retries the activity; the SDK retries a little for quick blips only.
    maxAttempts: 2,
  };
}

const PERMISSION = new Set(['AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation', 'UnauthorizedAccess']);
const UNKNOWN = new Set(['NoSuchEntity', 'NoSuchEntityException']);
/** The admin credential itself is refused: configuration, not weather. */
const BAD_ADMIN = new Set(['InvalidClientTokenId', 'SignatureDoesNotMatch', 'UnrecognizedClientException', 'InvalidAccessKeyId', 'AuthFailure', 'ExpiredToken', 'ExpiredTokenException']);
const LIMIT = new Set(['LimitExceeded', 'LimitExceededException']);
const INVALID = new Set(['ValidationError', 'ValidationException', 'InvalidInput', 'InvalidInputException', 'InvalidParameterValue', 'InvalidParameterException', 'MalformedPolicyDocument', 'MalformedPolicyDocumentException']);

/**
 * AccessDenied → PermissionDenied, NoSuchEntity → UnknownCredential, the admin's own key refused →
 * Misconfigured, the two-keys limit → AccessKeyLimitExceeded; all non-retryable. Throttling, 5xx
 * and network errors stay plain errors, retried by Temporal.
 */
export function classifyAwsError(err: unknown, context: string): Error {
  if (err instanceof ApplicationFailure) return err;
  const e = err as { name?: string; Code?: string; message?: string; $metadata?: { httpStatusCode?: number }; $response?: { statusCode?: number } };
  const code = e.Code ?? e.name ?? '';
  const msg = `${context}: ${code ? `${code}: ` : ''}${e.message ?? String(err)}`;
  if (PERMISSION.has(code)) return ApplicationFailure.create({ type: ErrorType.PERMISSION_DENIED, message: msg, nonRetryable: true });
  if (UNKNOWN.has(code)) return ApplicationFailure.create({ type: ErrorType.UNKNOWN_CREDENTIAL, message: msg, nonRetryable: true });
  if (BAD_ADMIN.has(code)) return ApplicationFailure.create({ type: ErrorType.MISCONFIGURED, message: `the admin credential was refused: ${msg}`, nonRetryable: true });
  if (INVALID.has(code)) return ApplicationFailure.create({ type: ErrorType.MISCONFIGURED, message: msg, nonRetryable: true });
  if (LIMIT.has(code)) return ApplicationFailure.create({ type: AWS_KEY_LIMIT, message: msg, nonRetryable: true });
  // A 403 whose body the SDK could not read (an emulator's XML for a JSON API, a proxy's page): still a refusal.
  if ((e.$metadata?.httpStatusCode ?? e.$response?.statusCode) === 403) {
    return ApplicationFailure.create({ type: ErrorType.PERMISSION_DENIED, message: `${context}: HTTP 403 (${code || 'no error code'})`, nonRetryable: true });
  }
  // Throttling, ServiceUnavailable, 5xx, sockets, timeouts: transient.
  return new Error(msg);
}

/** What the AWS IAM provider can do, known without loading the AWS SDK (the registry loads it lazily). */
export const AWS_IAM_CAPABILITIES = { kind: 'aws_iam', canIssueReplacement: true, supportsGraceful: true, supportsQuarantine: true } as const;

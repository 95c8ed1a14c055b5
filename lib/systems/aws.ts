/**
 * What the AWS pieces share without loading the AWS SDK: client configuration and error classes
 * (the IAM provider, the Secrets Manager sink), and the aws_iam system's schema, read by the kind
 * (./aws-iam.ts) and by its provider (./aws-iam-provider.ts), which loads the SDK on first use.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { ErrorType } from '../../contracts/errors';
import { awsConnectionSchema, commonSystemFields, glob, type AwsConnection } from './common';

/** Two IAM keys per user is a hard AWS limit: a human must decide which key goes. */
export const AWS_KEY_LIMIT = ErrorType.CREDENTIAL_LIMIT;

type Env = Readonly<Record<string, string | undefined>>;

export function awsClientConfig(aws: AwsConnection, env: Env) {
  return {
    region: aws.region,
    ...(aws.endpointUrl ? { endpoint: aws.endpointUrl } : {}),
    ...(aws.accessKeyIdEnv
      ? {
          credentials: {
            accessKeyId: env[aws.accessKeyIdEnv]!,
            secretAccessKey: env[aws.secretAccessKeyEnv!]!,
          },
        }
      : {}),
    // Temporal retries the activity; the SDK retries a little for quick blips only.
    maxAttempts: 2,
  };
}

const PERMISSION = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'UnauthorizedOperation',
  'UnauthorizedAccess',
]);
const UNKNOWN = new Set(['NoSuchEntity', 'NoSuchEntityException']);
/** The admin credential itself is refused: configuration, not weather. */
const BAD_ADMIN = new Set([
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'UnrecognizedClientException',
  'InvalidAccessKeyId',
  'AuthFailure',
  'ExpiredToken',
  'ExpiredTokenException',
]);
const LIMIT = new Set(['LimitExceeded', 'LimitExceededException']);
const INVALID = new Set([
  'ValidationError',
  'ValidationException',
  'InvalidInput',
  'InvalidInputException',
  'InvalidParameterValue',
  'InvalidParameterException',
  'MalformedPolicyDocument',
  'MalformedPolicyDocumentException',
]);

/**
 * AccessDenied → PermissionDenied, NoSuchEntity → UnknownCredential, the admin's own key refused →
 * Misconfigured, the two-keys limit → AccessKeyLimitExceeded; all non-retryable. Throttling, 5xx
 * and network errors stay plain errors, retried by Temporal.
 */
export function classifyAwsError(err: unknown, context: string): Error {
  if (err instanceof ApplicationFailure) return err;
  const e = err as {
    name?: string;
    Code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $response?: { statusCode?: number };
  };
  const code = e.Code ?? e.name ?? '';
  const msg = `${context}: ${code ? `${code}: ` : ''}${e.message ?? String(err)}`;
  if (PERMISSION.has(code))
    return ApplicationFailure.create({ type: ErrorType.PERMISSION_DENIED, message: msg, nonRetryable: true });
  if (UNKNOWN.has(code))
    return ApplicationFailure.create({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      message: msg,
      nonRetryable: true,
    });
  if (BAD_ADMIN.has(code))
    return ApplicationFailure.create({
      type: ErrorType.MISCONFIGURED,
      message: `the admin credential was refused: ${msg}`,
      nonRetryable: true,
    });
  if (INVALID.has(code))
    return ApplicationFailure.create({ type: ErrorType.MISCONFIGURED, message: msg, nonRetryable: true });
  if (LIMIT.has(code))
    return ApplicationFailure.create({ type: AWS_KEY_LIMIT, message: msg, nonRetryable: true });
  // A 403 whose body the SDK could not read (an emulator's XML for a JSON API, a proxy's page): still a refusal.
  if ((e.$metadata?.httpStatusCode ?? e.$response?.statusCode) === 403) {
    return ApplicationFailure.create({
      type: ErrorType.PERMISSION_DENIED,
      message: `${context}: HTTP 403 (${code || 'no error code'})`,
      nonRetryable: true,
    });
  }
  // Throttling, ServiceUnavailable, 5xx, sockets, timeouts: transient.
  return new Error(msg);
}

/** IAM user names or glob patterns (`*` any run of characters, `?` one character). */
const userPattern = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[\w+=,.@\-*?]+$/, 'an IAM user name or a glob of one');

/** An access key id: AKIA… (long-term) or ASIA… (temporary), upper-case letters and digits. */
export const ACCESS_KEY_ID = /^(AKIA|ASIA)[A-Z0-9]{12,124}$/;

export const awsIamSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('aws_iam'),
    /** Where IAM and STS are and which admin credential to use (the SDK's default chain when unset). */
    aws: awsConnectionSchema.default(awsConnectionSchema.parse({})),
    /** The 12-digit account; when set, a detection naming another account does not match. */
    accountId: z
      .string()
      .regex(/^\d{12}$/, 'a 12-digit AWS account id')
      .optional(),
    /**
     * IAM users the kill switch may act on. Matching is pure (an access key id does not say its
     * user); the provider looks the owner up and refuses a key whose user is outside this list.
     */
    users: z.array(userPattern).min(1).default(['*']),
  })
  .strict();
export type AwsIamSystem = z.infer<typeof awsIamSystemSchema>;

export function userAllowed(s: AwsIamSystem, userName: string): boolean {
  return s.users.some((p) => glob(p).test(userName));
}

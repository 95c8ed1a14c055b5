/** `kind: aws_iam`: long-term access keys of IAM users in one AWS account. */
import { z } from 'zod';
import type { CredentialRef } from '../../contracts/detection';
import { awsConnectionSchema, commonEnv, commonSystemFields, glob, type EnvRequirement } from './common';

/** IAM user names or glob patterns (`*` any run of characters, `?` one character). */
const userPattern = z.string().min(1).max(64).regex(/^[\w+=,.@\-*?]+$/, 'an IAM user name or a glob of one');

/** An access key id: AKIA… (long-term) or ASIA… (temporary), upper-case letters and digits. */
export const ACCESS_KEY_ID = /^(AKIA|ASIA)[A-Z0-9]{12,124}$/;

export const awsIamSystemSchema = z
  .object({
    ...commonSystemFields,
    kind: z.literal('aws_iam'),
    /** Where IAM and STS are and which admin credential to use (the SDK's default chain when unset). */
    aws: awsConnectionSchema.default(awsConnectionSchema.parse({})),
    /** The 12-digit account; when set, a detection naming another account does not match. */
    accountId: z.string().regex(/^\d{12}$/, 'a 12-digit AWS account id').optional(),
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

export const awsIamKind = {
  supports: { graceful: true, quarantine: true },
  credentialTypes: ['aws_access_key'] as const,
  owns(s: AwsIamSystem, ref: CredentialRef): boolean {
    const id = ref.accessKeyId;
    if (!id || !ACCESS_KEY_ID.test(id)) return false;
    return !ref.accountId || !s.accountId || ref.accountId === s.accountId;
  },
  env(s: AwsIamSystem, at: string): EnvRequirement[] {
    const out: EnvRequirement[] = [];
    if (s.aws.accessKeyIdEnv) {
      out.push({ path: `${at}.aws.accessKeyIdEnv`, name: s.aws.accessKeyIdEnv, check: (v) => (/^[A-Z0-9]{16,128}$/.test(v) ? undefined : 'must be an AWS access key id') });
      out.push({ path: `${at}.aws.secretAccessKeyEnv`, name: s.aws.secretAccessKeyEnv! });
    }
    return [...out, ...commonEnv(s, at)];
  },
  describe(ref: CredentialRef): string {
    return ref.accessKeyId ? `access key ${ref.accessKeyId}${ref.accountId ? ` in account ${ref.accountId}` : ''}` : 'no AWS access key id';
  },
};

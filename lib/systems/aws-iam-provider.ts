/**
 * The aws_iam kind's provider (./aws-iam.ts), loaded with its first call: AWS IAM users' access keys.
 * owner   = GetAccessKeyLastUsed names the key's user; a user outside the system's `users` globs
 *           is refused (PermissionDenied). A key this kill switch deleted is remembered by a tag on
 *           its user, `killswitch-revoked-<keyid>` = "<revokedAt> <workflowId>", so re-runs succeed.
 * revoke  = UpdateAccessKey Inactive (the moment it stops working), tag, then DeleteAccessKey.
 *           quarantine: Inactive + the inline deny-all policy `KillSwitchQuarantine`; the key stays
 *           for forensics (undo: delete that policy, set the key Active).
 * issue   = CreateAccessKey for the same user, {accessKeyId, secretAccessKey} straight to the sink.
 *           The tag `killswitch-replacement-<leaked keyid>` records "pending <time>" before and
 *           "<new keyid> <time>" after the create, so a retry removes its own earlier replacement
 *           (whose secret nobody holds) instead of making a third key or leaving two.
 * expire  = the "revoke older sessions" policy: inline `KillSwitchRevokeOlderSessions` denying
 *           everything to temporary credentials with aws:TokenIssueTime before now.
 * verify  = STS GetCallerIdentity signed with the leaked secret is refused; without the value,
 *           ListAccessKeys shows the key gone or inactive.
 */
import { createHash } from 'node:crypto';
import {
  CreateAccessKeyCommand,
  DeleteAccessKeyCommand,
  GetAccessKeyLastUsedCommand,
  GetUserPolicyCommand,
  IAMClient,
  ListAccessKeysCommand,
  ListUsersCommand,
  ListUserTagsCommand,
  PutUserPolicyCommand,
  TagUserCommand,
  UpdateAccessKeyCommand,
  type AccessKeyMetadata,
} from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType } from '../../contracts/errors';
import { ACCESS_KEY_ID, awsClientConfig, classifyAwsError, userAllowed, type AwsIamSystem } from './aws';
import type {
  CredentialProvider,
  ExpireResult,
  IssueRequest,
  IssueResult,
  ProviderRequest,
  RevokeRequest,
  RevokeResult,
  SecretSink,
  VerifyResult,
} from './provider';

export const QUARANTINE_POLICY = 'KillSwitchQuarantine';
export const SESSIONS_POLICY = 'KillSwitchRevokeOlderSessions';
export const revokedTag = (keyId: string) => `killswitch-revoked-${keyId}`;
export const replacementTag = (keyId: string) => `killswitch-replacement-${keyId}`;

/** What an authentication refusal looks like from STS (the key is unknown, inactive, or the secret wrong). */
const REJECTED = new Set([
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'InvalidAccessKeyId',
  'AuthFailure',
  'UnrecognizedClientException',
  'IncompleteSignature',
]);
/** A create retried within this window of the "pending" mark is ours (clock skew between worker and AWS). */
const PENDING_SKEW_MS = 5_000;

const DENY_ALL = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Sid: 'KillSwitchQuarantine', Effect: 'Deny', Action: '*', Resource: '*' }],
});

type Env = Readonly<Record<string, string | undefined>>;

interface Located {
  user: string;
  /** The key's metadata; undefined when it is already deleted. */
  key?: AccessKeyMetadata;
  /** The kill switch's record of an earlier revocation. */
  revoked?: { at: string; workflowId: string };
}

function decodePolicy(
  doc: string | undefined,
):
  { Statement?: Array<{ Sid?: string; Condition?: { DateLessThan?: Record<string, string> } }> } | undefined {
  if (!doc) return undefined;
  try {
    return JSON.parse(doc.trimStart().startsWith('{') ? doc : decodeURIComponent(doc));
  } catch {
    return undefined;
  }
}

export class AwsIamProvider implements CredentialProvider {
  readonly kind = 'aws_iam';
  private readonly iam: IAMClient;
  /** Key id → user, a hint that spares a scan for a key deleted earlier in this process. */
  private readonly owners = new Map<string, string>();

  constructor(
    readonly system: AwsIamSystem,
    private readonly env: Env,
  ) {
    this.iam = new IAMClient(awsClientConfig(system.aws, env));
  }

  private keyId(req: ProviderRequest): string {
    const id = req.credentialRef.accessKeyId;
    if (!id || !ACCESS_KEY_ID.test(id)) {
      throw ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: 'no AWS access key id in credentialRef',
        nonRetryable: true,
      });
    }
    return id;
  }

  private async call<T>(context: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw classifyAwsError(err, context);
    }
  }

  private isNoSuchEntity(err: unknown): boolean {
    const n = (err as { name?: string }).name;
    return (
      n === 'NoSuchEntityException' ||
      n === 'NoSuchEntity' ||
      (err instanceof ApplicationFailure && err.type === ErrorType.UNKNOWN_CREDENTIAL)
    );
  }

  private async tags(user: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let marker: string | undefined;
    do {
      const r = await this.call(`list tags of ${user}`, () =>
        this.iam.send(new ListUserTagsCommand({ UserName: user, Marker: marker, MaxItems: 100 })),
      );
      for (const t of r.Tags ?? []) out.set(t.Key!, t.Value ?? '');
      marker = r.IsTruncated ? r.Marker : undefined;
    } while (marker);
    return out;
  }

  private async keysOf(user: string): Promise<AccessKeyMetadata[]> {
    const r = await this.call(`list access keys of ${user}`, () =>
      this.iam.send(new ListAccessKeysCommand({ UserName: user })),
    );
    return r.AccessKeyMetadata ?? [];
  }

  private allow(user: string, keyId: string): void {
    if (!userAllowed(this.system, user)) {
      throw ApplicationFailure.create({
        type: ErrorType.PERMISSION_DENIED,
        message: `access key ${keyId} belongs to IAM user ${user}, outside the users of system ${this.system.name}`,
        nonRetryable: true,
      });
    }
  }

  private static parseRevoked(v: string | undefined): Located['revoked'] {
    if (!v) return undefined;
    const [at, workflowId] = v.split(' ');
    return at && workflowId ? { at, workflowId } : undefined;
  }

  /** Finds the key's user (and the key, unless it is deleted); refuses users outside the system. */
  private async locate(keyId: string): Promise<Located> {
    let user: string | undefined;
    try {
      const r = await this.iam.send(new GetAccessKeyLastUsedCommand({ AccessKeyId: keyId }));
      user = r.UserName;
    } catch (err) {
      if (!this.isNoSuchEntity(err)) throw classifyAwsError(err, `look up the owner of ${keyId}`);
    }
    if (user) {
      this.allow(user, keyId);
      this.owners.set(keyId, user);
      const key = (await this.keysOf(user)).find((k) => k.AccessKeyId === keyId);
      const revoked = AwsIamProvider.parseRevoked((await this.tags(user)).get(revokedTag(keyId)));
      return { user, ...(key ? { key } : {}), ...(revoked ? { revoked } : {}) };
    }
    // Unknown to IAM: deleted by an earlier run of the kill switch (its tag says so), or never ours.
    const found = await this.findRevokedMarker(keyId);
    if (!found) {
      throw ApplicationFailure.create({
        type: ErrorType.UNKNOWN_CREDENTIAL,
        message: `access key ${keyId} does not exist in ${this.system.name}`,
        nonRetryable: true,
      });
    }
    return found;
  }

  private async findRevokedMarker(keyId: string): Promise<Located | undefined> {
    const check = async (user: string): Promise<Located | undefined> => {
      try {
        const revoked = AwsIamProvider.parseRevoked((await this.tags(user)).get(revokedTag(keyId)));
        return revoked ? { user, revoked } : undefined;
      } catch (err) {
        if (this.isNoSuchEntity(err)) return undefined;
        throw err;
      }
    };
    const hint = this.owners.get(keyId);
    if (hint) {
      const hit = await check(hint);
      if (hit) return hit;
    }
    let marker: string | undefined;
    do {
      const r = await this.call('list IAM users', () =>
        this.iam.send(new ListUsersCommand({ Marker: marker, MaxItems: 1000 })),
      );
      for (const u of r.Users ?? []) {
        if (!u.UserName || u.UserName === hint || !userAllowed(this.system, u.UserName)) continue;
        const hit = await check(u.UserName);
        if (hit) {
          this.owners.set(keyId, u.UserName);
          return hit;
        }
      }
      marker = r.IsTruncated ? r.Marker : undefined;
    } while (marker);
    return undefined;
  }

  async revoke(req: RevokeRequest): Promise<RevokeResult> {
    const keyId = this.keyId(req);
    const loc = await this.locate(keyId);
    const { user } = loc;
    if (req.dryRun) {
      return {
        revokedAt: null,
        note: `dry run: ${keyId} belongs to IAM user ${user} (${loc.key?.Status ?? 'deleted'}); would ${req.quarantine ? `deactivate it and attach ${QUARANTINE_POLICY}` : 'deactivate and delete it'}`,
      };
    }
    let revokedAt = loc.revoked?.at;
    if (loc.key) {
      if (loc.key.Status !== 'Inactive') {
        await this.call(`deactivate ${keyId}`, () =>
          this.iam.send(
            new UpdateAccessKeyCommand({ UserName: user, AccessKeyId: keyId, Status: 'Inactive' }),
          ),
        );
        revokedAt = undefined;
      }
      if (!revokedAt) {
        revokedAt = new Date().toISOString();
        // Before the delete: the record that lets a re-run find this key's user once IAM forgets it.
        await this.call(`tag ${user}`, () =>
          this.iam.send(
            new TagUserCommand({
              UserName: user,
              Tags: [{ Key: revokedTag(keyId), Value: `${revokedAt} ${req.workflowId}` }],
            }),
          ),
        );
      }
      if (req.quarantine) {
        await this.call(`quarantine ${user}`, () =>
          this.iam.send(
            new PutUserPolicyCommand({
              UserName: user,
              PolicyName: QUARANTINE_POLICY,
              PolicyDocument: DENY_ALL,
            }),
          ),
        );
        return {
          revokedAt,
          note: `access key ${keyId} of ${user} deactivated and kept; ${QUARANTINE_POLICY} denies the user everything`,
        };
      }
      try {
        await this.iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: keyId }));
      } catch (err) {
        if (!this.isNoSuchEntity(err)) throw classifyAwsError(err, `delete ${keyId}`);
      }
      return { revokedAt, note: `access key ${keyId} of ${user} deactivated and deleted` };
    }
    return {
      revokedAt: revokedAt!,
      note: `access key ${keyId} of ${user} was already deleted by ${loc.revoked!.workflowId}`,
    };
  }

  async issueReplacement(req: IssueRequest, sink: SecretSink): Promise<IssueResult> {
    const keyId = this.keyId(req);
    const { user } = await this.locate(keyId);
    const tag = replacementTag(keyId);
    const keys = await this.keysOf(user);
    if (req.dryRun) {
      const full = keys.filter((k) => req.mode === 'graceful' || k.AccessKeyId !== keyId).length >= 2;
      return {
        issuedAt: null,
        delivered: false,
        note: `dry run: would create an access key for ${user} (it holds ${keys.length} of 2)${full ? '; the two-key limit would refuse it' : ''}`,
      };
    }
    if (sink.kind === 'none') {
      return {
        issuedAt: null,
        delivered: false,
        note: `no replacement key created for ${user}: sink none (nobody would receive it)`,
      };
    }

    // An earlier attempt of this step: remove its key, whose secret nobody holds any more.
    const prior = (await this.tags(user)).get(tag);
    if (prior) {
      const [first, at] = prior.split(' ');
      const stale =
        first === 'pending'
          ? keys.filter(
              (k) =>
                k.AccessKeyId !== keyId &&
                k.CreateDate &&
                k.CreateDate.getTime() >= Date.parse(at ?? '') - PENDING_SKEW_MS,
            )
          : keys.filter((k) => k.AccessKeyId === first);
      for (const k of stale) {
        try {
          await this.iam.send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: k.AccessKeyId! }));
        } catch (err) {
          if (!this.isNoSuchEntity(err))
            throw classifyAwsError(err, `delete the earlier replacement of ${keyId}`);
        }
      }
    }

    const setTag = (value: string) =>
      this.call(`tag ${user}`, () =>
        this.iam.send(new TagUserCommand({ UserName: user, Tags: [{ Key: tag, Value: value }] })),
      );
    await setTag(`pending ${new Date().toISOString()}`);
    const created = await this.call(`create an access key for ${user}`, () =>
      this.iam.send(new CreateAccessKeyCommand({ UserName: user })),
    );
    const key = created.AccessKey!;
    const issuedAt = (key.CreateDate ?? new Date()).toISOString();
    await setTag(`${key.AccessKeyId} ${issuedAt}`);
    let put: { ref: string };
    try {
      put = await sink.put(
        { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! },
        { idempotencyToken: `${req.workflowId}-issue` },
      );
    } catch (err) {
      // Undelivered, the new key is useless and would count against the two-key limit.
      await this.iam
        .send(new DeleteAccessKeyCommand({ UserName: user, AccessKeyId: key.AccessKeyId! }))
        .catch(() => undefined);
      throw err;
    }
    return {
      issuedAt,
      delivered: true,
      sinkRef: put.ref,
      note: `new access key ${key.AccessKeyId} of ${user} delivered to ${sink.kind}`,
    };
  }

  async expireSessions(req: ProviderRequest): Promise<ExpireResult> {
    const keyId = this.keyId(req);
    const { user } = await this.locate(keyId);
    if (req.dryRun) return { sessionsExpiredAt: null, terminated: 0, wouldTerminate: 0 };
    // One statement id per containment: a re-run finds its own policy and keeps its cut-off time.
    const sid = `KillSwitch${createHash('sha256').update(req.workflowId).digest('hex').slice(0, 24)}`;
    let existing: ReturnType<typeof decodePolicy>;
    try {
      const r = await this.iam.send(
        new GetUserPolicyCommand({ UserName: user, PolicyName: SESSIONS_POLICY }),
      );
      existing = decodePolicy(r.PolicyDocument);
    } catch (err) {
      if (!this.isNoSuchEntity(err)) throw classifyAwsError(err, `read ${SESSIONS_POLICY} of ${user}`);
    }
    const mine = existing?.Statement?.find((s) => s.Sid === sid);
    const kept = mine?.Condition?.DateLessThan?.['aws:TokenIssueTime'];
    if (kept) return { sessionsExpiredAt: kept, terminated: 0 };
    const cutoff = new Date().toISOString();
    const doc = {
      Version: '2012-10-17',
      Statement: [
        {
          Sid: sid,
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { DateLessThan: { 'aws:TokenIssueTime': cutoff } },
        },
      ],
    };
    await this.call(`put ${SESSIONS_POLICY} on ${user}`, () =>
      this.iam.send(
        new PutUserPolicyCommand({
          UserName: user,
          PolicyName: SESSIONS_POLICY,
          PolicyDocument: JSON.stringify(doc),
        }),
      ),
    );
    // IAM cannot count the temporary sessions it just cut off.
    return { sessionsExpiredAt: cutoff, terminated: 0 };
  }

  async verifyDead(req: ProviderRequest, leakedValue: string | undefined): Promise<VerifyResult> {
    const keyId = this.keyId(req);
    if (req.dryRun) return { verifiedDeadAt: null, method: 'dry_run' };
    if (leakedValue !== undefined) {
      // Signed where the inventory says AWS is, never at an endpoint named by the detection.
      const sts = new STSClient({
        ...awsClientConfig(this.system.aws, this.env),
        credentials: { accessKeyId: keyId, secretAccessKey: leakedValue },
        maxAttempts: 1,
      });
      try {
        await sts.send(new GetCallerIdentityCommand({}));
      } catch (err) {
        const e = err as { name?: string; Code?: string };
        if (REJECTED.has(e.Code ?? e.name ?? ''))
          return { verifiedDeadAt: new Date().toISOString(), method: 'login_rejected' };
        throw new Error(`verify ${keyId}: STS did not answer: ${(err as Error).name}`);
      } finally {
        sts.destroy();
      }
      // IAM is eventually consistent: a just-deactivated key can work for a few seconds; retried.
      throw ApplicationFailure.create({
        type: ErrorType.CREDENTIAL_STILL_VALID,
        message: `the leaked secret of ${keyId} still authenticates to AWS`,
        nonRetryable: false,
      });
    }
    let loc: Located;
    try {
      loc = await this.locate(keyId);
    } catch (err) {
      if (err instanceof ApplicationFailure && err.type === ErrorType.UNKNOWN_CREDENTIAL)
        return { verifiedDeadAt: new Date().toISOString(), method: 'revoked_by_owner' };
      throw err;
    }
    if (!loc.key || loc.key.Status === 'Inactive')
      return { verifiedDeadAt: new Date().toISOString(), method: 'revoked_by_owner' };
    throw ApplicationFailure.create({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      message: `access key ${keyId} of ${loc.user} is still active`,
      nonRetryable: false,
    });
  }

  async close(): Promise<void> {
    this.iam.destroy();
  }
}

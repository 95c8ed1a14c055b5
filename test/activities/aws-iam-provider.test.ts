/**
 * The AWS IAM provider against moto with IAM authentication enforced: real SDK v3 calls, keys that
 * really stop authenticating when deleted. Each test makes its own users and secrets.
 */
import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  GetUserPolicyCommand,
  IAMClient,
  ListAccessKeysCommand,
  ListUserPoliciesCommand,
  ListUserTagsCommand,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AWS_KEY_LIMIT } from '../../lib/systems/aws';
import {
  AwsIamProvider,
  QUARANTINE_POLICY,
  revokedTag,
  SESSIONS_POLICY,
} from '../../lib/systems/aws-iam-provider';
import { noSink, createSink } from '../../activities/sinks';
import type { SecretSink } from '../../lib/systems/provider';
import { reduceFinding } from '../../contracts/finding';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { matchOwner, parseInventory } from '../../lib/inventory';
import type { AwsIamSystem } from '../../lib/systems';
import { ErrorType } from '../../contracts/errors';
import { rand } from '../helpers/harness';
import { motoConnection, whoAmI } from '../helpers/aws';
import { failureProbe } from '../helpers/failure';
import { ISO_TIME } from '../helpers/matchers';

const { endpoint, admin, env: awsEnv, aws } = motoConnection('AWS_ADMIN_KEY_ID', 'AWS_ADMIN_SECRET');
const env = awsEnv;
const prefix = `ks-${rand()}`;

let iam: IAMClient;
let sm: SecretsManagerClient;
const closers: Array<() => Promise<void>> = [];

function system(extra: Record<string, unknown> = {}): AwsIamSystem {
  const s = parseInventory({
    systems: [{ name: 'aws-prod', kind: 'aws_iam', aws, users: [`${prefix}-*`], ...extra }],
  }).systems[0]!;
  if (s.kind !== 'aws_iam') throw new Error('not aws_iam');
  return s;
}
function provider(extra: Record<string, unknown> = {}, e: Record<string, string> = env): AwsIamProvider {
  const p = new AwsIamProvider(system(extra), e);
  closers.push(() => p.close());
  return p;
}
async function sinkWithSecret(): Promise<{ sink: SecretSink; name: string }> {
  const name = `${prefix}/${rand()}/aws-key`;
  await sm.send(new CreateSecretCommand({ Name: name, SecretString: '{}' }));
  const sink = createSink({ kind: 'aws_secrets_manager', secretId: name, aws }, env);
  closers.push(() => sink.close());
  return { sink, name };
}
async function leakedUser(
  name = `${prefix}-app-${rand()}`,
): Promise<{ user: string; keyId: string; secret: string }> {
  await iam.send(new CreateUserCommand({ UserName: name }));
  const k = (await iam.send(new CreateAccessKeyCommand({ UserName: name }))).AccessKey!;
  return { user: name, keyId: k.AccessKeyId!, secret: k.SecretAccessKey! };
}
async function keysOf(user: string) {
  return (await iam.send(new ListAccessKeysCommand({ UserName: user }))).AccessKeyMetadata ?? [];
}
async function tagsOf(user: string) {
  return (await iam.send(new ListUserTagsCommand({ UserName: user }))).Tags ?? [];
}
async function current(name: string): Promise<Record<string, string>> {
  return JSON.parse((await sm.send(new GetSecretValueCommand({ SecretId: name }))).SecretString!);
}
const failure = failureProbe();
const ref = (keyId: string) => ({
  workflowId: `killswitch-aws_access_key-${rand()}${rand()}`,
  credentialRef: { accessKeyId: keyId },
});

beforeAll(() => {
  iam = new IAMClient({ region: 'us-east-1', endpoint, credentials: admin });
  sm = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials: admin });
});
afterAll(async () => {
  for (const c of closers) await c();
  iam?.destroy();
  sm?.destroy();
});

describe('AwsIamProvider', () => {
  it('emergency: revoke deletes the key (twice: one state), the leaked key is proven dead, the replacement works and is AWSCURRENT', async () => {
    const p = provider();
    const { user, keyId, secret } = await leakedUser();
    expect(await whoAmI(keyId, secret)).toMatch(new RegExp(`:user/${user}$`));
    const r = { ...ref(keyId), mode: 'emergency' as const };

    const first = await p.revoke(r);
    expect(first.revokedAt).toMatch(ISO_TIME);
    expect(await keysOf(user)).toHaveLength(0);
    expect(await whoAmI(keyId, secret)).toBe('refused:InvalidClientTokenId');
    // A re-run (a fresh worker: nothing cached) finds the record on the user and succeeds unchanged.
    const again = await provider().revoke(r);
    expect(again.revokedAt).toBe(first.revokedAt);
    expect((await tagsOf(user)).filter((t) => t.Key === revokedTag(keyId))).toEqual([
      { Key: revokedTag(keyId), Value: `${first.revokedAt} ${r.workflowId}` },
    ]);

    expect(await p.verifyDead(r, secret)).toMatchObject({ method: 'login_rejected' });
    expect(await provider().verifyDead(r, undefined)).toMatchObject({ method: 'revoked_by_owner' });

    const { sink, name } = await sinkWithSecret();
    const issued = await provider().issueReplacement(r, sink);
    expect(issued).toMatchObject({ delivered: true });
    expect(issued.sinkRef).toMatch(/#[0-9a-f-]{36}$/);
    expect(JSON.stringify(issued)).not.toMatch(/secretAccessKey/);
    const delivered = await current(name);
    expect(Object.keys(delivered).sort()).toEqual(['accessKeyId', 'secretAccessKey']);
    expect(await whoAmI(delivered.accessKeyId!, delivered.secretAccessKey!)).toMatch(
      new RegExp(`:user/${user}$`),
    );
    expect(JSON.stringify(issued)).not.toContain(delivered.secretAccessKey);

    // A retried issue leaves one replacement (the one the sink holds), never two or three keys.
    await p.issueReplacement(r, sink);
    const after = await current(name);
    expect(after.accessKeyId).not.toBe(delivered.accessKeyId);
    expect((await keysOf(user)).map((k) => k.AccessKeyId)).toEqual([after.accessKeyId]);
    expect(await whoAmI(after.accessKeyId!, after.secretAccessKey!)).toMatch(new RegExp(`:user/${user}$`));
  });

  it('graceful: both keys work after issue, only the replacement after revoke; the previous sink value stays AWSPREVIOUS', async () => {
    const p = provider();
    const { user, keyId, secret } = await leakedUser();
    const { sink, name } = await sinkWithSecret();
    const r = { ...ref(keyId), mode: 'graceful' as const };
    await p.issueReplacement(r, sink);
    const replacement = await current(name);
    expect(await keysOf(user)).toHaveLength(2);
    expect(await whoAmI(keyId, secret)).toMatch(/:user\//);
    expect(await whoAmI(replacement.accessKeyId!, replacement.secretAccessKey!)).toMatch(/:user\//);
    expect(await failure(p.verifyDead(r, secret))).toEqual({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });
    expect(await failure(p.verifyDead(r, undefined))).toEqual({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });
    const previous = JSON.parse(
      (await sm.send(new GetSecretValueCommand({ SecretId: name, VersionStage: 'AWSPREVIOUS' })))
        .SecretString!,
    );
    expect(previous).toEqual({});

    await p.revoke(r);
    expect(await whoAmI(keyId, secret)).toBe('refused:InvalidClientTokenId');
    expect(await whoAmI(replacement.accessKeyId!, replacement.secretAccessKey!)).toMatch(
      new RegExp(`:user/${user}$`),
    );
    expect((await keysOf(user)).map((k) => k.AccessKeyId)).toEqual([replacement.accessKeyId]);
    expect(await p.verifyDead(r, secret)).toMatchObject({ method: 'login_rejected' });
  });

  it('quarantine keeps the key, inactive, with the deny-all policy; twice leaves the same state', async () => {
    const p = provider();
    const { user, keyId } = await leakedUser();
    const r = { ...ref(keyId), mode: 'emergency' as const, quarantine: true };
    const first = await p.revoke(r);
    const second = await p.revoke(r);
    expect(second.revokedAt).toBe(first.revokedAt);
    expect(await keysOf(user)).toMatchObject([{ AccessKeyId: keyId, Status: 'Inactive' }]);
    expect((await iam.send(new ListUserPoliciesCommand({ UserName: user }))).PolicyNames).toEqual([
      QUARANTINE_POLICY,
    ]);
    const doc = (await iam.send(new GetUserPolicyCommand({ UserName: user, PolicyName: QUARANTINE_POLICY })))
      .PolicyDocument!;
    expect(JSON.parse(decodeURIComponent(doc)).Statement).toEqual([
      { Sid: 'KillSwitchQuarantine', Effect: 'Deny', Action: '*', Resource: '*' },
    ]);
    expect(await p.verifyDead(r, undefined)).toMatchObject({ method: 'revoked_by_owner' });
  });

  it('expireSessions puts one "revoke older sessions" policy, kept as it is by a second run', async () => {
    const p = provider();
    const { user, keyId } = await leakedUser();
    const r = ref(keyId);
    const before = Date.now();
    const first = await p.expireSessions(r);
    const second = await provider().expireSessions(r);
    expect(second.sessionsExpiredAt).toBe(first.sessionsExpiredAt);
    expect(Date.parse(first.sessionsExpiredAt!)).toBeGreaterThanOrEqual(before - 1000);
    expect((await iam.send(new ListUserPoliciesCommand({ UserName: user }))).PolicyNames).toEqual([
      SESSIONS_POLICY,
    ]);
    const doc = JSON.parse(
      decodeURIComponent(
        (await iam.send(new GetUserPolicyCommand({ UserName: user, PolicyName: SESSIONS_POLICY })))
          .PolicyDocument!,
      ),
    );
    expect(doc.Statement).toHaveLength(1);
    expect(doc.Statement[0]).toMatchObject({
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { DateLessThan: { 'aws:TokenIssueTime': first.sessionsExpiredAt } },
    });
  });

  it('a dry run changes nothing', async () => {
    const p = provider();
    const { user, keyId, secret } = await leakedUser();
    const r = { ...ref(keyId), mode: 'emergency' as const, dryRun: true };
    expect((await p.revoke(r)).revokedAt).toBeNull();
    expect((await p.issueReplacement(r, noSink)).issuedAt).toBeNull();
    expect((await p.expireSessions(r)).sessionsExpiredAt).toBeNull();
    expect(await p.verifyDead(r, secret)).toEqual({ verifiedDeadAt: null, method: 'dry_run' });
    expect(await keysOf(user)).toMatchObject([{ AccessKeyId: keyId, Status: 'Active' }]);
    expect(await tagsOf(user)).toEqual([]);
    expect((await iam.send(new ListUserPoliciesCommand({ UserName: user }))).PolicyNames).toEqual([]);
  });

  it('classifies: unknown key, a user outside `users`, an admin without permission, the two-key limit, an unreachable endpoint', async () => {
    const p = provider();
    const r = (keyId: string) => ({ ...ref(keyId), mode: 'emergency' as const });
    expect(await failure(p.revoke(r('AKIAUNKNOWN000000000')))).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });

    const outsider = await leakedUser(`other-${rand()}`);
    expect(await failure(p.revoke(r(outsider.keyId)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(await keysOf(outsider.user)).toMatchObject([{ Status: 'Active' }]);

    // An admin key that may read IAM but not change it: moto evaluates the policy and says AccessDenied.
    const weakAdmin = await leakedUser(`${prefix}-readonly-${rand()}`);
    await iam.send(
      new PutUserPolicyCommand({
        UserName: weakAdmin.user,
        PolicyName: 'read-only',
        PolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Action: ['iam:Get*', 'iam:List*'], Resource: '*' }],
        }),
      }),
    );
    const victim = await leakedUser();
    const weak = provider({}, { AWS_ADMIN_KEY_ID: weakAdmin.keyId, AWS_ADMIN_SECRET: weakAdmin.secret });
    expect(await failure(weak.revoke(r(victim.keyId)))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(await keysOf(victim.user)).toMatchObject([{ Status: 'Active' }]);

    // Graceful needs a second key slot: a user already at two keys is a human's decision.
    const full = await leakedUser();
    await iam.send(new CreateAccessKeyCommand({ UserName: full.user }));
    const { sink } = await sinkWithSecret();
    expect(await failure(p.issueReplacement({ ...r(full.keyId), mode: 'graceful' }, sink))).toEqual({
      type: AWS_KEY_LIMIT,
      nonRetryable: true,
    });
    expect(await keysOf(full.user)).toHaveLength(2);

    const offline = provider({ aws: { ...aws, endpointUrl: 'http://127.0.0.1:9' } });
    expect(await failure(offline.revoke(r(victim.keyId)))).toEqual({ type: 'plain' });
  });
});

describe('aws_iam inventory kind and aws_access_key findings', () => {
  it('owns access key ids by their shape and the account, without any API call', () => {
    const inv = parseInventory({
      systems: [{ name: 'aws-prod', kind: 'aws_iam', accountId: '123456789012' }],
    });
    const owner = (credentialRef: Record<string, string>) =>
      matchOwner(inv, { credentialType: 'aws_access_key', credentialRef }).kind;
    expect(owner({ accessKeyId: 'AKIAABCDEFGHIJKLMNOP' })).toBe('owned');
    expect(owner({ accessKeyId: 'AKIAABCDEFGHIJKLMNOP', accountId: '123456789012' })).toBe('owned');
    expect(owner({ accessKeyId: 'AKIAABCDEFGHIJKLMNOP', accountId: '999999999999' })).toBe('unowned');
    expect(owner({ accessKeyId: 'not-a-key-id' })).toBe('unowned');
    expect(owner({})).toBe('unowned');
    expect(parseInventory({ systems: [{ name: 'a', kind: 'aws_iam' }] }).systems[0]).toMatchObject({
      users: ['*'],
      aws: { region: 'us-east-1' },
    });
    expect(() => parseInventory({ systems: [{ name: 'a', kind: 'aws_iam', accountId: '12' }] })).toThrow(
      'systems[0].accountId',
    );
    expect(() =>
      parseInventory({
        systems: [
          {
            name: 'a',
            kind: 'aws_iam',
            mode: 'graceful',
            quarantine: true,
            sink: { kind: 'aws_secrets_manager', secretId: 's' },
          },
        ],
      }),
    ).not.toThrow();
  });

  it('splits a leaked "id:secret" into reference and evidence, and never treats a bare key id as the secret', () => {
    const keys = createServerKeys(newServerKey());
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    const pair = reduceFinding(
      {
        source: 'generic',
        credentialType: 'aws_access_key',
        secret: `AKIAIOSFODNN7EXAMPLE:${secret}`,
        severity: 'high',
      },
      keys,
      new Date(),
    );
    expect(pair.detection.credentialRef).toEqual({ accessKeyId: 'AKIAIOSFODNN7EXAMPLE' });
    expect(pair.leakedValue).toBe(secret);
    expect(JSON.stringify(pair.detection)).not.toContain(secret);
    const bare = reduceFinding(
      {
        source: 'generic',
        credentialType: 'aws_access_key',
        secret: 'AKIAIOSFODNN7EXAMPLE',
        severity: 'high',
      },
      keys,
      new Date(),
    );
    expect(bare.detection).toMatchObject({
      credentialRef: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE' },
      hasEvidence: false,
    });
    expect(bare.leakedValue).toBeUndefined();
    const separate = reduceFinding(
      {
        source: 'generic',
        credentialType: 'aws_access_key',
        secret,
        credentialRef: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE' },
        severity: 'high',
      },
      keys,
      new Date(),
    );
    expect(separate.leakedValue).toBe(secret);
  });
});

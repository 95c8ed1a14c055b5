/**
 * The Secrets Manager sink against moto (real SDK calls, IAM auth enforced): a put becomes
 * AWSCURRENT and the previous value AWSPREVIOUS, a retry with the same token and value adds no
 * version, a new value under the same token does not collide, and errors are classified by type.
 */
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretsManagerSink } from '../../activities/sinks/aws-secrets-manager';
import { createSink } from '../../activities/sinks';
import { parseInventory } from '../../lib/inventory';
import { ErrorType } from '../../contracts/errors';
import { rand } from '../helpers/harness';
import { motoConnection } from '../helpers/aws';
import { failureProbe } from '../helpers/failure';

const { endpoint, admin, env: awsEnv, aws } = motoConnection('SINK_KEY_ID', 'SINK_SECRET');
const env = awsEnv;
let sm: SecretsManagerClient;
const sinks: SecretsManagerSink[] = [];

function sinkFor(secretId: string, e: Record<string, string> = env): SecretsManagerSink {
  const s = new SecretsManagerSink(secretId, aws, e);
  sinks.push(s);
  return s;
}

async function newSecret(): Promise<{ name: string; arn: string }> {
  const name = `ks-test/${rand()}/app-key`;
  const r = await sm.send(
    new CreateSecretCommand({
      Name: name,
      SecretString: JSON.stringify({ accessKeyId: 'AKIAORIGINAL', secretAccessKey: 'original' }),
    }),
  );
  return { name, arn: r.ARN! };
}

const failure = failureProbe();

beforeAll(() => {
  sm = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials: admin });
});
afterAll(async () => {
  for (const s of sinks) await s.close();
  sm?.destroy();
});

describe('SecretsManagerSink', () => {
  it('makes the value AWSCURRENT, keeps the previous one AWSPREVIOUS, and returns only ARN#version', async () => {
    const { name, arn } = await newSecret();
    const value = {
      accessKeyId: `AKIA${rand().toUpperCase()}NEWKEY`,
      secretAccessKey: `new-secret-${rand()}`,
    };
    const { ref } = await sinkFor(name).put(value, { idempotencyToken: `wf-${rand()}-issue` });
    expect(ref).toMatch(new RegExp(`^${arn.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}#[0-9a-f-]{36}$`));
    expect(ref).not.toContain(value.secretAccessKey);

    const current = await sm.send(new GetSecretValueCommand({ SecretId: name }));
    expect(JSON.parse(current.SecretString!)).toEqual(value);
    expect(current.VersionId).toBe(ref.split('#')[1]);
    expect(current.VersionStages).toContain('AWSCURRENT');
    const previous = await sm.send(
      new GetSecretValueCommand({ SecretId: name, VersionStage: 'AWSPREVIOUS' }),
    );
    expect(JSON.parse(previous.SecretString!)).toEqual({
      accessKeyId: 'AKIAORIGINAL',
      secretAccessKey: 'original',
    });
  });

  it('is idempotent: the same token and value twice leave one new version', async () => {
    const { name } = await newSecret();
    const sink = sinkFor(name);
    const token = `wf-${rand()}-issue`;
    const value = { username: 'app', password: `pw-${rand()}` };
    const a = await sink.put(value, { idempotencyToken: token });
    const b = await sink.put({ password: value.password, username: 'app' }, { idempotencyToken: token });
    expect(b.ref).toBe(a.ref);
    const versions = await sm.send(new ListSecretVersionIdsCommand({ SecretId: name }));
    expect(versions.Versions).toHaveLength(2);
  });

  it('does not collide when a retry under the same token carries a new value', async () => {
    const { name } = await newSecret();
    const sink = sinkFor(name);
    const token = `wf-${rand()}-issue`;
    const first = await sink.put({ password: `first-${rand()}` }, { idempotencyToken: token });
    const second = await sink.put({ password: `second-${rand()}` }, { idempotencyToken: token });
    expect(second.ref).not.toBe(first.ref);
    const current = await sm.send(new GetSecretValueCommand({ SecretId: name }));
    expect(current.VersionId).toBe(second.ref.split('#')[1]);
    expect(JSON.parse(current.SecretString!).password).toMatch(/^second-/);
  });

  it('classifies a missing secret as Misconfigured and a forbidden put as PermissionDenied, both non-retryable', async () => {
    expect(
      await failure(sinkFor(`ks-test/${rand()}/missing`).put({ a: 'b' }, { idempotencyToken: 't' })),
    ).toEqual({ type: ErrorType.MISCONFIGURED, nonRetryable: true });

    // A real IAM user without any policy: moto evaluates IAM policies and refuses it.
    const iam = new IAMClient({ region: 'us-east-1', endpoint, credentials: admin });
    const user = `ks-sink-noperm-${rand()}`;
    await iam.send(new CreateUserCommand({ UserName: user }));
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName: user }))).AccessKey!;
    iam.destroy();
    const { name } = await newSecret();
    const weak = sinkFor(name, { SINK_KEY_ID: key.AccessKeyId!, SINK_SECRET: key.SecretAccessKey! });
    expect(await failure(weak.put({ a: 'b' }, { idempotencyToken: 't' }))).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
  });

  it('treats an unreachable endpoint as transient (a plain, retried error)', async () => {
    const dead = new SecretsManagerSink(
      'x',
      {
        region: 'us-east-1',
        endpointUrl: 'http://127.0.0.1:9',
        accessKeyIdEnv: 'SINK_KEY_ID',
        secretAccessKeyEnv: 'SINK_SECRET',
      },
      env,
    );
    sinks.push(dead);
    expect(await failure(dead.put({ a: 'b' }, { idempotencyToken: 't' }))).toEqual({ type: 'plain' });
  });

  it('is what the inventory builds for a system whose sink is aws_secrets_manager', async () => {
    const { name } = await newSecret();
    const system = parseInventory({
      systems: [
        { name: 'keys', kind: 'aws_iam', sink: { kind: 'aws_secrets_manager', secretId: name, aws } },
      ],
    }).systems[0]!;
    const sink = createSink(system.sink, env);
    try {
      expect(sink.kind).toBe('aws_secrets_manager');
      const { ref } = await sink.put({ k: `v-${rand()}` }, { idempotencyToken: `wf-${rand()}` });
      const current = await sm.send(new GetSecretValueCommand({ SecretId: name }));
      expect(`${current.ARN}#${current.VersionId}`).toBe(ref);
    } finally {
      await sink.close();
    }
  });
});

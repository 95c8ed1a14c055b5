/**
 * End to end for AWS over loopback: a signed generic webhook names a leaked IAM access key (its id
 * and secret); the real ingress, worker and Temporal server run the kill switch against moto (IAM
 * auth enforced), the replacement lands in Secrets Manager, the audit in PostgreSQL. Neither the
 * leaked secret nor the replacement's may appear in history, logs, the audit table or notifications.
 */
import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  IAMClient,
  ListAccessKeysCommand,
  ListUserPoliciesCommand,
} from '@aws-sdk/client-iam';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SESSIONS_POLICY } from '../../lib/systems/aws-iam-provider';
import type { KillSwitchResult } from '../../contracts/run';
import { parseSlackBody } from '../fakes/slack';
import { capturedLogs, deepText, rand, startHarness, type Harness } from '../helpers/harness';
import { motoConnection, whoAmI } from '../helpers/aws';
import { ISO_TIME } from '../helpers/matchers';

const { endpoint, admin, env: awsEnv, aws } = motoConnection('AWS_KS_ADMIN_KEY_ID', 'AWS_KS_ADMIN_SECRET');
const prefix = `ks-e2e-${rand()}`;
const secretName = `${prefix}/payments/aws-key`;

let h: Harness;
let iam: IAMClient;
let sm: SecretsManagerClient;
/** Every secret value this file saw: the leaked one and the replacement. */
const planted: string[] = [];
const runs: string[] = [];

beforeAll(async () => {
  iam = new IAMClient({ region: 'us-east-1', endpoint, credentials: admin });
  sm = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials: admin });
  await sm.send(new CreateSecretCommand({ Name: secretName, SecretString: '{}' }));
  h = await startHarness({
    env: awsEnv,
    config: {
      systems: [
        {
          name: 'aws-prod',
          kind: 'aws_iam',
          aws,
          accountId: '123456789012',
          users: [`${prefix}-*`],
          sink: { kind: 'aws_secrets_manager', secretId: secretName, aws },
        },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
  iam?.destroy();
  sm?.destroy();
});

describe('AWS kill switch end to end', () => {
  it('contains a leaked access key: deletes it, delivers a working replacement to Secrets Manager, proves the leaked one dead, audits', async () => {
    const user = `${prefix}-payments`;
    await iam.send(new CreateUserCommand({ UserName: user }));
    const leaked = (await iam.send(new CreateAccessKeyCommand({ UserName: user }))).AccessKey!;
    planted.push(leaked.SecretAccessKey!);
    expect(await whoAmI(leaked.AccessKeyId!, leaked.SecretAccessKey!)).toMatch(new RegExp(`:user/${user}$`));

    const res = await h.post({
      scanner: 'ci-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'aws_access_key',
      secret: leaked.SecretAccessKey,
      credentialRef: { accessKeyId: leaked.AccessKeyId, accountId: '123456789012' },
      location: { repository: 'acme/payments', file: 'deploy/ci.env', line: 3, commit: 'a1b2c3d4e5f6' },
      severity: 'critical',
    });
    expect(res.status).toBe(202);
    expect(res.json.workflowId).toMatch(/^killswitch-aws_access_key-[0-9a-f]{32}$/);
    runs.push(res.json.workflowId);

    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({
      system: 'aws-prod',
      kind: 'aws_iam',
      mode: 'emergency',
      sink: 'aws_secrets_manager',
      replacement: true,
    });
    expect(result.verification?.method).toBe('login_rejected');
    expect(result.timeline.revokedAt).toMatch(ISO_TIME);

    // The leaked key is gone and refused; the user holds exactly the replacement, which works.
    expect(await whoAmI(leaked.AccessKeyId!, leaked.SecretAccessKey!)).toBe('refused:InvalidClientTokenId');
    const current = await sm.send(new GetSecretValueCommand({ SecretId: secretName }));
    expect(current.VersionStages).toContain('AWSCURRENT');
    const replacement = JSON.parse(current.SecretString!) as { accessKeyId: string; secretAccessKey: string };
    planted.push(replacement.secretAccessKey);
    const keys = (await iam.send(new ListAccessKeysCommand({ UserName: user }))).AccessKeyMetadata!;
    expect(keys.map((k) => k.AccessKeyId)).toEqual([replacement.accessKeyId]);
    expect(await whoAmI(replacement.accessKeyId, replacement.secretAccessKey)).toMatch(
      new RegExp(`:user/${user}$`),
    );
    expect((await iam.send(new ListUserPoliciesCommand({ UserName: user }))).PolicyNames).toEqual([
      SESSIONS_POLICY,
    ]);

    const rows = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        res.json.workflowId,
      ])
    ).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'contained',
      owning_system: 'aws-prod',
      credential_type: 'aws_access_key',
      new_value_delivered: true,
      verification_method: 'login_rejected',
    });
    expect(rows[0]!.credential_ref).toMatchObject({ accessKeyId: leaked.AccessKeyId });

    const slack = h.slack.messages().filter((m) => m.text.includes(res.json.workflowId));
    expect(slack).toHaveLength(1);
    expect(slack[0]!.text).toContain('contained');
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(0);
  });

  it('escalates a key of a user outside the system without touching it', async () => {
    const user = `outsider-${rand()}`;
    await iam.send(new CreateUserCommand({ UserName: user }));
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName: user }))).AccessKey!;
    planted.push(key.SecretAccessKey!);
    const res = await h.post({
      credentialType: 'aws_access_key',
      secret: `${key.AccessKeyId}:${key.SecretAccessKey}`,
      severity: 'high',
    });
    expect(res.status).toBe(202);
    runs.push(res.json.workflowId);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('escalated');
    expect(result.failure).toMatchObject({ step: 'revoking', type: 'PermissionDenied' });
    expect(await whoAmI(key.AccessKeyId!, key.SecretAccessKey!)).toMatch(new RegExp(`:user/${user}$`));
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(1);
  });

  it('never lets a secret reach Temporal history, logs, the audit table, Slack or PagerDuty', async () => {
    expect(planted).toHaveLength(3);
    const histories: string[] = [];
    for (const id of runs) {
      const handle = h.client.workflow.getHandle(id);
      histories.push(deepText(await h.decodedHistory(id)));
      histories.push(JSON.stringify(await handle.describe()));
    }
    const places: Record<string, string> = {
      'Temporal history': histories.join('\n'),
      logs: capturedLogs.join(''),
      'audit table': JSON.stringify((await h.db.query('SELECT * FROM killswitch_audit')).rows),
      'Slack requests': h.slack.requests
        .map((r) => `${JSON.stringify(r.headers)}\n${r.body}\n${JSON.stringify(parseSlackBody(r))}`)
        .join('\n'),
      'PagerDuty requests': h.pagerduty.requests
        .map((r) => `${JSON.stringify(r.headers)}\n${r.body}`)
        .join('\n'),
    };
    // The searches are real: each place holds what it should.
    expect(places['Temporal history']).toContain('killSwitch');
    expect(places['Temporal history']).toContain('aws_iam');
    expect(places.logs).toContain('replacement issued');
    expect(places['audit table']).toContain('login_rejected');
    expect(places['Slack requests']).toContain('Leaked credential contained');
    expect(places['PagerDuty requests']).toContain('PermissionDenied');
    for (const secret of planted) {
      const forms = [
        secret,
        encodeURIComponent(secret),
        Buffer.from(secret).toString('base64'),
        JSON.stringify(secret).slice(1, -1),
      ];
      for (const [place, text] of Object.entries(places)) {
        for (const form of forms) expect(text.includes(form), `a secret found in ${place}`).toBe(false);
      }
    }
  });
});

/**
 * Graceful mode end to end on PostgreSQL with the Secrets Manager sink (moto): the replacement (a
 * clone login role) is issued and delivered first, both values work during the overlap held by a
 * durable timer, then the leaked password dies. The audit records when each happened.
 */
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KillSwitchResult, StepStatus } from '../../contracts/run';
import { capturedLogs, deepText, leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';
import { motoConnection } from '../helpers/aws';

const { endpoint, admin, env: awsEnv, aws } = motoConnection('AWS_KS_ADMIN_KEY_ID', 'AWS_KS_ADMIN_SECRET');
const secretName = `ks-graceful-${rand()}/app-db`;
let h: Harness;
let sm: SecretsManagerClient;

beforeAll(async () => {
  sm = new SecretsManagerClient({ region: 'us-east-1', endpoint, credentials: admin });
  await sm.send(new CreateSecretCommand({ Name: secretName, SecretString: '{}' }));
  h = await startHarness({
    env: awsEnv,
    config: {
      systems: [
        {
          name: 'owned-db',
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['app_*'],
          mode: 'graceful',
          overlap: '4s',
          sink: { kind: 'aws_secrets_manager', secretId: secretName, aws },
        },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
  sm?.destroy();
});

async function current(stage: 'AWSCURRENT' | 'AWSPREVIOUS') {
  const v = await sm.send(new GetSecretValueCommand({ SecretId: secretName, VersionStage: stage }));
  return { value: JSON.parse(v.SecretString!) as Record<string, string>, versionId: v.VersionId! };
}

describe('graceful mode', () => {
  it('delivers the replacement first, keeps both valid during the overlap, then kills the leaked password', async () => {
    const { role, password } = await h.owned.createRole();
    const res = await h.post({
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
      location: { repository: 'acme/api', file: '.env' },
    });
    expect(res.status).toBe(202);
    const handle = h.client.workflow.getHandle(res.json.workflowId);

    // During the overlap: the replacement sits in the sink as AWSCURRENT and works; so does the leaked one.
    const deadline = Date.now() + 20_000;
    while ((await handle.query<StepStatus>('currentStep')).step !== 'overlap') {
      if (Date.now() > deadline) throw new Error('never reached the overlap');
      await new Promise((r) => setTimeout(r, 50));
    }
    const during = await current('AWSCURRENT');
    expect(during.value).toMatchObject({ engine: 'postgres', username: `${role}_ks` });
    expect(await h.owned.loginFails(during.value.username!, during.value.password!)).toBeNull();
    expect(await h.owned.loginFails(role, password)).toBeNull();
    expect((await current('AWSPREVIOUS')).value).toEqual({});

    const result: KillSwitchResult = await handle.result();
    expect(result).toMatchObject({
      outcome: 'contained',
      rotation: { mode: 'graceful', newValueDelivered: true },
      verification: { method: 'login_rejected' },
    });
    expect(result.rotation!.sinkRef).toContain(`#${during.versionId}`);
    // After: only the replacement.
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    expect(await h.owned.loginFails(during.value.username!, during.value.password!)).toBeNull();

    const t = result.timeline;
    expect(Date.parse(t.revokedAt!) - Date.parse(t.replacementIssuedAt!)).toBeGreaterThanOrEqual(4000);
    const row = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        res.json.workflowId,
      ])
    ).rows[0]!;
    expect(row).toMatchObject({
      outcome: 'contained',
      kill_mode: 'graceful',
      new_value_delivered: true,
      sink_ref: result.rotation!.sinkRef,
    });
    expect(new Date(row.revoked_at).toISOString()).toBe(t.revokedAt);
    expect(new Date(row.replacement_issued_at).toISOString()).toBe(t.replacementIssuedAt);

    // Neither the leaked nor the replacement password went anywhere but the owner and the sink.
    const history = deepText(await h.decodedHistory(handle.workflowId));
    const everywhere = [
      history,
      capturedLogs.join(''),
      JSON.stringify(row),
      JSON.stringify(h.slack.requests),
      JSON.stringify(h.pagerduty.requests),
    ];
    for (const secret of [password, during.value.password!])
      for (const text of everywhere) expect(text.includes(secret)).toBe(false);
  });
});

/**
 * End to end over loopback for a Redis-owned credential: a leaked redis:// URL arrives through the
 * signed generic webhook, the real worker runs the killSwitch workflow on the real Temporal server,
 * the ACL user's password is reset on the real Redis, its live clients are killed, the users' Express
 * sessions (express-session + connect-redis) are ended, the audit lands in PostgreSQL, and the leaked
 * value appears nowhere the kill switch writes.
 */
import { randomBytes } from 'node:crypto';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import { expectNowhere, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import { redisFixtures, redisUrl, type RedisFixtures } from '../helpers/redis';
import { startSessionApp, type SessionApp } from '../helpers/session-app';
import { ISO_TIME } from '../helpers/matchers';

const rand = () => randomBytes(4).toString('hex');
let h: Harness;
let fx: RedisFixtures;
let app: SessionApp;
let sm: SecretsManagerClient;
const awsAdmin = inject('awsAdmin');
const aws = {
  region: 'us-east-1',
  endpointUrl: inject('awsEndpoint'),
  accessKeyIdEnv: 'AWS_KS_ADMIN_KEY_ID',
  secretAccessKeyEnv: 'AWS_KS_ADMIN_SECRET',
};
const secretName = `ks-e2e-${rand()}/cart/redis`;
const prefix = `sess-e2e-${rand()}:`;
const planted: string[] = [];
const runs: Array<{ workflowId: string }> = [];

beforeAll(async () => {
  fx = await redisFixtures();
  fx.trackPattern(`${prefix}*`);
  fx.trackPattern('killswitch:redis-replacement:cart-cache:*');
  const admin = await fx.createAdmin();
  planted.push(admin.password);
  app = await startSessionApp(prefix);
  sm = new SecretsManagerClient({ region: 'us-east-1', endpoint: aws.endpointUrl, credentials: awsAdmin });
  await sm.send(new CreateSecretCommand({ Name: secretName, SecretString: '{}' }));
  h = await startHarness({
    env: {
      CACHE_ADMIN_URL: admin.url,
      SESSIONS_REDIS_URL: redisUrl(),
      AWS_KS_ADMIN_KEY_ID: awsAdmin.accessKeyId,
      AWS_KS_ADMIN_SECRET: awsAdmin.secretAccessKey,
    },
    config: {
      systems: [
        {
          name: 'cache',
          kind: 'redis',
          adminUrlEnv: 'CACHE_ADMIN_URL',
          users: ['app_*'],
          hosts: ['127.0.0.1'],
          sessions: [
            {
              kind: 'connect_redis',
              urlEnv: 'SESSIONS_REDIS_URL',
              prefix,
              userField: 'passport.user',
              users: ['alice'],
            },
          ],
        },
        {
          name: 'cart-cache',
          kind: 'redis',
          adminUrlEnv: 'CACHE_ADMIN_URL',
          users: ['cart_*'],
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
  await app?.close();
  await fx?.cleanup();
  sm?.destroy();
});

async function auditRows(workflowId: string) {
  return (
    await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
      workflowId,
    ])
  ).rows;
}

describe('kill switch end to end: Redis', () => {
  it("contains a leaked Redis URL: resets the ACL password, kills its clients and the users' sessions, proves it dead, audits", async () => {
    const { user, password } = await fx.createUser();
    planted.push(password);
    const victims = [await fx.connectAs(user, password), await fx.connectAs(user, password)];
    const ended = victims.map((c) => new Promise<void>((resolve) => c.once('end', () => resolve())));
    const alice = [await app.login('alice'), await app.login('alice')];
    const bob = await app.login('bob');

    const res = await h.post({
      scanner: 'ci-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'redis_password',
      secret: `redis://${user}:${encodeURIComponent(password)}@127.0.0.1:6379/0`,
      location: { repository: 'acme/cart', file: 'config/cache.env', line: 3 },
      severity: 'critical',
    });
    expect(res.status).toBe(202);
    expect(res.json.workflowId).toMatch(/^killswitch-redis_password-[0-9a-f]{32}$/);
    runs.push(res.json);

    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({
      system: 'cache',
      kind: 'redis',
      mode: 'emergency',
      sink: 'none',
      replacement: false,
      userSessionTargets: 1,
    });
    expect(result.timeline.revokedAt).toMatch(ISO_TIME);
    expect(result.sessions?.terminated).toBe(2);
    expect(result.userSessions?.expired).toBe(2);
    expect(result.verification?.method).toBe('login_rejected');

    await Promise.all(ended);
    expect(await fx.authFails(user, password)).toBe('WRONGPASS');
    expect(await fx.passwordsOf(user)).toEqual([]);
    for (const c of alice) expect(await app.whoami(c)).toBeNull();
    expect(await app.whoami(bob)).toBe('bob');

    const rows = await auditRows(res.json.workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'contained',
      owning_system: 'cache',
      credential_type: 'redis_password',
      verification_method: 'login_rejected',
    });
    expect(rows[0]!.credential_ref).toEqual({ user, host: '127.0.0.1', port: '6379' });
    expect(h.slack.messages().filter((m) => m.text.includes(res.json.workflowId))).toHaveLength(1);
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(0);
  });

  it('escalates a user the server does not know (UnknownCredential) without creating it', async () => {
    const ghost = `app_ghost_${rand()}`;
    const secret = `ghost-${randomBytes(12).toString('base64url')}`;
    planted.push(secret);
    const res = await h.post({
      credentialType: 'redis_password',
      secret: `redis://${ghost}:${secret}@127.0.0.1:6379`,
    });
    expect(res.status).toBe(202);
    runs.push(res.json);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('escalated');
    expect(result.failure).toMatchObject({ step: 'revoking', type: 'UnknownCredential' });
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(1);
    expect(await fx.su.call('ACL', ['GETUSER', ghost])).toBeNull();
    expect(await auditRows(res.json.workflowId)).toMatchObject([
      { outcome: 'escalated', failure_type: 'UnknownCredential' },
    ]);
  });

  it('graceful: the replacement reaches Secrets Manager, both passwords work during the overlap, then only the replacement', async () => {
    const { user, password } = await fx.createUser({ prefix: 'cart' });
    planted.push(password);
    const victim = await fx.connectAs(user, password);
    const ended = new Promise<void>((resolve) => victim.once('end', () => resolve()));
    const res = await h.post({
      credentialType: 'redis_password',
      secret: `redis://${user}:${encodeURIComponent(password)}@127.0.0.1:6379`,
    });
    expect(res.status).toBe(202);
    runs.push(res.json);
    const handle = h.client.workflow.getHandle(res.json.workflowId);

    // Wait for the overlap, then read the replacement the applications would read.
    const deadline = Date.now() + 20_000;
    while ((await handle.query<{ step: string }>('currentStep')).step !== 'overlap') {
      if (Date.now() > deadline) throw new Error('the run never reached its overlap');
      await new Promise((r) => setTimeout(r, 50));
    }
    const stored = JSON.parse(
      (await sm.send(new GetSecretValueCommand({ SecretId: secretName }))).SecretString!,
    ) as Record<string, string>;
    expect(stored).toMatchObject({ engine: 'redis', username: user, host: '127.0.0.1', port: '6379' });
    const replacement = stored.password!;
    planted.push(replacement);
    expect(await fx.authFails(user, password)).toBeNull();
    expect(await fx.authFails(user, replacement)).toBeNull();

    const result: KillSwitchResult = await handle.result();
    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({
      system: 'cart-cache',
      mode: 'graceful',
      sink: 'aws_secrets_manager',
      replacement: true,
    });
    expect(result.rotation).toMatchObject({ mode: 'graceful', newValueDelivered: true });
    expect(result.rotation?.sinkRef).toContain(secretName);
    expect(result.timeline.replacementIssuedAt! < result.timeline.revokedAt!).toBe(true);
    expect(result.verification?.method).toBe('login_rejected');
    await ended;
    expect(await fx.authFails(user, password)).toBe('WRONGPASS');
    expect(await fx.authFails(user, replacement)).toBeNull();
    expect((await fx.passwordsOf(user)).length).toBe(1);
  });

  it('never lets a planted secret reach Temporal history, logs, the audit table, Slack or PagerDuty', async () => {
    expect(runs).toHaveLength(3);
    const places = await secretPlaces(
      h,
      runs.map((r) => r.workflowId),
    );
    // The searches are real: the places hold what they should.
    expect(places['Temporal history']).toContain('redis_password');
    expect(places['Temporal history']).toContain('every password of');
    expect(places.logs).toContain('credential revoked');
    expect(places['audit table']).toContain('login_rejected');
    expect(places['Slack requests']).toContain('Leaked credential contained');
    expect(places['PagerDuty requests']).toContain('UnknownCredential');
    expectNowhere(places, planted);
  });
});

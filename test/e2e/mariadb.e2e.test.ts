/**
 * End to end over loopback for the `mariadb` kind, the one added as one file plus one line
 * (lib/systems/mariadb.ts, lib/systems/kinds.ts): a signed webhook carrying a leaked mysql:// URL
 * reaches the real ingress, the real worker runs the killSwitch workflow, the user's password on the
 * real MariaDB (MARIADB_URL, default mysql://root@127.0.0.1:3306/test) is rotated, its open
 * connection killed, the leaked password proven dead (1045), the run audited; and an admin without
 * privileges escalates. Every user created here is dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import mysql, { type Connection } from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import { expectNowhere, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import { ISO_TIME } from '../helpers/matchers';

const ADMIN_URL = process.env.MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/test';
const server = new URL(ADMIN_URL);
const port = Number(server.port || 3306);

let h: Harness;
let su: Connection;
const created: string[] = [];
const open: Connection[] = [];
const planted: string[] = [];
const workflowIds: string[] = [];

async function createUser(grants: string[] = []): Promise<{ user: string; password: string }> {
  const user = `kse_${rand()}`;
  const password = randomBytes(12).toString('base64url');
  await su.query('CREATE USER ?@? IDENTIFIED BY ?', [user, '%', password]);
  created.push(user);
  for (const g of grants) await su.query(`GRANT ${g} TO ?@?`, [user, '%']);
  planted.push(password);
  return { user, password };
}

async function loginErrno(user: string, password: string): Promise<number | null> {
  try {
    await (await mysql.createConnection({ host: server.hostname, port, user, password })).end();
    return null;
  } catch (err) {
    return (err as { errno?: number }).errno ?? -1;
  }
}

const leakedUrl = (user: string, password: string) =>
  `mysql://${user}:${encodeURIComponent(password)}@${server.hostname}:${port}/app`;

beforeAll(async () => {
  su = await mysql.createConnection({ uri: ADMIN_URL });
  // The second system's admin may read the accounts but not ALTER USER: its runs must escalate.
  const weak = await createUser(['SELECT ON mysql.user']);
  const weakUrl = new URL(ADMIN_URL);
  weakUrl.username = weak.user;
  weakUrl.password = weak.password;
  weakUrl.pathname = '';
  h = await startHarness({
    env: { MARIADB_ADMIN_URL: ADMIN_URL, WEAK_MARIADB_ADMIN_URL: weakUrl.href },
    config: {
      systems: [
        {
          name: 'owned-mariadb',
          kind: 'mariadb',
          adminUrlEnv: 'MARIADB_ADMIN_URL',
          users: ['kse_*'],
          hosts: ['127.0.0.1'],
        },
        {
          name: 'weak-mariadb',
          kind: 'mariadb',
          adminUrlEnv: 'WEAK_MARIADB_ADMIN_URL',
          users: ['kse_*'],
          hosts: ['db.weak.internal'],
        },
      ],
    },
  });
});
afterAll(async () => {
  await Promise.allSettled(open.map((c) => c.end().catch(() => c.destroy())));
  await h?.close();
  for (const user of created) await su.query('DROP USER IF EXISTS ?@?', [user, '%']);
  await su?.end();
});

describe('kill switch end to end, mariadb kind', () => {
  it('contains a leaked MariaDB password: rotates, kills the open connection, proves it dead (1045), audits', async () => {
    const { user, password } = await createUser();
    const victim = await mysql.createConnection({ host: server.hostname, port, user, password });
    victim.on('error', () => undefined);
    open.push(victim);
    await victim.query('SELECT 1');

    const res = await h.post({
      scanner: 'ci-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'mysql_password',
      secret: leakedUrl(user, password),
      location: { repository: 'acme/orders', file: 'deploy/.env', line: 3 },
      severity: 'critical',
    });
    expect(res.status).toBe(202);
    expect(res.json.workflowId).toMatch(/^killswitch-mysql_password-[0-9a-f]{32}$/);
    workflowIds.push(res.json.workflowId);

    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({
      system: 'owned-mariadb',
      kind: 'mariadb',
      mode: 'emergency',
      sink: 'none',
      replacement: false,
    });
    expect(result.timeline.revokedAt).toMatch(ISO_TIME);
    expect(result.sessions?.terminated).toBe(1);
    expect(result.verification?.method).toBe('login_rejected');

    await expect(victim.query('SELECT 1')).rejects.toThrow();
    expect(await loginErrno(user, password)).toBe(1045);

    const rows = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        res.json.workflowId,
      ])
    ).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'contained',
      owning_system: 'owned-mariadb',
      credential_type: 'mysql_password',
      verification_method: 'login_rejected',
    });
    expect(rows[0]!.credential_ref).toMatchObject({ user, host: server.hostname });
  });

  it('escalates when the admin may not ALTER USER: PermissionDenied, PagerDuty, and the password still works', async () => {
    const { user, password } = await createUser();
    const res = await h.post({
      credentialType: 'mysql_password',
      secret: `mysql://${user}:${encodeURIComponent(password)}@db.weak.internal:3306/app`,
      severity: 'high',
    });
    expect(res.status).toBe(202);
    workflowIds.push(res.json.workflowId);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('escalated');
    expect(result.owner).toMatchObject({ system: 'weak-mariadb' });
    expect(result.failure).toMatchObject({ step: 'revoking', type: 'PermissionDenied' });
    expect(result.pagerduty).toEqual({ status: 'sent', dedupKey: res.json.workflowId });
    expect(await loginErrno(user, password)).toBeNull();
  });

  it('never writes a leaked password anywhere', async () => {
    expectNowhere(await secretPlaces(h, workflowIds), planted);
  });
});

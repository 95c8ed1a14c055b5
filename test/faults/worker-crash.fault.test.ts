/**
 * Fault 2, the worker dies mid-rotation: the production worker entry runs as its own OS process;
 * its `ALTER ROLE` is held on the role's row lock, and the process is killed with SIGKILL while it
 * waits (no drain, no goodbye to Temporal). The containment steps are local activities inside the
 * run's first workflow task, so a new worker process picks the run up once that task times out
 * (10 s, the server's default workflow task timeout), replays it, finds no marker for the lost
 * steps and runs them again: the lookups and the rotation, which are idempotent. Proof: the run
 * completes contained, one revokeCredential marker, one audit row, one Slack message.
 * Fault 2b (below) kills it later: after the revoke really changed the password, before the
 * workflow task that ran it completed, so the replay revokes a second time.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, inject, it } from 'vitest';
import { expectNowhere, leakedUrl, rand, secretPlaces, startHarness, type Harness } from '../helpers/harness';
import { localActivityMarkers } from '../helpers/history';
import {
  activityCounts,
  auditRows,
  blockedAlter,
  heldInTransaction,
  executionsOf,
  holdRole,
  slackMessagesOf,
  spawnWorker,
  waitFor,
  type WorkerProcess,
} from './support';

/**
 * The app's sessions for the second scenario: a connect-pg-simple table in the audit cluster (its
 * own schema). The worker reaches it through APP_SESSIONS_DB, whose connection asks the database
 * to notice a dead client within a second even while a statement waits on a lock.
 */
const sessionSchema = `ks_crash_sessions_${rand()}`;
const sessionTable = `${pg.escapeIdentifier(sessionSchema)}."session"`;
function appSessionsUrl(): string {
  const u = new URL(inject('auditDatabaseUrl'));
  u.searchParams.set('options', '-c client_connection_check_interval=1s');
  return u.toString();
}

let h: Harness;
const workers: WorkerProcess[] = [];
beforeAll(async () => {
  const pgSystem = {
    kind: 'postgres',
    adminUrlEnv: 'OWNED_DB_ADMIN_URL',
    hosts: ['127.0.0.1', 'db.internal'],
  };
  h = await startHarness({
    worker: false,
    env: { APP_SESSIONS_DB: appSessionsUrl() },
    config: {
      systems: [
        // The harness's default system, for the first scenario.
        { ...pgSystem, name: 'owned-db', roles: ['app_*', 'dba_*'] },
        // Same cluster, other roles, whose users' app sessions die with the credential: a later
        // step of the same workflow task, to hang on cue.
        {
          ...pgSystem,
          name: 'owned-db-crm',
          roles: ['crm_*'],
          sessions: [
            {
              kind: 'connect_pg_simple',
              urlEnv: 'APP_SESSIONS_DB',
              schema: sessionSchema,
              table: 'session',
              userField: 'passport.user',
              users: ['crm-owner'],
            },
          ],
        },
      ],
    },
  });
  // The database notices a dead client within a second even while the backend waits on a lock,
  // so the killed worker's half-done ALTER ROLE is rolled back instead of committing later.
  await h.owned.su.query(`ALTER ROLE ${h.owned.adminRole} SET client_connection_check_interval = '1s'`);
  // connect-pg-simple's table, as its createTableIfMissing makes it.
  await h.db.query(`CREATE SCHEMA ${pg.escapeIdentifier(sessionSchema)}`);
  await h.db.query(
    `CREATE TABLE ${sessionTable} (sid varchar NOT NULL PRIMARY KEY, sess json NOT NULL, expire timestamp(6) NOT NULL)`,
  );
});
// Each scenario's runs belong to its own workers: none may linger on the task queue into the next.
afterEach(async () => {
  for (const w of workers.splice(0)) await w.stop();
});
afterAll(async () => {
  for (const w of workers) await w.stop();
  await h?.db
    .query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(sessionSchema)} CASCADE`)
    .catch(() => undefined);
  await h?.close();
});

it('SIGKILL of the worker mid-rotation, then a restart: the run completes, one rotation, one audit row', async () => {
  const first = spawnWorker(h);
  workers.push(first);
  await first.ready;

  const { role, password } = await h.owned.createRole();
  const lock = await holdRole(role);
  try {
    const res = await h.post({
      scanner: 'crash-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
    });
    expect(res.status).toBe(202);
    const { workflowId, runId } = res.json as { workflowId: string; runId: string };

    const pid = await waitFor('the worker to be inside ALTER ROLE, blocked', () => blockedAlter(h), 30_000);
    const killedAt = Date.now();
    first.child.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    // Its connection is gone and nothing was rotated: the kill landed mid-rotation.
    await waitFor(
      'the killed worker’s backend to end',
      async () => {
        const r = await h.owned.su.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
        return r.rows.length === 0;
      },
      15_000,
    );
    await lock.release();
    expect(await h.owned.loginFails(role, password)).toBeNull();
    const during = await h.client.workflow.getHandle(workflowId).describe();
    expect(during.status.name).toBe('RUNNING');
    expect((await auditRows(h, workflowId)).length).toBe(0);

    const second = spawnWorker(h);
    workers.push(second);
    await second.ready;
    const result = await h.client.workflow.getHandle(workflowId).result();
    // The new worker waited for the lost workflow task's timeout (10 s), not an activity timeout.
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(8_000);
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');

    const counts = await activityCounts(h, workflowId);
    // One recorded result: the killed worker's attempt never reached history, the replay ran it again.
    expect(counts.revokeCredential).toMatchObject({ scheduled: 1, maxAttempt: 1, local: true });
    expect(counts.assess).toMatchObject({ scheduled: 1, local: true });
    await expectContainedOnce({ workflowId, runId, password, outputs: [first, second] });
  } finally {
    await lock.release();
  }
});

/** One audit row (contained, verified dead), one execution, one Slack message, no page, the secret nowhere. */
async function expectContainedOnce(o: {
  workflowId: string;
  runId: string;
  password: string;
  outputs: [WorkerProcess, WorkerProcess];
}): Promise<void> {
  const { workflowId, runId } = o;
  expect((await activityCounts(h, workflowId)).recordAudit?.scheduled).toBe(1);
  expect(await executionsOf(h, workflowId)).toBe(1);
  const rows = await auditRows(h, workflowId);
  expect(rows).toHaveLength(1);
  expect(rows[0]).toMatchObject({
    outcome: 'contained',
    run_id: runId,
    verification_method: 'login_rejected',
  });
  expect(slackMessagesOf(h, workflowId)).toHaveLength(1);
  expect(
    h.slack.messageRequests().filter((m) => m.method === 'chat.postMessage' && m.text.includes(workflowId)),
  ).toHaveLength(1);
  expect(h.pagerduty.events()).toHaveLength(0);
  const [first, second] = o.outputs;
  expectNowhere(
    await secretPlaces(h, [workflowId], {
      'first worker output': first.output(),
      'second worker output': second.output(),
    }),
    [o.password],
  );
}

/** The role's stored SCRAM verifier, digested (never printed): it changes with every ALTER ROLE … PASSWORD. */
async function verifierOf(role: string): Promise<string> {
  const r = await h.owned.su.query<{ v: string }>(
    'SELECT rolpassword AS v FROM pg_authid WHERE rolname = $1',
    [role],
  );
  return createHash('sha256').update(r.rows[0]!.v).digest('hex').slice(0, 16);
}

/** Holds connect-pg-simple's table locked: the session-expiry DELETE then waits until `release()`. */
async function holdSessionTable(): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: inject('auditDatabaseUrl') });
  await c.connect();
  return heldInTransaction(c, `LOCK TABLE ${sessionTable} IN ACCESS EXCLUSIVE MODE`);
}

/** The backend of a session-expiry DELETE blocked on the table lock, once there is one. */
async function blockedSessionDelete(): Promise<number | undefined> {
  const r = await h.db.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'DELETE FROM%' AND query LIKE $1`,
    [`%${sessionSchema}%`],
  );
  return r.rows[0]?.pid;
}

const sessionsOf = async (user: string) =>
  (
    await h.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${sessionTable} WHERE sess #>> '{passport,user}' = $1`,
      [user],
    )
  ).rows[0]!.n;

/**
 * Fault 2b, the worker dies after the rotation, before the workflow task that ran it completed.
 * The containment steps are local activities: their results reach history as markers only when the
 * workflow task completes (or when core heartbeats it, at 80% of the 10 s task timeout). Here the
 * revoke has really happened in PostgreSQL (the leaked password already fails), but the task is
 * still open: a later step of it (the app-session expiry) waits on a table lock, and the worker is
 * SIGKILLed there. History then holds no marker at all, so the replay on a new worker runs
 * assess and revokeCredential again.
 *
 * What the second revoke did, and why it is safe: PostgresProvider.revoke runs
 * `ALTER ROLE … WITH PASSWORD <a fresh random value it discards>` each time. The replay replaced
 * one random password nobody holds by another random password nobody holds (the verifier in
 * pg_authid changes a second time, asserted below): the leaked value was dead after the first run
 * and stays dead, the role ends in the same state (locked until an operator or a replacement sets a
 * password), and no holder of a valid value is cut off, since this system issues no replacement
 * (sink: none; with a sink, issueReplacement re-runs after the second revoke and the sink is
 * overwritten under the same `${workflowId}-issue` key, so sink and role agree again). assess
 * re-counts nothing (the breaker counts once per workflow id), expireSessions terminates no one
 * new, and the session DELETE of the killed worker never committed, so the replay's is the one.
 */
it('SIGKILL of the worker after the rotation, before its workflow task completed: the replay revokes again, harmlessly; one marker, one audit row', async () => {
  const first = spawnWorker(h);
  workers.push(first);
  await first.ready;

  const { role, password } = await h.owned.createRole({ prefix: 'crm' });
  const original = await verifierOf(role);
  const sess = (sid: string, user: string) =>
    h.db.query(`INSERT INTO ${sessionTable} (sid, sess, expire) VALUES ($1, $2, now() + interval '1 day')`, [
      sid,
      JSON.stringify({ cookie: {}, passport: { user } }),
    ]);
  await sess(`s-${rand()}`, 'crm-owner');
  await sess(`s-${rand()}`, 'crm-owner');
  await sess(`s-${rand()}`, 'someone-else');

  const lock = await holdSessionTable();
  try {
    const res = await h.post({
      scanner: 'crash-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
    });
    expect(res.status).toBe(202);
    const { workflowId, runId } = res.json as { workflowId: string; runId: string };

    // The workflow task ran assess, revokeCredential and expireSessions and now waits in
    // expireUserSessions: the rotation is real in the owning system.
    const pid = await waitFor(
      'the worker’s session expiry to wait on the table lock',
      blockedSessionDelete,
      30_000,
      50,
    );
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const afterFirstRevoke = await verifierOf(role);
    expect(afterFirstRevoke === original, 'the first revoke changed the password').toBe(false);

    const killedAt = Date.now();
    first.child.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    // The history as the killed worker left it (no live worker can add to it now): the workflow
    // task was started and never completed, and no step's result reached it. Killed after core's
    // heartbeat (~8 s) or after the run, this finds the revokeCredential marker and fails.
    const atKill = await h.client.workflow.getHandle(workflowId).fetchHistory();
    expect(localActivityMarkers(atKill).filter((m) => m.activityType === 'revokeCredential')).toHaveLength(0);
    expect(localActivityMarkers(atKill)).toHaveLength(0);
    const taskStarted = atKill.events!.filter((e) => e.workflowTaskStartedEventAttributes);
    expect(taskStarted).toHaveLength(1);
    expect(atKill.events!.filter((e) => e.workflowTaskCompletedEventAttributes)).toHaveLength(0);
    const startedAt =
      Number(taskStarted[0]!.eventTime!.seconds) * 1000 +
      Math.floor((taskStarted[0]!.eventTime!.nanos ?? 0) / 1e6);
    expect(killedAt - startedAt, 'killed before core heartbeats the task (80% of 10 s)').toBeLessThan(8_000);

    // The killed worker's DELETE is cancelled by the dead-client check, not committed on release.
    await waitFor(
      'the killed worker’s session backend to end',
      async () => {
        const r = await h.db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
        return r.rows.length === 0;
      },
      15_000,
    );
    await lock.release();
    expect(await sessionsOf('crm-owner')).toBe(2);
    expect((await auditRows(h, workflowId)).length).toBe(0);

    const second = spawnWorker(h);
    workers.push(second);
    await second.ready;
    const result = await h.client.workflow.getHandle(workflowId).result();
    expect(result).toMatchObject({
      outcome: 'contained',
      verification: { method: 'login_rejected' },
      userSessions: { expired: 2 },
    });
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    // The replay's revoke really ran again: a second new password, as random and as unheld as the first.
    const final = await verifierOf(role);
    expect(final === afterFirstRevoke, 'the replay revoked again').toBe(false);
    expect(final === original).toBe(false);
    expect([await sessionsOf('crm-owner'), await sessionsOf('someone-else')]).toEqual([0, 1]);

    const history = await h.client.workflow.getHandle(workflowId).fetchHistory();
    // The lost task timed out (10 s) and the replay's task recorded each step once.
    expect(history.events!.filter((e) => e.workflowTaskTimedOutEventAttributes)).toHaveLength(1);
    expect(localActivityMarkers(history).filter((m) => m.activityType === 'revokeCredential')).toHaveLength(
      1,
    );
    const counts = await activityCounts(h, workflowId);
    expect(counts.revokeCredential).toMatchObject({ scheduled: 1, maxAttempt: 1, failed: 0, local: true });
    expect(counts.expireUserSessions).toMatchObject({ scheduled: 1, failed: 0, local: true });
    expect(counts.assess).toMatchObject({ scheduled: 1, local: true });
    await expectContainedOnce({ workflowId, runId, password, outputs: [first, second] });
  } finally {
    await lock.release();
  }
});

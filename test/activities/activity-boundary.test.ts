/**
 * The activity boundary (activities/boundary.ts) against real PostgreSQL and the GitHub fake:
 * strings PostgreSQL cannot store are made well formed before they reach it, PostgreSQL's refusals
 * are classified by SQLSTATE, and a finding our own rules refuse fails the enrichment at once.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createActivities } from '../../activities';
import { classifyFailure, wellFormed } from '../../activities/boundary';
import { createPagerDutySender } from '../../activities/pagerduty';
import { createProviderRegistry } from '../../activities/providers';
import { createSlackSender } from '../../activities/slack';
import { createUpstreamClients } from '../../activities/upstream';
import { createPostgresDb, migrate, type Db } from '../../lib/db';
import { createEvidenceStore } from '../../store/evidence';
import { parseInventory } from '../../lib/inventory';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { ErrorType } from '../../contracts/errors';
import { type RunSummary } from '../../contracts/run';
import { startGitHubFake, type GitHubFake } from '../fakes/github';
import { startSlackFake, type SlackFake } from '../fakes/slack';
import { failureProbe } from '../helpers/failure';
import { rand } from '../helpers/harness';

let db: Db;
let gh: GitHubFake;
let slack: SlackFake;
let acts: ReturnType<typeof createActivities>;
beforeAll(async () => {
  [gh, slack] = await Promise.all([startGitHubFake(), startSlackFake()]);
  db = createPostgresDb(inject('auditDatabaseUrl'));
  await migrate(db);
  const keys = createServerKeys(newServerKey());
  const inventory = parseInventory({
    sources: { github: { secretsEnv: 'GH_SECRETS', apiTokenEnv: 'GH_TOKEN', apiUrl: gh.apiUrl } },
  });
  acts = createActivities({
    inventory,
    keys,
    dispatcher: { dispatch: () => Promise.reject(new Error('not used here')) },
    upstream: createUpstreamClients(inventory.sources, { GH_TOKEN: gh.token }),
    providers: createProviderRegistry(parseInventory({}), {}),
    db,
    evidence: createEvidenceStore(db, keys, 1),
    slack: createSlackSender({
      token: slack.token,
      channel: '#security-incidents',
      apiUrl: slack.apiUrl,
      log: () => undefined,
    }),
    pagerduty: createPagerDutySender({
      routingKey: undefined,
      eventsUrl: 'http://127.0.0.1:9',
      log: () => undefined,
    }),
    temporalUi: { uiUrl: 'http://localhost:8233', namespace: 'default' },
  });
});
afterAll(async () => {
  await Promise.all([gh?.close(), slack?.close(), db?.close()]);
});

const failure = failureProbe();

/** A valid JSON string that PostgreSQL cannot store as it is: a lone surrogate, U+0000. */
const LONE = 'x\ud800';
const NUL = 'a\u0000b.env';

function hostileSummary(): RunSummary {
  return {
    workflowId: `killswitch-generic-${rand()}${rand()}${rand()}${rand()}`,
    runId: `run-${rand()}`,
    detection: {
      id: `generic:${rand()}`,
      source: 'generic',
      scanner: LONE,
      credentialType: 'generic',
      credentialRef: { name: `svc\udc00`, [`k\ud800`]: 'v' },
      location: { repository: 'acme/api', file: NUL, line: 3 },
      severity: 'high',
      detectedAt: new Date().toISOString(),
      hasEvidence: false,
    },
    owner: null,
    outcome: 'escalated',
    timeline: { receivedAt: new Date().toISOString() },
    failure: { step: 'resolving_owner', type: 'NoOwner', message: `no owner for ${LONE}` },
    sightings: [
      {
        detectionId: 'generic:y',
        source: 'generic',
        scanner: LONE,
        location: { file: NUL },
        receivedAt: new Date().toISOString(),
      },
    ],
  };
}

describe('strings PostgreSQL cannot store', () => {
  it('recordAudit writes a detection holding a lone surrogate and U+0000, as U+FFFD', async () => {
    const s = hostileSummary();
    const env = new MockActivityEnvironment();
    await expect(env.run(acts.recordAudit, s)).resolves.toEqual({ inserted: true });
    const row = (
      await db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        s.workflowId,
      ])
    ).rows[0]!;
    expect(row.scanner).toBe('x\ufffd');
    expect(row.location).toEqual({ repository: 'acme/api', file: 'a\ufffdb.env', line: 3 });
    expect(row.credential_ref).toEqual({ name: 'svc\ufffd', 'k\ufffd': 'v' });
    expect(row.failure_message).toBe('no owner for x\ufffd');
    expect(row.sightings[0]).toMatchObject({ scanner: 'x\ufffd', location: { file: 'a\ufffdb.env' } });
  });

  it('notifySlack posts and records the message of such a detection', async () => {
    const s = hostileSummary();
    const env = new MockActivityEnvironment();
    await expect(env.run(acts.notifySlack, s)).resolves.toEqual({ status: 'sent' });
    const ledger = await db.query(
      'SELECT 1 FROM killswitch_notifications WHERE workflow_id = $1 AND external_id IS NOT NULL',
      [s.workflowId],
    );
    expect(ledger.rows).toHaveLength(1);
    const posted = slack.messages().find((m) => JSON.stringify(m).includes(s.workflowId));
    expect(JSON.stringify(posted)).toContain('a\ufffdb.env');
  });

  it('wellFormed keeps well-formed text (surrogate pairs included) as it is', () => {
    const ok = { a: 'pair \ud83d\ude00', b: ['é', 1, null, true], c: { d: 'plain' } };
    expect(wellFormed(ok)).toEqual(ok);
    expect(wellFormed({ [`k\ud800`]: ['\udc00', 'a\u0000'] })).toEqual({ 'k\ufffd': ['\ufffd', 'a\ufffd'] });
  });
});

describe("PostgreSQL's refusals, classified by SQLSTATE", () => {
  const refusal = async (sql: string, params: unknown[] = []) => {
    try {
      await db.query(sql, params);
    } catch (err) {
      return classifyFailure(err);
    }
    throw new Error(`expected ${sql} to fail`);
  };
  const seen = (e: Error) => failure(Promise.reject(e));

  it('data exceptions (22), integrity violations (23) and undefined objects (42) are permanent', async () => {
    const permanent = { type: ErrorType.STORE_REJECTED, nonRetryable: true };
    expect(await seen(await refusal('SELECT $1::jsonb', ['"\\u0000"']))).toEqual(permanent); // 22P05
    expect(await seen(await refusal('SELECT $1::jsonb', ['"\\ud800"']))).toEqual(permanent); // 22P05
    expect(await seen(await refusal('SELECT $1::text', ['a\u0000b']))).toEqual(permanent); // 22021
    expect(await seen(await refusal('SELECT 1 FROM killswitch_no_such_table'))).toEqual(permanent); // 42P01
    expect(
      await seen(await refusal('INSERT INTO killswitch_audit (workflow_id) VALUES ($1)', ['w'])),
    ).toEqual(permanent); // 23502
  });

  it('a unique violation (the idempotent inserts race on it), a cancelled statement and a lost connection stay retryable', async () => {
    const table = `ks_unique_${rand()}`;
    await db.query(`CREATE TABLE ${table} (k text PRIMARY KEY)`);
    await db.query(`INSERT INTO ${table} VALUES ('a')`);
    expect(await seen(await refusal(`INSERT INTO ${table} VALUES ('a')`))).toEqual({ type: 'plain' }); // 23505
    await db.query(`DROP TABLE ${table}`);
    const cancelled = await db.withSession(async (s) => {
      await s.query('SET statement_timeout = 50');
      try {
        await s.query('SELECT pg_sleep(2)');
      } catch (err) {
        return classifyFailure(err);
      } finally {
        await s.query('SET statement_timeout = 0');
      }
      throw new Error('expected a cancellation');
    });
    expect(await seen(cancelled)).toEqual({ type: 'plain' }); // 57014
    const gone = createPostgresDb('postgres://nobody@127.0.0.1:9/none');
    const unreachable = await gone.query('SELECT 1').then(
      () => new Error('expected no connection'),
      (err: unknown) => classifyFailure(err),
    );
    await gone.close();
    expect(await seen(unreachable)).toEqual({ type: 'plain' });
  });
});

describe('enrichment of a finding our own rules refuse', () => {
  it('fails non-retryable (InvalidInput) instead of refetching it for an hour', async () => {
    const repo = 'acme/refused';
    const number = 1 + Math.floor(Math.random() * 1e6);
    // A Redis URL without a password (a custom pattern's match): reduceFinding refuses it (422).
    gh.addAlert(repo, { number, secret_type: 'redis_url', secret: 'redis://app@cache.internal:6379' });
    const env = new MockActivityEnvironment();
    const seen = await failure(
      env.run(acts.enrichAndDispatch, {
        source: 'github',
        deliveryId: rand(),
        request: { kind: 'github_alert' as const, repository: repo, alertNumber: number, action: 'created' },
        receivedAt: new Date().toISOString(),
      }),
    );
    expect(seen).toEqual({ type: ErrorType.INVALID_INPUT, nonRetryable: true });
  });

  it('a GitHub 5xx stays retryable, a 404 is refused for good', async () => {
    const env = new MockActivityEnvironment();
    const input = (number: number) => ({
      source: 'github',
      deliveryId: rand(),
      request: {
        kind: 'github_alert' as const,
        repository: 'acme/none',
        alertNumber: number,
        action: 'created',
      },
      receivedAt: new Date().toISOString(),
    });
    gh.script.push({ status: 503, body: { message: 'Service Unavailable' } });
    expect(await failure(env.run(acts.enrichAndDispatch, input(1)))).toEqual({ type: 'plain' });
    expect(await failure(env.run(acts.enrichAndDispatch, input(2)))).toEqual({
      type: ErrorType.UPSTREAM_REFUSED,
      nonRetryable: true,
    });
    // GitHub down (connection refused): retried too.
    const down = parseInventory({
      sources: {
        github: { secretsEnv: 'GH_SECRETS', apiTokenEnv: 'GH_TOKEN', apiUrl: 'http://127.0.0.1:9' },
      },
    });
    const upstream = createUpstreamClients(down.sources, { GH_TOKEN: gh.token });
    const unreachable = await upstream.enrich(input(3).request).then(
      () => new Error('expected GitHub to be unreachable'),
      (err: unknown) => classifyFailure(err),
    );
    expect(await failure(Promise.reject(unreachable))).toEqual({ type: 'plain' });
  });
});

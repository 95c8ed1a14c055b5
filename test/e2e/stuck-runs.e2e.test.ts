/**
 * No run may be stuck forever (issue 10), on the real Temporal dev server with the real worker,
 * PostgreSQL and the GitHub, Slack and PagerDuty fakes:
 * - a detection holding strings PostgreSQL cannot store (a lone surrogate, U+0000) is contained,
 *   audited and announced instead of retrying its audit row forever;
 * - a finding our own rules refuse ends its enrichment at once and pages, not after an hour;
 * - while GitHub keeps failing, the finding is escalated within the short delay (a page), the fetch
 *   goes on, and once GitHub is back the credential is contained and the escalation says so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnrichResult } from '../../workflows/enrich';
import { killSwitchWorkflowId, type KillSwitchInput, type KillSwitchResult } from '../../contracts/run';
import { type EnrichInput } from '../../contracts/enrichment';
import { startGitHubFake, type GitHubFake } from '../fakes/github';
import { leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';

let gh: GitHubFake;
let h: Harness;
beforeAll(async () => {
  gh = await startGitHubFake();
  h = await startHarness({
    env: { GITHUB_WEBHOOK_SECRETS: `gh-${rand()}${rand()}`, GITHUB_TOKEN: gh.token },
    config: {
      sources: {
        github: { secretsEnv: 'GITHUB_WEBHOOK_SECRETS', apiTokenEnv: 'GITHUB_TOKEN', apiUrl: gh.apiUrl },
      },
      // Escalated runs wait for a human (and for a late enrichment) instead of ending at once.
      policy: { retryWindow: '10m' },
    },
  });
});
afterAll(async () => {
  await h?.close();
  await gh?.close();
});

async function until<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts the enrichment as the ingress does for a secret_scanning_alert delivery. */
function startEnrichment(repo: string, number: number, escalateAfter?: string) {
  const input: EnrichInput = {
    source: 'github',
    deliveryId: `${rand()}-${rand()}`,
    request: { kind: 'github_alert', repository: repo, alertNumber: number, action: 'created' },
    receivedAt: new Date().toISOString(),
    ...(escalateAfter ? { escalateAfter } : {}),
  };
  return h.client.workflow.start('enrichDetection', {
    taskQueue: h.taskQueue,
    workflowId: `enrich-github-${input.deliveryId}`,
    args: [input],
  });
}

const pageFor = (dedupKey: string, action = 'trigger') =>
  h.pagerduty.events().find((e) => e.dedup_key === dedupKey && e.event_action === action);

describe('no run is stuck on its input', () => {
  it('contains, audits and announces a detection holding a lone surrogate and U+0000', async () => {
    const { role } = await h.owned.createRole();
    const detection = {
      id: `generic:${rand()}`,
      source: 'generic',
      scanner: 'x\ud800',
      credentialType: 'postgres_password' as const,
      credentialRef: { role, host: '127.0.0.1' },
      location: { repository: 'acme/api', file: 'a\u0000b.env', line: 3 },
      severity: 'high' as const,
      detectedAt: new Date().toISOString(),
      hasEvidence: false,
    };
    const workflowId = killSwitchWorkflowId('postgres_password', `${rand()}${rand()}${rand()}${rand()}`);
    const input: KillSwitchInput = { detection, receivedAt: new Date().toISOString() };
    const handle = await h.client.workflow.start('killSwitch', {
      taskQueue: h.taskQueue,
      workflowId,
      args: [input],
    });
    const result: KillSwitchResult = await handle.result();
    expect(result.outcome).toBe('contained');
    expect(result.audit).toEqual({ inserted: true });
    expect(result.slack).toEqual({ status: 'sent' });
    const row = (
      await h.db.query<Record<string, any>>(
        'SELECT scanner, location FROM killswitch_audit WHERE workflow_id = $1',
        [workflowId],
      )
    ).rows[0]!;
    expect(row).toEqual({
      scanner: 'x\ufffd',
      location: { repository: 'acme/api', file: 'a\ufffdb.env', line: 3 },
    });
    expect(
      JSON.stringify(h.slack.messages().filter((m) => JSON.stringify(m).includes(workflowId))),
    ).toContain('a\ufffdb.env');
  });

  it('a run whose audit row PostgreSQL refuses for good still ends and tells Slack, naming no value', async () => {
    const { role } = await h.owned.createRole();
    const workflowId = killSwitchWorkflowId('postgres_password', `${rand()}${rand()}${rand()}${rand()}`);
    // Started by hand (CLI, UI) with a receivedAt no timestamptz takes: 22008, a data exception.
    const badTime = '2026-13-45T99:00:00Z';
    const input: KillSwitchInput = {
      detection: {
        id: `generic:${rand()}`,
        source: 'generic',
        credentialType: 'postgres_password',
        credentialRef: { role, host: '127.0.0.1' },
        location: { repository: 'acme/api' },
        severity: 'high',
        detectedAt: new Date().toISOString(),
        hasEvidence: false,
      },
      receivedAt: badTime,
    };
    const result: KillSwitchResult = await (
      await h.client.workflow.start('killSwitch', { taskQueue: h.taskQueue, workflowId, args: [input] })
    ).result();
    expect(result.outcome).toBe('contained');
    expect(result.audit.inserted).toBe(false);
    expect(result.audit.error).toMatch(/^StoreRejected: .*SQLSTATE 22008\)$/);
    expect(result.audit.error).not.toContain(badTime);
    expect(result.slack).toEqual({ status: 'sent' });
    expect(JSON.stringify(h.slack.messages().find((m) => JSON.stringify(m).includes(workflowId)))).toContain(
      'The audit row could not be written: StoreRejected',
    );
  });

  it('escalates a finding our own rules refuse at once, without refetching it', async () => {
    const repo = 'acme/refused';
    const number = 1 + Math.floor(Math.random() * 1e6);
    // A Redis URL without a password: reduceFinding answers 422, which no refetch can change.
    gh.addAlert(repo, { number, secret_type: 'redis_url', secret: 'redis://app@cache.internal:6379' });
    const handle = await startEnrichment(repo, number);
    const r: EnrichResult = await handle.result();
    expect(r.enriched).toBe(false);
    expect(r.escalated).toBeUndefined();
    const page = await until('the page', () => pageFor(r.workflowId));
    expect(page.payload.custom_details.credential_ref.enrichmentError).toMatch(/^InvalidInput: /);
    expect(
      gh.requests.filter((q) => q.path === `/repos/${repo}/secret-scanning/alerts/${number}`),
    ).toHaveLength(1);
  });
});

describe('GitHub down: a human is paged within the short delay, the late value joins the run', () => {
  it('pages while GitHub answers 5xx, contains the credential once it is back, and resolves the page', async () => {
    const { role, password } = await h.owned.createRole();
    const repo = 'acme/outage';
    const number = 1 + Math.floor(Math.random() * 1e6);
    gh.addAlert(repo, {
      number,
      secret_type: 'postgres_connection_uri',
      secret: leakedUrl(role, password),
    });
    // GitHub is down: every request answers 503 until the script is emptied.
    gh.down();
    const alertPath = `/repos/${repo}/secret-scanning/alerts/${number}`;
    let handle: Awaited<ReturnType<typeof startEnrichment>>;
    try {
      handle = await startEnrichment(repo, number, '1s');
      // The page arrives while GitHub is still down.
      const page = await until('the early page', () =>
        h.pagerduty
          .events()
          .find(
            (e) =>
              e.event_action === 'trigger' &&
              e.payload?.custom_details?.credential_ref?.alert === `${repo}#${number}`,
          ),
      );
      expect(page.payload.custom_details.credential_ref.enrichmentError).toMatch(/^EnrichmentDelayed: /);
      expect(gh.requests.filter((q) => q.path === alertPath).length).toBeGreaterThan(0);
      expect(gh.script.length).toBeGreaterThan(0);
    } finally {
      gh.up(); // GitHub is back
    }

    const r: EnrichResult = await handle.result();
    expect(r.enriched).toBe(true);
    const escalated = r.escalated!;
    expect(pageFor(escalated.workflowId)).toBeDefined();

    // The late value was contained by the credential's own run.
    const contained: KillSwitchResult = await h.client.workflow.getHandle(r.workflowId, r.runId).result();
    expect(contained.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');

    // The escalation learnt it: contained by that run, its incident resolved, Slack and the audit say so.
    const early: KillSwitchResult = await h.client.workflow
      .getHandle(escalated.workflowId, escalated.runId)
      .result();
    expect(early.outcome).toBe('contained');
    expect(early.enrichedRun).toMatchObject({
      workflowId: r.workflowId,
      runId: r.runId,
      outcome: 'contained',
    });
    expect(early.resolvedIncident).toBe(true);
    expect(pageFor(escalated.workflowId, 'resolve')).toBeDefined();
    const rows = await h.db.query<{ outcome: string; rotation_note: string | null }>(
      'SELECT outcome, rotation_note FROM killswitch_audit WHERE workflow_id = $1 AND run_id = $2 ORDER BY id',
      [escalated.workflowId, escalated.runId],
    );
    expect(rows.rows.map((x) => x.outcome)).toEqual(['escalated', 'contained']);
    expect(rows.rows[1]!.rotation_note).toContain(`${r.workflowId}/${r.runId}`);
    const message = h.slack.messages().find((m) => JSON.stringify(m).includes(escalated.workflowId));
    expect(JSON.stringify(message)).toContain('fetched late and joined');
  });
});

describe('GitHub down, and the escalated run already over when the value arrives', () => {
  let h0: Harness;
  beforeAll(async () => {
    // retryWindow 0s: an escalated run ends right after its page.
    h0 = await startHarness({
      env: { GITHUB_WEBHOOK_SECRETS: `gh-${rand()}${rand()}`, GITHUB_TOKEN: gh.token },
      config: {
        sources: {
          github: { secretsEnv: 'GITHUB_WEBHOOK_SECRETS', apiTokenEnv: 'GITHUB_TOKEN', apiUrl: gh.apiUrl },
        },
      },
    });
  });
  afterAll(async () => {
    await h0?.close();
  });

  it('resolves the ended escalation’s PagerDuty incident once the credential is contained', async () => {
    const { role, password } = await h0.owned.createRole();
    const repo = 'acme/outage-ended';
    const number = 1 + Math.floor(Math.random() * 1e6);
    gh.addAlert(repo, {
      number,
      secret_type: 'postgres_connection_uri',
      secret: leakedUrl(role, password),
    });
    gh.down();
    const input: EnrichInput = {
      source: 'github',
      deliveryId: `${rand()}-${rand()}`,
      request: { kind: 'github_alert', repository: repo, alertNumber: number, action: 'created' },
      receivedAt: new Date().toISOString(),
      escalateAfter: '1s',
    };
    let escalatedId: string;
    let handle: Awaited<ReturnType<typeof h0.client.workflow.start>>;
    try {
      handle = await h0.client.workflow.start('enrichDetection', {
        taskQueue: h0.taskQueue,
        workflowId: `enrich-github-${input.deliveryId}`,
        args: [input],
      });
      const page = await until('the early page', () =>
        h0.pagerduty
          .events()
          .find(
            (e) =>
              e.event_action === 'trigger' &&
              e.payload?.custom_details?.credential_ref?.alert === `${repo}#${number}`,
          ),
      );
      escalatedId = page.dedup_key;
      // The escalated run is over before GitHub is back.
      const ended: KillSwitchResult = await h0.client.workflow.getHandle(escalatedId).result();
      expect(ended.outcome).toBe('escalated');
    } finally {
      gh.up();
    }
    const r: EnrichResult = await handle.result();
    expect(r).toMatchObject({ enriched: true, escalated: { workflowId: escalatedId } });
    const contained: KillSwitchResult = await h0.client.workflow.getHandle(r.workflowId, r.runId).result();
    expect(contained.outcome).toBe('contained');
    expect(
      h0.pagerduty.events().find((e) => e.dedup_key === escalatedId && e.event_action === 'resolve'),
    ).toBeDefined();
  });
});

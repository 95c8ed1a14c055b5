/**
 * End to end over loopback for the revoke-only token kinds: a signed generic webhook carrying a
 * leaked GitHub or Slack token reaches the real ingress, the real worker runs killSwitch on the
 * real Temporal server, the token dies at the owner's (fake) API, the audit lands in PostgreSQL,
 * Slack (the notification fake) and PagerDuty (its fake) hear the outcome, and the token itself
 * appears nowhere but in the requests to the owners' revocation APIs.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import {
  fakeGitHubToken,
  startGitHubRevocationFake,
  type GitHubRevocationFake,
} from '../fakes/github-revocation';
import { startSlackFake, type SlackFake } from '../fakes/slack';
import { secretPlaces, rand, startHarness, type Harness } from '../helpers/harness';
import { ISO_TIME } from '../helpers/matchers';

let h: Harness;
/** The owners: GitHub's revocation API and the Slack workspace whose tokens leak (not the notification Slack). */
let github: GitHubRevocationFake;
let workspace: SlackFake;
const planted: string[] = [];
const runs: string[] = [];

const slackToken = (prefix = 'xoxb-') =>
  `${prefix}${Date.now() % 1e12}-${randomBytes(6).readUIntBE(0, 6)}-${randomBytes(18).toString('base64url').replace(/[-_]/g, 'x')}`;

beforeAll(async () => {
  [github, workspace] = await Promise.all([
    startGitHubRevocationFake(),
    startSlackFake(`xoxb-workspace-bot-${rand()}`),
  ]);
  h = await startHarness({
    config: {
      systems: [
        // A wide batch window so detections arriving together share one revocation request.
        { name: 'github-com', kind: 'github', apiUrl: github.apiUrl, batch: { windowMs: 1500 } },
        { name: 'slack-acme', kind: 'slack', apiUrl: workspace.apiUrl },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
  await Promise.all([github?.close(), workspace?.close()]);
});

async function auditRows(workflowId: string) {
  return (
    await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
      workflowId,
    ])
  ).rows;
}

async function contain(body: object): Promise<{ workflowId: string; result: KillSwitchResult }> {
  const res = await h.post(body);
  expect(res.status).toBe(202);
  runs.push(res.json.workflowId);
  const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
  return { workflowId: res.json.workflowId, result };
}

describe('revoke-only token kinds end to end', () => {
  it('contains a leaked GitHub token: revoked through the credential revocation API, proven dead, audited, confirmed in Slack', async () => {
    const token = fakeGitHubToken();
    planted.push(token);
    github.live.add(token);
    const { workflowId, result } = await contain({
      scanner: 'ci-scanner',
      findingId: `gh-${rand()}`,
      credentialType: 'github_token',
      secret: token,
      location: {
        repository: 'acme/web',
        file: '.github/workflows/deploy.yml',
        line: 7,
        commit: 'abcdef1234567',
      },
      severity: 'critical',
    });
    expect(workflowId).toMatch(/^killswitch-github_token-[0-9a-f]{32}$/);
    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({
      system: 'github-com',
      kind: 'github',
      mode: 'emergency',
      sink: 'none',
      replacement: false,
    });
    expect(result.rotation).toMatchObject({ mode: 'emergency', newValueDelivered: false });
    expect(result.timeline.revokedAt).toMatch(ISO_TIME);
    expect(result.sessions).toEqual({ terminated: 0 });
    expect(result.verification).toEqual({ method: 'login_rejected' });

    expect(github.live.has(token)).toBe(false);
    expect(github.revoked.has(token)).toBe(true);
    expect(github.revokeCalls().filter((c) => c.includes(token))).toHaveLength(1);
    const verifies = github.requests.filter(
      (r) => r.path === '/user' && r.headers.authorization === `Bearer ${token}`,
    );
    expect(verifies).toHaveLength(1);

    const rows = await auditRows(workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'contained',
      owning_system: 'github-com',
      credential_type: 'github_token',
      credential_ref: { tokenPrefix: 'ghp_' },
      verification_method: 'login_rejected',
    });
    const slack = h.slack.messages().filter((m) => m.text.includes(workflowId));
    expect(slack).toHaveLength(1);
    expect(slack[0]!.text).toContain('contained');
    expect(h.pagerduty.events().filter((e) => e.dedup_key === workflowId)).toHaveLength(0);
  });

  it('contains a leaked Slack token: auth.revoke called with it, auth.test refused, audited', async () => {
    const token = slackToken('xoxp-');
    planted.push(token);
    workspace.live.add(token);
    const { workflowId, result } = await contain({
      scanner: 'ci-scanner',
      credentialType: 'slack_token',
      secret: token,
      location: { repository: 'acme/bots', file: 'bot.py', line: 3 },
    });
    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({ system: 'slack-acme', kind: 'slack', replacement: false });
    expect(result.verification).toEqual({ method: 'login_rejected' });
    expect(workspace.revoked.has(token)).toBe(true);
    expect(workspace.live.has(workspace.token)).toBe(true);
    expect(
      workspace.requests.filter(
        (r) => r.path === '/api/auth.revoke' && r.headers.authorization === `Bearer ${token}`,
      ),
    ).toHaveLength(1);
    expect(
      workspace.requests.filter(
        (r) => r.path === '/api/auth.test' && r.headers.authorization === `Bearer ${token}`,
      ),
    ).toHaveLength(1);
    const rows = await auditRows(workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'contained',
      owning_system: 'slack-acme',
      credential_type: 'slack_token',
      credential_ref: { tokenPrefix: 'xoxp-' },
    });
  });

  it('batches GitHub tokens leaked together into fewer revocation requests than tokens', async () => {
    const tokens = Array.from({ length: 5 }, () => fakeGitHubToken());
    planted.push(...tokens);
    tokens.forEach((t) => github.live.add(t));
    const before = github.revokeCalls().length;
    const results = await Promise.all(
      tokens.map((t) => contain({ scanner: 'org-sweep', credentialType: 'github_token', secret: t })),
    );
    expect(results.map((r) => r.result.outcome)).toEqual(Array(5).fill('contained'));
    const calls = github.revokeCalls().slice(before);
    expect(calls.flat().sort()).toEqual([...tokens].sort());
    expect(calls.length).toBeLessThan(tokens.length);
    expect(tokens.every((t) => github.revoked.has(t))).toBe(true);
  });

  it('escalates a GitHub token detection without the token: nothing to revoke with, PagerDuty paged, audit escalated', async () => {
    const before = github.revokeCalls().length;
    const { workflowId, result } = await contain({
      scanner: 'inventory-audit',
      credentialType: 'github_token',
      credentialRef: { tokenPrefix: 'ghp_', owner: 'octocat' },
    });
    expect(result.outcome).toBe('escalated');
    expect(result.failure).toMatchObject({ step: 'revoking', type: 'UnknownCredential' });
    expect(result.pagerduty).toEqual({ status: 'sent', dedupKey: workflowId });
    expect(github.revokeCalls().length).toBe(before);
    expect(await auditRows(workflowId)).toEqual([
      expect.objectContaining({
        outcome: 'escalated',
        failure_type: 'UnknownCredential',
        failure_step: 'revoking',
      }),
    ]);
  });

  it('a re-delivered Slack token already revoked joins as already_contained: re-verified dead, not revoked again', async () => {
    const token = slackToken();
    planted.push(token);
    workspace.live.add(token);
    const body = {
      scanner: 'ci-scanner',
      findingId: `sl-${rand()}`,
      credentialType: 'slack_token',
      secret: token,
    };
    const first = await contain(body);
    expect(first.result.outcome).toBe('contained');
    const again = await contain(body);
    expect(again.workflowId).toBe(first.workflowId);
    expect(again.result).toMatchObject({
      outcome: 'already_contained',
      verification: { method: 'login_rejected' },
    });
    expect(
      workspace.requests.filter(
        (r) => r.path === '/api/auth.revoke' && r.headers.authorization === `Bearer ${token}`,
      ),
    ).toHaveLength(1);
  });

  it('never lets a planted token reach Temporal history, logs, the audit table, Slack or PagerDuty', async () => {
    expect(planted.length).toBeGreaterThanOrEqual(8);
    const places = await secretPlaces(h, runs, {
      'evidence left': JSON.stringify(
        (await h.db.query('SELECT workflow_id, fingerprint FROM killswitch_evidence')).rows,
      ),
    });
    // The searches are real: the places hold what they should.
    expect(places['Temporal history']).toContain('revokeCredential');
    expect(places.logs).toContain('credential revoked');
    expect(places['Slack requests']).toContain('Leaked credential contained');
    expect(places['PagerDuty requests']).toContain('UnknownCredential');
    expect(places['audit table']).toContain('github-com');
    expect(places['audit table']).toContain('slack-acme');
    // …and the owners' fakes did receive the tokens (the only places allowed to).
    expect(github.requests.some((r) => r.body.includes(planted[0]!))).toBe(true);
    expect(workspace.requests.some((r) => String(r.headers.authorization).includes(planted[1]!))).toBe(true);
    for (const secret of planted) {
      const forms = [
        secret,
        encodeURIComponent(secret),
        Buffer.from(secret).toString('base64'),
        JSON.stringify(secret).slice(1, -1),
        secret.slice(-24),
      ];
      for (const [place, text] of Object.entries(places)) {
        for (const form of forms) expect(text.includes(form), `token found in ${place}`).toBe(false);
      }
    }
  });
});

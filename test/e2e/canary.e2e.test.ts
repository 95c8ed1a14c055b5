/**
 * The `killswitch` CLI as an operator runs it, a child process against the real ingress, worker,
 * Temporal and PostgreSQL: `send-test` sends a signed canary through the generic webhook, its run
 * ends at once as `ignored` (built-in policy rule `canary`) without rotating, paging or posting
 * anything, `status --wait` follows it to its outcome, `recent` lists it; and the exit codes.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import { startHarness, type Harness } from '../helpers/harness';

const run = promisify(execFile);
const VIEWER = `viewer-${randomBytes(16).toString('hex')}`;
let h: Harness;
let dir: string;
let secretFile: string;

beforeAll(async () => {
  h = await startHarness({ env: { API_TOKENS: `viewer:${VIEWER}` } });
  dir = mkdtempSync(path.join(tmpdir(), 'killswitch-cli-'));
  secretFile = path.join(dir, 'generic-webhook-secret');
  writeFileSync(secretFile, `${h.webhookSecret}\n`, { mode: 0o600 });
});
afterAll(async () => {
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI the way README and docs/reference.md say; resolves with its exit code and output. */
async function cli(args: string[], env: Record<string, string> = {}) {
  const childEnv: Record<string, string | undefined> = {
    ...process.env,
    KILLSWITCH_API_TOKEN: VIEWER,
    ...env,
  };
  delete childEnv.GENERIC_WEBHOOK_SECRETS;
  try {
    const r = await run('npx', ['--no-install', 'tsx', 'cli/killswitch.ts', ...args], {
      env: childEnv,
      timeout: 90_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('killswitch CLI', () => {
  it('send-test: a canary run ends cleanly as ignored, status --wait shows it, nothing rotated, paged or posted', async () => {
    const slackBefore = h.slack.requests.length;
    const pagesBefore = h.pagerduty.requests.length;
    const sent = await cli([
      'send-test',
      '--source',
      'generic',
      '--url',
      h.baseUrl,
      '--secret-file',
      secretFile,
    ]);
    expect(sent.stderr.replace(/npm warn.*\n?/g, '')).toBe('');
    expect(sent.code).toBe(0);
    const workflowId = /^workflow\s+(\S+)$/m.exec(sent.stdout)?.[1];
    const canaryId = /^canary\s+(canary-[0-9a-f-]+) accepted/m.exec(sent.stdout)?.[1];
    expect(workflowId).toMatch(/^killswitch-generic-[0-9a-f]{32}$/);
    expect(canaryId).toBeDefined();

    const status = await cli([
      'status',
      workflowId!,
      '--wait',
      '--url',
      h.baseUrl,
      '--interval',
      '200',
      '--timeout',
      '60',
    ]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^outcome\s+ignored$/m);
    expect(status.stdout).toMatch(/^policy\s+ignore \(rule canary\)$/m);
    expect(status.stdout).toMatch(/^run\s+COMPLETED$/m);
    expect(status.stdout).toContain(`canary=${canaryId}`);

    // The run is closed and recorded; nothing else happened.
    const handle = h.client.workflow.getHandle(workflowId!);
    expect((await handle.describe()).status.name).toBe('COMPLETED');
    const result: KillSwitchResult = await handle.result();
    expect(result).toMatchObject({
      outcome: 'ignored',
      owner: null,
      policy: { action: 'ignore', rule: 'canary' },
      slack: { status: 'skipped' },
    });
    expect(result.rotation).toBeUndefined();
    expect(result.pagerduty).toBeUndefined();
    const audit = (
      await h.db.query<Record<string, unknown>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        workflowId,
      ])
    ).rows;
    expect(audit).toMatchObject([
      {
        outcome: 'ignored',
        scanner: 'killswitch-canary',
        credential_type: 'generic',
        credential_ref: { canary: canaryId },
        policy_rule: 'canary',
        revoked_at: null,
        kill_mode: null,
        pagerduty_dedup_key: null,
      },
    ]);
    const lingering = await h.db.query(
      'SELECT 1 FROM killswitch_evidence WHERE workflow_id = $1 UNION ALL SELECT 1 FROM killswitch_breaker_hits WHERE workflow_id = $1',
      [workflowId],
    );
    expect(lingering.rows).toEqual([]);
    expect(h.slack.requests.slice(slackBefore).some((r) => r.body.includes(workflowId!))).toBe(false);
    expect(h.pagerduty.requests.slice(pagesBefore).some((r) => r.body.includes(workflowId!))).toBe(false);

    const recent = await cli(['recent', '--limit', '50', '--url', h.baseUrl, '--source', 'generic']);
    expect(recent.code).toBe(0);
    expect(recent.stdout).toMatch(/^RECORDED\s+OUTCOME\s+SOURCE/);
    expect(recent.stdout).toMatch(
      new RegExp(`ignored\\s+generic\\s+generic\\s+-\\s+ignore\\s+${workflowId}`),
    );
  });

  it('a scanner calling itself killswitch-canary about a real credential is not ignored', async () => {
    const res = await h.post({
      scanner: 'killswitch-canary',
      credentialType: 'generic',
      secret: `real-${randomBytes(12).toString('hex')}`,
      credentialRef: { canary: 'x' },
    });
    expect(res.status).toBe(202);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.policy?.rule).not.toBe('canary');
    expect(result.outcome).toBe('escalated');
  });

  it('exit codes: 1 for an unknown run or an unreachable ingress, 2 for usage errors', async () => {
    expect((await cli(['status', `killswitch-generic-${'0'.repeat(32)}`, '--url', h.baseUrl])).code).toBe(1);
    expect((await cli(['recent', '--url', 'http://127.0.0.1:9'])).code).toBe(1);
    const badToken = await cli(['recent', '--url', h.baseUrl], { KILLSWITCH_API_TOKEN: `x${VIEWER}` });
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toContain('401');
    expect((await cli(['recent', '--limit', '0'])).code).toBe(2);
    expect((await cli(['send-test', '--source', 'github'])).code).toBe(2);
    expect((await cli(['frobnicate'])).code).toBe(2);
    expect((await cli(['recent', '--url', h.baseUrl], { KILLSWITCH_API_TOKEN: '' })).code).toBe(2);
    expect(
      (await cli(['send-test', '--url', h.baseUrl, '--secret-file', path.join(dir, 'missing')])).code,
    ).toBe(2);
  });
});

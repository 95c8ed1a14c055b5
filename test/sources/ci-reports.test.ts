/**
 * TruffleHog and Gitleaks reports, built to their documented output schemas, posted signed to the
 * real ingress and contained end to end against the owned PostgreSQL.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { resolveKingfisher } from '../../lib/kingfisher-cli';
import { newWebhookSecret } from '../../lib/keys';
import type { KillSwitchResult } from '../../workflows/shared';
import { rand, startHarness, type Harness, leakedUrl } from '../helpers/harness';

const TRUFFLEHOG = newWebhookSecret();
const GITLEAKS = newWebhookSecret();
const KINGFISHER = newWebhookSecret();
let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    env: { TRUFFLEHOG_SECRETS: TRUFFLEHOG, GITLEAKS_SECRETS: GITLEAKS, KINGFISHER_SECRETS: KINGFISHER },
    config: {
      sources: {
        trufflehog: { secretsEnv: 'TRUFFLEHOG_SECRETS' },
        gitleaks: { secretsEnv: 'GITLEAKS_SECRETS', dryRun: false },
        kingfisher: { secretsEnv: 'KINGFISHER_SECRETS' },
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
});


/** One line of `trufflehog git … --json` (v3), as the tool writes it. */
function truffleLine(detector: string, raw: string, file: string, commit: string, verified: boolean, rawV2?: string) {
  return JSON.stringify({
    SourceMetadata: { Data: { Git: { commit, file, email: 'dev <dev@acme.test>', repository: 'https://github.com/acme/payments.git', timestamp: '2026-11-20 10:00:00 +0000', line: 7 } } },
    SourceID: 1,
    SourceType: 16,
    SourceName: 'trufflehog - git',
    DetectorType: detector === 'Postgres' ? 968 : 2,
    DetectorName: detector,
    DetectorDescription: `${detector} credentials`,
    DecoderName: 'PLAIN',
    Verified: verified,
    Raw: raw,
    RawV2: rawV2 ?? '',
    Redacted: raw.slice(0, 6),
    ExtraData: null,
    StructuredData: null,
  });
}

/** One element of `gitleaks detect --report-format json`. */
function gitleaksFinding(ruleId: string, secret: string, match: string, file: string, commit: string, fingerprint: string) {
  return {
    Description: 'Detected a leaked credential',
    StartLine: 3,
    EndLine: 3,
    StartColumn: 10,
    EndColumn: 80,
    Match: match,
    Secret: secret,
    File: file,
    SymlinkFile: '',
    Commit: commit,
    Link: '',
    Entropy: 4.1,
    Author: 'dev',
    Email: 'dev@acme.test',
    Date: '2026-11-20T10:00:00Z',
    Message: 'add config',
    Tags: [],
    RuleID: ruleId,
    Fingerprint: fingerprint,
  };
}

describe('TruffleHog', () => {
  it('contains a PostgreSQL URL found twice, and escalates an AWS key no system owns', async () => {
    const { role, password } = await h.owned.createRole();
    const url = leakedUrl(role, password);
    const report = [
      truffleLine('Postgres', url, 'deploy/.env', 'a1b2c3d4e5f6a7b8', true),
      truffleLine('Postgres', url, 'docker-compose.yml', 'b1b2c3d4e5f6a7b8', true),
      truffleLine('AWS', `AKIA${rand().toUpperCase()}XYZ12`, 'ci.sh', 'c1b2c3d4e5f6a7b8', false, `AKIA:${rand()}`),
    ].join('\n');
    const res = await h.post(report, { secret: TRUFFLEHOG, contentType: 'application/x-ndjson', path: '/webhooks/trufflehog' });
    expect(res.status).toBe(202);
    expect(res.json.runs).toHaveLength(3);
    const [a, b, c] = res.json.runs;
    expect(a.workflowId).toBe(b.workflowId);
    expect(c.workflowId).not.toBe(a.workflowId);
    expect(c.workflowId).toMatch(/^killswitch-aws_access_key-/);

    const pg: KillSwitchResult = await h.client.workflow.getHandle(a.workflowId).result();
    expect(pg.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const sightings = await h.db.query('SELECT source, location FROM killswitch_sightings WHERE workflow_id = $1 ORDER BY detection_id', [a.workflowId]);
    expect(sightings.rows).toHaveLength(2);
    expect(sightings.rows[0]).toMatchObject({ source: 'trufflehog', location: { repository: 'acme/payments' } });

    const aws: KillSwitchResult = await h.client.workflow.getHandle(c.workflowId).result();
    expect(aws).toMatchObject({ outcome: 'escalated', failure: { type: 'NoOwner' } });
  });

  it('refuses a bad signature, a broken line and a finding without a detector, naming the line', async () => {
    const line = truffleLine('Postgres', 'postgres://a:b@h/d', 'f', 'abcdef1', false);
    expect((await h.post(line, { secret: newWebhookSecret(), path: '/webhooks/trufflehog' })).status).toBe(401);
    const broken = await h.post(`${line}\n{"DetectorName": `, { secret: TRUFFLEHOG, path: '/webhooks/trufflehog' });
    expect(broken.status).toBe(400);
    expect(broken.json.detail).toContain('line 2');
    const missing = await h.post(JSON.stringify({ Raw: 'x' }), { secret: TRUFFLEHOG, path: '/webhooks/trufflehog' });
    expect(missing.status).toBe(422);
    expect(missing.json.errors[0].field).toBe('line[1].DetectorName');
  });
});

describe('Gitleaks', () => {
  it('dedupes by the secret, never by the location fingerprint', async () => {
    const { role, password } = await h.owned.createRole();
    const url = leakedUrl(role, password);
    const report = [
      gitleaksFinding('generic-api-key', password, `DATABASE_URL=${url}`, 'app/.env', 'aa11bb22cc33', `aa11bb22cc33:app/.env:generic-api-key:3`),
      gitleaksFinding('generic-api-key', password, `url: "${url}"`, 'chart/values.yaml', 'dd44ee55ff66', `dd44ee55ff66:chart/values.yaml:generic-api-key:3`),
    ];
    const res = await h.post(report, { secret: GITLEAKS, path: '/webhooks/gitleaks', webhookId: `msg_${rand()}` });
    expect(res.status).toBe(202);
    expect(new Set(res.json.runs.map((r: { workflowId: string }) => r.workflowId)).size).toBe(1);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.runs[0].workflowId).result();
    expect(result.failure).toBeUndefined();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const detections = await h.db.query<{ detection_id: string }>('SELECT detection_id FROM killswitch_sightings WHERE workflow_id = $1', [
      res.json.runs[0].workflowId,
    ]);
    expect(detections.rows).toHaveLength(2);
    for (const r of detections.rows) expect(r.detection_id).not.toContain('generic-api-key:3');
  });

  it('refuses a report that is not the gitleaks array', async () => {
    const res = await h.post({ findings: [] }, { secret: GITLEAKS, path: '/webhooks/gitleaks' });
    expect(res.status).toBe(422);
    const item = await h.post([{ RuleID: 'x' }], { secret: GITLEAKS, path: '/webhooks/gitleaks' });
    expect(item.status).toBe(422);
    expect(item.json.errors[0].field).toBe('[0].Secret');
  });
});

describe('Kingfisher', () => {
  it('contains the credential of a real report, produced in this run by kingfisher scanning a fixture repository', async () => {
    const { role } = await h.owned.createRole();
    // Kingfisher's URI rule wants a password shaped like a real one: give the role one.
    const password = `Zq7${rand()}Kp2mXw9LbT4r`;
    await h.owned.su.query(`ALTER ROLE ${role} PASSWORD '${password}'`);
    const o = inject('owned');
    const repo = mkdtempSync(path.join(os.tmpdir(), 'ks-kingfisher-'));
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, stdio: 'pipe' });
    git('init', '-q');
    git('config', 'user.email', 'dev@acme.test');
    git('config', 'user.name', 'dev');
    writeFileSync(path.join(repo, '.env'), `DATABASE_URL=postgres://${role}:${password}@${o.host}:${o.port}/postgres\n`);
    git('add', '.');
    git('commit', '-qm', 'add config');
    // Kingfisher exits 200 when it found secrets (0 when none): both are a successful scan.
    const scan = spawnSync(resolveKingfisher(), ['scan', '.', '--no-validate', '--format', 'json', '--no-update-check'], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
    rmSync(repo, { recursive: true, force: true });
    expect([0, 200], scan.stderr).toContain(scan.status);
    const report = scan.stdout;
    expect(report).toContain('"findings"');

    const res = await h.post(report, { secret: KINGFISHER, path: '/webhooks/kingfisher', contentType: 'application/x-ndjson', headers: { 'x-scan-repository': 'acme/payments' } });
    expect(res.status).toBe(202);
    const pg = (res.json.runs as Array<{ workflowId: string }>).find((r) => r.workflowId.startsWith('killswitch-postgres_password-'));
    expect(pg).toBeDefined();
    const result: KillSwitchResult = await h.client.workflow.getHandle(pg!.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(result.verification?.method).toBe('login_rejected');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const row = (await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [pg!.workflowId])).rows[0]!;
    expect(row).toMatchObject({ source: 'kingfisher', credential_ref: { role }, location: { file: '.env', line: 1 } });
    expect(JSON.stringify(row)).not.toContain(password);
  });
});

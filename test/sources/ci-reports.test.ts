/**
 * CI scanner reports posted signed to the real ingress and contained end to end: TruffleHog v3 and
 * Gitleaks built to their documented output schemas, TruffleHog v2 as captured from the real tool
 * (fixtures/trufflehog-v2.jsonl), Kingfisher as the real binary writes it in this run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { repoName } from '../../api/sources/ci-reports';
import { credentialTypeOf } from '../../contracts/credential-types';
import { resolveKingfisher } from '../../tools/kingfisher-cli';
import { newWebhookSecret } from '../../lib/keys';
import type { KillSwitchResult } from '../../contracts/run';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient } from '@aws-sdk/client-iam';
import { motoConnection, whoAmI } from '../helpers/aws';
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
function truffleLine(
  detector: string,
  raw: string,
  file: string,
  commit: string,
  verified: boolean,
  rawV2?: string,
) {
  return JSON.stringify({
    SourceMetadata: {
      Data: {
        Git: {
          commit,
          file,
          email: 'dev <dev@acme.test>',
          repository: 'https://github.com/acme/payments.git',
          timestamp: '2026-11-20 10:00:00 +0000',
          line: 7,
        },
      },
    },
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
function gitleaksFinding(
  ruleId: string,
  secret: string,
  match: string,
  file: string,
  commit: string,
  fingerprint: string,
) {
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
      truffleLine(
        'AWS',
        `AKIA${rand().toUpperCase()}XYZ12`,
        'ci.sh',
        'c1b2c3d4e5f6a7b8',
        false,
        `AKIA:${rand()}`,
      ),
    ].join('\n');
    const res = await h.post(report, {
      secret: TRUFFLEHOG,
      contentType: 'application/x-ndjson',
      path: '/webhooks/trufflehog',
    });
    expect(res.status).toBe(202);
    expect(res.json.runs).toHaveLength(3);
    const [a, b, c] = res.json.runs;
    expect(a.workflowId).toBe(b.workflowId);
    expect(c.workflowId).not.toBe(a.workflowId);
    expect(c.workflowId).toMatch(/^killswitch-aws_access_key-/);

    const pg: KillSwitchResult = await h.client.workflow.getHandle(a.workflowId).result();
    expect(pg.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const sightings = await h.db.query(
      'SELECT source, location FROM killswitch_sightings WHERE workflow_id = $1 ORDER BY detection_id',
      [a.workflowId],
    );
    expect(sightings.rows).toHaveLength(2);
    expect(sightings.rows[0]).toMatchObject({
      source: 'trufflehog',
      location: { repository: 'acme/payments' },
    });

    const aws: KillSwitchResult = await h.client.workflow.getHandle(c.workflowId).result();
    expect(aws).toMatchObject({ outcome: 'escalated', failure: { type: 'NoOwner' } });
  });

  it('refuses a bad signature, a broken line and a finding without a detector, naming the line', async () => {
    const line = truffleLine('Postgres', 'postgres://a:b@h/d', 'f', 'abcdef1', false);
    expect((await h.post(line, { secret: newWebhookSecret(), path: '/webhooks/trufflehog' })).status).toBe(
      401,
    );
    const broken = await h.post(`${line}\n{"DetectorName": `, {
      secret: TRUFFLEHOG,
      path: '/webhooks/trufflehog',
    });
    expect(broken.status).toBe(400);
    expect(broken.json.detail).toContain('line 2');
    const missing = await h.post(JSON.stringify({ Raw: 'x' }), {
      secret: TRUFFLEHOG,
      path: '/webhooks/trufflehog',
    });
    expect(missing.status).toBe(422);
    expect(missing.json.errors[0].field).toBe('line[1].DetectorName');
  });
});

describe('TruffleHog v2', () => {
  // Real output of TruffleHog 2.2.1 (PyPI `truffleHog`), captured by
  //   trufflehog --json --regex file:///tmp/th2-fixture
  // on a three-commit repository that added, then removed, a deploy.env holding planted values:
  // AWS's documented example key pair (AKIAIOSFODNN7EXAMPLE) and a PostgreSQL URL whose role only
  // this test creates. Nothing in it is a real credential.
  const fixture = readFileSync(new URL('./fixtures/trufflehog-v2.jsonl', import.meta.url), 'utf8');
  const PG_ROLE = 'app_th2fixture';
  const PG_PASSWORD = 'Th2PlantedFake9Pw';

  it("maps v2's reasons (Password in URL, AWS API Key, High Entropy) and contains the PostgreSQL password, echoing no value", async () => {
    await h.owned.su.query(`CREATE ROLE ${PG_ROLE} LOGIN PASSWORD '${PG_PASSWORD}'`);
    expect(await h.owned.loginFails(PG_ROLE, PG_PASSWORD)).toBeNull();
    const res = await h.post(fixture, {
      secret: TRUFFLEHOG,
      contentType: 'application/x-ndjson',
      path: '/webhooks/trufflehog',
      headers: { 'x-scan-repository': 'acme/payments' },
    });
    expect(res.status).toBe(202);
    const text = JSON.stringify(res.json);
    for (const v of [PG_PASSWORD, 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY']) expect(text).not.toContain(v);
    // Six lines, one string each: the same three credentials seen in two commits.
    const runs = (res.json.runs as Array<{ workflowId: string }>).map((r) => r.workflowId);
    expect(runs).toHaveLength(6);
    expect([...new Set(runs.map((w) => /^killswitch-([a-z_]+?)-/.exec(w)![1]))].sort()).toEqual([
      'aws_access_key',
      'generic',
      'postgres_password',
    ]);
    expect(new Set(runs).size).toBe(3);

    const pg = runs.find((w) => w.startsWith('killswitch-postgres_password-'))!;
    const result: KillSwitchResult = await h.client.workflow.getHandle(pg).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(PG_ROLE, PG_PASSWORD)).toBe('28P01');
    const sightings = await h.db.query<{
      source: string;
      scanner: string;
      location: Record<string, unknown>;
    }>(
      "SELECT source, scanner, location FROM killswitch_sightings WHERE workflow_id = $1 ORDER BY location->>'commit'",
      [pg],
    );
    expect(sightings.rows.map((r) => r.location.commit).sort()).toEqual(
      ['1cc42b85905f23ac02bfd044fdcb460c7763eb94', '8d3071b37ee95f0c820f4e96000058cebb720315'].sort(),
    );
    expect(sightings.rows[0]).toMatchObject({
      source: 'trufflehog',
      scanner: 'trufflehog-v2',
      location: { repository: 'acme/payments', file: 'deploy.env' },
    });

    // The AWS line names the key id only (v2's regex matches AKIA…): a reference, not evidence.
    const aws = runs.find((w) => w.startsWith('killswitch-aws_access_key-'))!;
    await h.client.workflow.getHandle(aws).result();
    const audit = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = ANY($1)', [
        [pg, aws],
      ])
    ).rows;
    expect(audit.find((r) => r.workflow_id === aws)!.credential_ref).toEqual({
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    });
    expect(JSON.stringify(audit)).not.toContain(PG_PASSWORD);
  });

  it('refuses a v2 line without stringsFound, naming the field', async () => {
    const line = JSON.parse(fixture.split('\n')[0]!) as Record<string, unknown>;
    delete line.stringsFound;
    const res = await h.post(JSON.stringify(line), {
      secret: TRUFFLEHOG,
      contentType: 'application/x-ndjson',
      path: '/webhooks/trufflehog',
    });
    expect(res.status).toBe(422);
    expect(res.json.errors[0].field).toBe('line[1].stringsFound');
    expect(JSON.stringify(res.json)).not.toContain('EXAMPLEKEY');
  });
});

describe('Gitleaks', () => {
  it('dedupes by the secret, never by the location fingerprint', async () => {
    const { role, password } = await h.owned.createRole();
    const url = leakedUrl(role, password);
    const report = [
      gitleaksFinding(
        'generic-api-key',
        password,
        `DATABASE_URL=${url}`,
        'app/.env',
        'aa11bb22cc33',
        `aa11bb22cc33:app/.env:generic-api-key:3`,
      ),
      gitleaksFinding(
        'generic-api-key',
        password,
        `url: "${url}"`,
        'chart/values.yaml',
        'dd44ee55ff66',
        `dd44ee55ff66:chart/values.yaml:generic-api-key:3`,
      ),
    ];
    const res = await h.post(report, {
      secret: GITLEAKS,
      path: '/webhooks/gitleaks',
      webhookId: `msg_${rand()}`,
    });
    expect(res.status).toBe(202);
    expect(new Set(res.json.runs.map((r: { workflowId: string }) => r.workflowId)).size).toBe(1);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.runs[0].workflowId).result();
    expect(result.failure).toBeUndefined();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const detections = await h.db.query<{ detection_id: string }>(
      'SELECT detection_id FROM killswitch_sightings WHERE workflow_id = $1',
      [res.json.runs[0].workflowId],
    );
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
    writeFileSync(
      path.join(repo, '.env'),
      `DATABASE_URL=postgres://${role}:${password}@${o.host}:${o.port}/postgres\n`,
    );
    git('add', '.');
    git('commit', '-qm', 'add config');
    // Kingfisher exits 200 when it found secrets (0 when none): both are a successful scan.
    const scan = spawnSync(
      resolveKingfisher(),
      ['scan', '.', '--no-validate', '--format', 'json', '--no-update-check'],
      { cwd: repo, encoding: 'utf8', timeout: 120_000 },
    );
    rmSync(repo, { recursive: true, force: true });
    expect([0, 200], scan.stderr).toContain(scan.status);
    const report = scan.stdout;
    expect(report).toContain('"findings"');

    const res = await h.post(report, {
      secret: KINGFISHER,
      path: '/webhooks/kingfisher',
      contentType: 'application/x-ndjson',
      headers: { 'x-scan-repository': 'acme/payments' },
    });
    expect(res.status).toBe(202);
    const pg = (res.json.runs as Array<{ workflowId: string }>).find((r) =>
      r.workflowId.startsWith('killswitch-postgres_password-'),
    );
    expect(pg).toBeDefined();
    const result: KillSwitchResult = await h.client.workflow.getHandle(pg!.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(result.verification?.method).toBe('login_rejected');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const row = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        pg!.workflowId,
      ])
    ).rows[0]!;
    expect(row).toMatchObject({
      source: 'kingfisher',
      credential_ref: { role },
      location: { file: '.env', line: 1 },
    });
    expect(JSON.stringify(row)).not.toContain(password);
  });
});

describe('the repository a report names', () => {
  it('is a remote only: ".", paths and file:// URLs name none, so X-Scan-Repository is used', () => {
    expect(repoName('https://github.com/acme/payments.git')).toBe('acme/payments');
    expect(repoName('git@github.com:acme/payments.git')).toBe('acme/payments');
    expect(repoName('ssh://git@gitlab.example.com/group/sub/api.git')).toBe('group/sub/api');
    for (const local of [
      '.',
      './',
      '..',
      'src/app',
      '/tmp/ks-repo',
      'file:///tmp/ks-repo',
      'C:\\work\\repo',
      '',
    ])
      expect(repoName(local)).toBeUndefined();
  });
});

describe('credential types from a scanner name and the value', () => {
  it('a Redis URL with a password is a Redis password; a Slack webhook URL is no Slack token', () => {
    expect(credentialTypeOf('Password in URL', 'redis://default:pw-1@cache.internal:6379')).toBe(
      'redis_password',
    );
    expect(credentialTypeOf('generic-api-key', 'rediss://:pw-2@cache.internal:6380/0')).toBe(
      'redis_password',
    );
    expect(
      credentialTypeOf(
        'Slack Webhook',
        'https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX',
      ),
    ).toBe('generic');
    expect(credentialTypeOf('slack-webhook-url', 'https://hooks.slack.com/services/T0/B0/x')).toBe('generic');
    expect(credentialTypeOf('Slack Token', 'xoxb-123456789012-123456789012-abcdef')).toBe('slack_token');
  });
});

describe('Kingfisher: an AWS key pair in git history', () => {
  const { endpoint, admin, env: awsEnv, aws } = motoConnection('AWS_KF_ADMIN_KEY_ID', 'AWS_KF_ADMIN_SECRET');
  const prefix = `ks-kf-${rand()}`;
  let k: Harness;
  let iam: IAMClient;
  beforeAll(async () => {
    iam = new IAMClient({ region: 'us-east-1', endpoint, credentials: admin });
    k = await startHarness({
      env: { ...awsEnv, KINGFISHER_SECRETS: KINGFISHER },
      config: {
        systems: [{ name: 'aws-kf', kind: 'aws_iam', aws, users: [`${prefix}-*`] }],
        sources: { kingfisher: { secretsEnv: 'KINGFISHER_SECRETS' } },
      },
    });
  });
  afterAll(async () => {
    await k?.close();
    iam?.destroy();
  });

  it('keeps the secret access key of the pair as evidence (the key is proven dead) and names the repository of X-Scan-Repository, not "."', async () => {
    const user = `${prefix}-ci`;
    await iam.send(new CreateUserCommand({ UserName: user }));
    const leaked = (await iam.send(new CreateAccessKeyCommand({ UserName: user }))).AccessKey!;
    expect(await whoAmI(leaked.AccessKeyId!, leaked.SecretAccessKey!)).toMatch(new RegExp(`:user/${user}$`));

    // The pair lives only in history: added, then removed.
    const repo = mkdtempSync(path.join(os.tmpdir(), 'ks-kingfisher-aws-'));
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, stdio: 'pipe' });
    git('init', '-q');
    git('config', 'user.email', 'dev@acme.test');
    git('config', 'user.name', 'dev');
    writeFileSync(
      path.join(repo, 'creds.ini'),
      `[default]\naws_access_key_id = ${leaked.AccessKeyId}\naws_secret_access_key = ${leaked.SecretAccessKey}\n`,
    );
    git('add', '.');
    git('commit', '-qm', 'add credentials');
    git('rm', '-q', 'creds.ini');
    git('commit', '-qm', 'remove credentials');
    // --no-validate: kingfisher would otherwise try the key against the real AWS.
    const scan = spawnSync(
      resolveKingfisher(),
      ['scan', '.', '--no-validate', '--format', 'json', '--no-update-check'],
      { cwd: repo, encoding: 'utf8', timeout: 120_000 },
    );
    rmSync(repo, { recursive: true, force: true });
    expect([0, 200], scan.stderr).toContain(scan.status);
    const report = scan.stdout;
    expect(report).toContain('"repository_url":"."');
    expect(report).toContain('dependent_captures');

    const res = await k.post(report, {
      secret: KINGFISHER,
      path: '/webhooks/kingfisher',
      contentType: 'application/x-ndjson',
      headers: { 'x-scan-repository': 'acme/payments' },
    });
    expect(res.status).toBe(202);
    expect(JSON.stringify(res.json)).not.toContain(leaked.SecretAccessKey!);
    const run = (res.json.runs as Array<{ workflowId: string }>).find((r) =>
      r.workflowId.startsWith('killswitch-aws_access_key-'),
    );
    expect(run).toBeDefined();
    const result: KillSwitchResult = await k.client.workflow.getHandle(run!.workflowId).result();
    expect(result.outcome).toBe('contained');
    // Proven dead by signing with the leaked secret itself: only possible when it was kept as evidence.
    expect(result.verification?.method).toBe('login_rejected');
    expect(await whoAmI(leaked.AccessKeyId!, leaked.SecretAccessKey!)).toMatch(/^refused:/);

    const sightings = await k.db.query<{ location: Record<string, unknown> }>(
      'SELECT location FROM killswitch_sightings WHERE workflow_id = $1',
      [run!.workflowId],
    );
    expect(sightings.rows.length).toBeGreaterThan(0);
    for (const r of sightings.rows)
      expect(r.location).toMatchObject({ repository: 'acme/payments', file: 'creds.ini' });
    const row = (
      await k.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        run!.workflowId,
      ])
    ).rows[0]!;
    expect(row).toMatchObject({
      source: 'kingfisher',
      credential_ref: { accessKeyId: leaked.AccessKeyId },
      location: { repository: 'acme/payments' },
    });
    expect(JSON.stringify(row)).not.toContain(leaked.SecretAccessKey!);
  });
});

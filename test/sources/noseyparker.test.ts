/**
 * Nosey Parker reports (`noseyparker report --format json`, and `--format jsonl`) posted signed to
 * the real ingress and contained end to end. The fixture (fixtures/noseyparker-report.json) is
 * written to the tool's own JSON schema (`noseyparker generate json-schema`, in praetorian-inc/
 * noseyparker: crates/noseyparker-cli/tests/generate/snapshots/…generate_json_schema.snap) and shaped
 * like its report snapshots (…scan__appmaker__scan_workflow_from_git_url-4.snap): findings whose
 * capture groups are base64 in `groups`, matches with git_repo or file provenance. Planted values
 * only: a PostgreSQL role this test creates, AWS's documented example key pair, a made-up ghp_ token.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSources } from '../../api/sources/registry';
import type { KillSwitchResult } from '../../contracts/run';
import { loadConfig } from '../../lib/config';
import { parseInventory } from '../../lib/inventory';
import { createServerKeys, newServerKey, newWebhookSecret } from '../../lib/keys';
import { rand, startHarness, type Harness } from '../helpers/harness';

const NOSEYPARKER = newWebhookSecret();
const PG_ROLE = 'app_npfixture';
const PG_PASSWORD = 'NpPlantedFake4Pw';
const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const GH_TOKEN = 'ghp_Np7fixtureToken000000000000000000000';
const fixture = readFileSync(new URL('./fixtures/noseyparker-report.json', import.meta.url), 'utf8');
const findings = JSON.parse(fixture) as Array<Record<string, any>>;

let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    env: { NOSEYPARKER_SECRETS: NOSEYPARKER },
    config: { sources: { noseyparker: { secretsEnv: 'NOSEYPARKER_SECRETS' } } },
  });
  await h.owned.su.query(`DROP ROLE IF EXISTS ${PG_ROLE}`);
  await h.owned.su.query(`CREATE ROLE ${PG_ROLE} LOGIN PASSWORD '${PG_PASSWORD}'`);
});
afterAll(async () => {
  await h?.close();
});

const post = (body: string, opts: { secret?: string; contentType?: string } = {}) =>
  h.post(body, {
    secret: opts.secret ?? NOSEYPARKER,
    path: '/webhooks/noseyparker',
    contentType: opts.contentType ?? 'application/json',
    webhookId: `msg_${rand()}`,
    headers: { 'x-scan-repository': 'acme/payments' },
  });

describe('Nosey Parker', () => {
  it('contains the PostgreSQL password of a JSON report seen in two files, escalates what no system owns, echoes no value', async () => {
    expect(await h.owned.loginFails(PG_ROLE, PG_PASSWORD)).toBeNull();
    const res = await post(fixture);
    expect(res.status).toBe(202);
    const text = JSON.stringify(res.json);
    for (const v of [PG_PASSWORD, AWS_SECRET, GH_TOKEN]) expect(text).not.toContain(v);
    // One sighting per match: the URI in two files, the AWS pair, the GitHub token; three credentials.
    const runs = (res.json.runs as Array<{ workflowId: string }>).map((r) => r.workflowId);
    expect(runs).toHaveLength(4);
    expect(new Set(runs).size).toBe(3);
    expect([...new Set(runs.map((w) => /^killswitch-([a-z_]+?)-/.exec(w)![1]))].sort()).toEqual([
      'aws_access_key',
      'github_token',
      'postgres_password',
    ]);

    const pg = runs.find((w) => w.startsWith('killswitch-postgres_password-'))!;
    const result: KillSwitchResult = await h.client.workflow.getHandle(pg).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(PG_ROLE, PG_PASSWORD)).toBe('28P01');
    const sightings = await h.db.query<{
      source: string;
      scanner: string;
      location: Record<string, unknown>;
    }>(
      "SELECT source, scanner, location FROM killswitch_sightings WHERE workflow_id = $1 ORDER BY location->>'file'",
      [pg],
    );
    expect(sightings.rows.map((r) => r.location)).toEqual([
      {
        repository: 'acme/payments',
        file: 'deploy/.env',
        line: 2,
        commit: '4f1c2a9e8b7d6c5b4a3928171615141312111009',
      },
      {
        repository: 'acme/payments',
        file: 'docker-compose.yml',
        line: 7,
        commit: '9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b',
      },
    ]);
    expect(sightings.rows[0]).toMatchObject({ source: 'noseyparker', scanner: 'noseyparker' });

    // The AWS pair: the key id is the reference, the secret access key is kept as evidence only.
    const aws = runs.find((w) => w.startsWith('killswitch-aws_access_key-'))!;
    expect(await h.client.workflow.getHandle(aws).result()).toMatchObject({
      outcome: 'escalated',
      failure: { type: 'NoOwner' },
    });
    const gh = runs.find((w) => w.startsWith('killswitch-github_token-'))!;
    await h.client.workflow.getHandle(gh).result();
    const audit = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = ANY($1)', [
        [pg, aws, gh],
      ])
    ).rows;
    expect(audit.find((r) => r.workflow_id === aws)!.credential_ref).toEqual({
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    });
    expect(audit.find((r) => r.workflow_id === gh)!).toMatchObject({
      credential_ref: { tokenPrefix: 'ghp_' },
      location: { file: 'scripts/release.sh', line: 4 },
    });
    const all = JSON.stringify(audit);
    for (const v of [PG_PASSWORD, AWS_SECRET, GH_TOKEN]) expect(all).not.toContain(v);
  });

  it('takes the --format jsonl report the same way (one finding a line)', async () => {
    const jsonl = findings.map((f) => JSON.stringify(f)).join('\n');
    const res = await post(jsonl, { contentType: 'application/x-ndjson' });
    expect(res.status).toBe(202);
    const runs = (res.json.runs as Array<{ workflowId: string }>).map((r) => r.workflowId);
    expect(runs).toHaveLength(4);
    expect(new Set(runs).size).toBe(3);
    expect(JSON.stringify(res.json)).not.toContain(GH_TOKEN);
  });

  it('refuses a bad signature, broken JSON, and a finding without its groups or with groups that are not base64, naming the field, echoing no value', async () => {
    expect((await post(fixture, { secret: newWebhookSecret() })).status).toBe(401);

    const broken = await post(fixture.slice(0, 200));
    expect(broken.status).toBe(400);
    expect(broken.json.detail).toContain('not valid JSON');

    const noGroups = structuredClone(findings);
    delete noGroups[2]!.groups;
    const missing = await post(JSON.stringify(noGroups));
    expect(missing.status).toBe(422);
    expect(missing.json.errors[0].field).toBe('[2].groups');

    const notBase64 = structuredClone(findings);
    notBase64[2]!.groups = [GH_TOKEN.replace('_', '-')];
    const bad = await post(JSON.stringify(notBase64));
    expect(bad.status).toBe(422);
    expect(bad.json.errors[0]).toEqual({ field: '[2].groups[0]', message: 'base64 of the captured text' });

    const line = JSON.parse(JSON.stringify(findings[2])) as Record<string, unknown>;
    delete line.rule_name;
    const noName = await post([JSON.stringify(findings[0]), JSON.stringify(line)].join('\n'), {
      contentType: 'application/x-ndjson',
    });
    expect(noName.status).toBe(422);
    expect(noName.json.errors[0].field).toBe('line[2].rule_name');

    for (const r of [broken, missing, bad, noName]) {
      const text = JSON.stringify(r.json);
      for (const v of [PG_PASSWORD, AWS_SECRET, GH_TOKEN, GH_TOKEN.replace('_', '-')])
        expect(text).not.toContain(v);
    }
  });

  it('is configured like any CI report source: its secrets variable must hold whsec_ secrets', () => {
    const start = (env: Record<string, string>) => () =>
      buildSources({
        config: loadConfig({ KILLSWITCH_SERVER_KEY: newServerKey() }),
        inventory: parseInventory({ sources: { noseyparker: { secretsEnv: 'NP' } } }),
        keys: createServerKeys(newServerKey()),
        env,
        genericSecrets: [newWebhookSecret()],
      });
    expect(start({})).toThrow(/sources\.noseyparker\.secretsEnv: environment variable NP is not set/);
    expect(start({ NP: 'plain' })).toThrow(
      /sources\.noseyparker\.secretsEnv: NP: each secret must look like whsec_/,
    );
    expect(start({ NP: newWebhookSecret() })().sources.map((s) => s.handler.name)).toContain('noseyparker');
  });
});

/**
 * GitLab's Token Revocation API contract, served by the kill switch: types listed, tokens taken
 * with 204 and contained end to end, 401/400 as the contract says, 429 + Retry-After when Temporal
 * cannot take them.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../tools/temporal-dev';
import { killSwitchWorkflowId, type KillSwitchResult } from '../../contracts/run';
import { rand, startHarness, type Harness } from '../helpers/harness';

const TOKEN = `gitlab-revocation-${rand()}${rand()}`;
let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    env: { GITLAB_TOKENS: TOKEN },
    config: { sources: { gitlab: { tokensEnv: 'GITLAB_TOKENS' } } },
  });
});
afterAll(async () => {
  await h?.close();
});

const call = (base: string, path: string, init: RequestInit & { token?: string } = {}) =>
  fetch(`${base}/gitlab${path}`, {
    ...init,
    headers: {
      authorization: init.token ?? TOKEN,
      'content-type': 'application/json',
      ...(init.headers ?? {}),
    },
  });

describe('GitLab token revocation API', () => {
  it("lists GitLab's own type names: the secrets analyzer's primary identifier, type and value joined", async () => {
    const res = await call(h.baseUrl, '/v1/revocable_token_types');
    expect(res.status).toBe(200);
    const types: string[] = ((await res.json()) as any).types;
    // The example of GitLab's "Token Revocation API" docs (doc/development/sec/token_revocation_api.md).
    expect(types).toContain('gitleaks_rule_id_gitlab_personal_access_token');
    // GitLab's spec of the worker that builds the type (ee/spec/workers/scan_security_report_secrets_worker_spec.rb):
    // identifier type `gitleaks_rule_id`, value `AWS` -> `gitleaks_rule_id_aws`.
    expect(types).toContain('gitleaks_rule_id_aws');
    // Rule IDs of GitLab's "Detected secrets" table, joined the same way (`Github Personal Access Token`,
    // `Slack token`, `Password in URL`).
    expect(types).toEqual(
      expect.arrayContaining([
        'gitleaks_rule_id_github_personal_access_token',
        'gitleaks_rule_id_slack_token',
        'gitleaks_rule_id_password_in_url',
      ]),
    );
    // Our older names are still taken, but GitLab never sends them: not listed.
    expect(types).not.toContain('postgres_connection_string');
  });

  it("takes GitLab's type names and maps each to the credential it is", async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const tag = rand();
    const blob = (kind: string) =>
      `https://gitlab.example.com/acme/api/-/blob/0123456789abcdef0123456789abcdef01234567/config/${kind}-${tag}.yml#L21`;
    const keyId = `AKIA${rand().toUpperCase()}${rand().toUpperCase()}`;
    const res = await call(h.baseUrl, '/v1/revoke_tokens', {
      method: 'POST',
      body: JSON.stringify([
        // GitLab sends what the rule matched: `Password in URL` matches the whole URL.
        {
          type: 'gitleaks_rule_id_password_in_url',
          token: `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`,
          location: blob('pg'),
        },
        // `AWS` matches the access key id alone (GitLab's spec sends 'AKIAIOSFODNN7EXAMPLE').
        { type: 'gitleaks_rule_id_aws', token: keyId, location: blob('aws') },
        {
          type: 'gitleaks_rule_id_slack_token',
          token: `xoxb-${Date.now()}-${rand()}${rand()}`,
          location: blob('slack'),
        },
        {
          type: 'gitleaks_rule_id_github_personal_access_token',
          token: `ghp_${rand()}${rand()}${rand()}${rand()}abcd`,
          location: blob('github'),
        },
        // The docs' own example type: no system here revokes GitLab tokens, so it goes to a human.
        {
          type: 'gitleaks_rule_id_gitlab_personal_access_token',
          token: `glpat-${rand()}${rand()}ABCD`,
          location: blob('glpat'),
        },
      ]),
    });
    expect(res.status).toBe(204);
    const rows = (
      await h.db.query<{ workflow_id: string; file: string; location: Record<string, unknown> }>(
        "SELECT workflow_id, location->>'file' AS file, location FROM killswitch_sightings WHERE source = 'gitlab' AND location->>'file' LIKE $1",
        [`config/%-${tag}.yml`],
      )
    ).rows;
    const typeOf = (kind: string) =>
      /^killswitch-([a-z_]+?)-[0-9a-f]+$/.exec(
        rows.find((r) => r.file === `config/${kind}-${tag}.yml`)?.workflow_id ?? '',
      )?.[1];
    expect({
      pg: typeOf('pg'),
      aws: typeOf('aws'),
      slack: typeOf('slack'),
      github: typeOf('github'),
      glpat: typeOf('glpat'),
    }).toEqual({
      pg: 'postgres_password',
      aws: 'aws_access_key',
      slack: 'slack_token',
      github: 'github_token',
      glpat: 'generic',
    });
    // The blob URL names the repository, commit, file and line.
    expect(rows.find((r) => r.file === `config/pg-${tag}.yml`)!.location).toMatchObject({
      repository: 'acme/api',
      commit: '0123456789abcdef0123456789abcdef01234567',
      line: 21,
    });

    const pg: KillSwitchResult = await h.client.workflow
      .getHandle(rows.find((r) => r.file === `config/pg-${tag}.yml`)!.workflow_id)
      .result();
    expect(pg.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const aws = rows.find((r) => r.file === `config/aws-${tag}.yml`)!.workflow_id;
    await h.client.workflow.getHandle(aws).result();
    const audit = (
      await h.db.query<{ credential_ref: Record<string, string> }>(
        'SELECT credential_ref FROM killswitch_audit WHERE workflow_id = $1',
        [aws],
      )
    ).rows[0];
    expect(audit?.credential_ref).toEqual({ accessKeyId: keyId });
  });

  it("takes GitLab's names whatever their case and spacing (GitLab's own normalisation)", async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const res = await call(h.baseUrl, '/v1/revoke_tokens', {
      method: 'POST',
      body: JSON.stringify([
        {
          type: 'gitleaks_rule_id_Password in URL',
          token: `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`,
        },
      ]),
    });
    expect(res.status).toBe(204);
    const result: KillSwitchResult = await h.client.workflow
      .getHandle(killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password)))
      .result();
    expect(result.outcome).toBe('contained');
  });

  it('takes a leaked token under our older type name (an alias) with 204 and contains it', async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const token = `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`;
    const res = await call(h.baseUrl, '/v1/revoke_tokens', {
      method: 'POST',
      body: JSON.stringify([
        {
          type: 'postgres_connection_string',
          token,
          location: 'https://gitlab.example.com/acme/api/-/blob/abc/config/database.yml',
        },
      ]),
    });
    expect(res.status).toBe(204);
    const workflowId = killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password));
    const result: KillSwitchResult = await h.client.workflow.getHandle(workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
  });

  it('a request GitLab re-sends (it has no delivery id: keyed by its body), also after a crash before the answer, ends in one run', async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const body = JSON.stringify([
      {
        type: 'gitleaks_rule_id_password_in_url',
        token: `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`,
        location: 'https://gitlab.example.com/acme/api/-/blob/abc/.env',
      },
    ]);
    const send = () => call(h.baseUrl, '/v1/revoke_tokens', { method: 'POST', body });
    expect((await send()).status).toBe(204);
    const workflowId = killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password));
    await h.client.workflow.getHandle(workflowId).result();
    const runs = async () => {
      const ids: string[] = [];
      for await (const e of h.client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
        ids.push(e.runId);
      return ids;
    };
    // GitLab's retry of the same request: answered from the ledger, no second (re-verifying) run.
    expect((await send()).status).toBe(204);
    // The ledger row as an ingress killed between starting the run and answering leaves it.
    const key = `body-sha256:${createHash('sha256').update(body).digest('hex')}`;
    const unanswered = await h.db.query(
      "UPDATE killswitch_deliveries SET status = NULL, response = NULL WHERE source = 'gitlab' AND delivery_id = $1 RETURNING 1",
      [key],
    );
    expect(unanswered.rows).toHaveLength(1);
    expect((await send()).status).toBe(204);
    expect(await runs()).toHaveLength(1);
    const audit = await h.db.query<{ outcome: string }>(
      'SELECT outcome FROM killswitch_audit WHERE workflow_id = $1',
      [workflowId],
    );
    expect(audit.rows).toEqual([{ outcome: 'contained' }]);
  });

  it('answers 401 without the pre-shared token, 400 for malformed bodies and unknown types', async () => {
    expect((await call(h.baseUrl, '/v1/revocable_token_types', { token: 'nope' })).status).toBe(401);
    expect((await call(h.baseUrl, '/v1/revoke_tokens', { method: 'POST', body: '{not json' })).status).toBe(
      400,
    );
    expect(
      (await call(h.baseUrl, '/v1/revoke_tokens', { method: 'POST', body: JSON.stringify({ type: 'x' }) }))
        .status,
    ).toBe(400);
    const token = `planted-${rand()}${rand()}`;
    const unknown = await call(h.baseUrl, '/v1/revoke_tokens', {
      method: 'POST',
      body: JSON.stringify([
        { type: 'gitleaks_rule_id_aws', token: `AKIA${rand().toUpperCase()}${rand().toUpperCase()}` },
        { type: 'gitleaks_rule_id_floppy_key', token },
      ]),
    });
    expect(unknown.status).toBe(400);
    const text = await unknown.text();
    expect(JSON.parse(text).detail).toContain('[1].type');
    expect(text).not.toContain(token);
    expect(text).not.toContain('floppy');
  });

  it('answers 429 with Retry-After when Temporal cannot take the tokens', async () => {
    const down = await startHarness({
      worker: false,
      temporalAddress: `127.0.0.1:${await freePort()}`,
      deadlineMs: 1000,
      env: { GITLAB_TOKENS: TOKEN },
      config: { sources: { gitlab: { tokensEnv: 'GITLAB_TOKENS' } } },
    });
    try {
      const res = await call(down.baseUrl, '/v1/revoke_tokens', {
        method: 'POST',
        body: JSON.stringify([{ type: 'generic_secret', token: `t-${rand()}` }]),
      });
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('10');
    } finally {
      await down.close();
    }
  });
});

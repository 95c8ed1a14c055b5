/**
 * GitHub secret_scanning_alert webhooks end to end: payloads built from and validated against
 * GitHub's published webhook schemas (@octokit/webhooks-schemas), signed as GitHub signs; the
 * alert's secret fetched from a loopback fake of the REST API by the enrichment workflow; the
 * PostgreSQL role contained; the alert resolved as revoked with a link to the run.
 */
import { createHmac } from 'node:crypto';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import schema from '@octokit/webhooks-schemas/schema.json' with { type: 'json' };
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertApiUrl } from '../../activities/scanners/github';
import type { KillSwitchResult } from '../../contracts/run';
import { startGitHubFake, type GitHubFake } from '../fakes/github';
import { leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';
import { sampleOf } from '../helpers/schema-sample';

const SECRET = `gh-webhook-${rand()}${rand()}`;
const OLD_SECRET = `gh-webhook-old-${rand()}${rand()}`;
let gh: GitHubFake;
let h: Harness;
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(schema as object, 'webhooks');
const validate = (event: string, doc: unknown) => {
  const ok = ajv.validate({ $ref: `webhooks#/definitions/${event}` }, doc);
  if (!ok) throw new Error(`payload does not match ${event}: ${ajv.errorsText()}`);
};

beforeAll(async () => {
  gh = await startGitHubFake();
  h = await startHarness({
    env: { GITHUB_WEBHOOK_SECRETS: `${OLD_SECRET},${SECRET}`, GITHUB_TOKEN: gh.token },
    config: {
      sources: {
        github: { secretsEnv: 'GITHUB_WEBHOOK_SECRETS', apiTokenEnv: 'GITHUB_TOKEN', apiUrl: gh.apiUrl },
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
  await gh?.close();
});

function payload(
  event:
    'secret_scanning_alert$created' | 'secret_scanning_alert$reopened' | 'secret_scanning_alert$resolved',
  over: { repo: string; number: number; url?: string },
) {
  const doc = sampleOf((schema as any).definitions[event], schema as any) as any;
  doc.repository.full_name = over.repo;
  doc.repository.name = over.repo.split('/')[1];
  doc.alert.number = over.number;
  doc.alert.secret_type = 'postgres_connection_uri';
  if ('url' in doc.alert) doc.alert.url = over.url;
  if ('html_url' in doc.alert)
    doc.alert.html_url = `https://github.com/${over.repo}/security/secret-scanning/${over.number}`;
  validate(event, doc);
  return doc;
}

async function deliver(doc: unknown, opts: { secret?: string; event?: string; delivery?: string } = {}) {
  const body = JSON.stringify(doc);
  const sig = `sha256=${createHmac('sha256', opts.secret ?? SECRET)
    .update(body)
    .digest('hex')}`;
  const res = await fetch(`${h.baseUrl}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-github-event': opts.event ?? 'secret_scanning_alert',
      'x-github-delivery': opts.delivery ?? `${rand()}-${rand()}-${rand()}`,
      'x-hub-signature-256': sig,
      'user-agent': 'GitHub-Hookshot/abc123',
    },
    body,
  });
  return { status: res.status, json: (await res.json().catch(() => null)) as any };
}

async function containedVia(enrichWorkflowId: string) {
  const enriched = await h.client.workflow.getHandle(enrichWorkflowId).result();
  const result: KillSwitchResult = await h.client.workflow
    .getHandle(enriched.workflowId, enriched.runId)
    .result();
  return { enriched, result };
}

describe('GitHub secret scanning alerts', () => {
  it('created: fetches the secret, contains the PostgreSQL role, resolves the alert as revoked', async () => {
    const { role, password } = await h.owned.createRole();
    const repo = 'acme/payments';
    const number = 1000 + Math.floor(Math.random() * 1e6);
    const url = gh.addAlert(repo, {
      number,
      secret_type: 'postgres_connection_uri',
      secret: leakedUrl(role, password),
      validity: 'active',
      path: 'deploy/.env',
      line: 4,
    });
    const res = await deliver(payload('secret_scanning_alert$created', { repo, number, url }));
    expect(res.status).toBe(202);
    expect(res.json).toMatchObject({
      status: 'enriching',
      workflowId: expect.stringMatching(/^enrich-github-/),
    });

    const { enriched, result } = await containedVia(res.json.workflowId);
    expect(enriched.enriched).toBe(true);
    expect(result.outcome).toBe('contained');
    expect(result.loopClosed).toEqual([`resolved github_alert ${url}`]);
    expect(await h.owned.loginFails(role, password)).toBe('28P01');

    const alert = gh.alerts.get(`${repo}#${number}`)!;
    expect(alert).toMatchObject({ state: 'resolved', resolution: 'revoked' });
    expect(alert.resolution_comment).toContain(`/workflows/${enriched.workflowId}/`);
    const rows = await h.db.query<Record<string, any>>(
      'SELECT * FROM killswitch_audit WHERE workflow_id = $1',
      [enriched.workflowId],
    );
    expect(rows.rows[0]).toMatchObject({
      source: 'github',
      scanner: 'github-secret-scanning',
      validity: 'verified',
    });
    expect(rows.rows[0]!.loop_closed).toContain('resolved github_alert');
  });

  it('reopened (the sparse shape, no alert url): builds the API URL from repository and number', async () => {
    const { role, password } = await h.owned.createRole();
    const repo = 'acme/legacy';
    const number = 7;
    gh.addAlert(repo, { number, secret_type: 'postgres_connection_uri', secret: leakedUrl(role, password) });
    const doc = payload('secret_scanning_alert$reopened', { repo, number });
    expect(doc.alert.url).toBeUndefined();
    const res = await deliver(doc);
    expect(res.status).toBe(202);
    const { result } = await containedVia(res.json.workflowId);
    expect(result.outcome).toBe('contained');
    expect(
      gh.requests.some(
        (r) => r.method === 'GET' && r.path === `/repos/${repo}/secret-scanning/alerts/${number}`,
      ),
    ).toBe(true);
  });

  it('records other actions and events without acting; answers a redelivery from the ledger', async () => {
    const before = gh.requests.length;
    const resolved = await deliver(
      payload('secret_scanning_alert$resolved', {
        repo: 'acme/x',
        number: 1,
        url: `${gh.apiUrl}/repos/acme/x/secret-scanning/alerts/1`,
      }),
    );
    expect(resolved).toMatchObject({
      status: 202,
      json: { status: 'recorded', reason: 'action resolved is recorded, not acted on' },
    });
    const ping = await deliver({ zen: 'Keep it logically awesome.', hook_id: 1 }, { event: 'ping' });
    expect(ping).toMatchObject({ status: 202, json: { status: 'recorded', reason: 'ping' } });
    expect(gh.requests.length).toBe(before);
    const delivery = `${rand()}-redelivered`;
    const first = await deliver({ zen: 'x' }, { event: 'ping', delivery });
    const again = await deliver({ zen: 'x' }, { event: 'ping', delivery });
    expect(first.json.duplicate).toBeUndefined();
    expect(again.json).toMatchObject({ duplicate: true, status: 'recorded' });
  });

  it('verifies X-Hub-Signature-256 against every active secret', async () => {
    const doc = payload('secret_scanning_alert$resolved', {
      repo: 'acme/x',
      number: 2,
      url: `${gh.apiUrl}/repos/acme/x/secret-scanning/alerts/2`,
    });
    expect((await deliver(doc, { secret: OLD_SECRET })).status).toBe(202);
    expect((await deliver(doc, { secret: 'not-the-secret' })).status).toBe(401);
    const unsigned = await fetch(`${h.baseUrl}/webhooks/github`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-github-event': 'ping', 'x-github-delivery': 'd-1' },
      body: '{}',
    });
    expect(unsigned.status).toBe(401);
  });

  it('escalates an alert whose secret cannot be fetched, naming why', async () => {
    const res = await deliver(
      payload('secret_scanning_alert$created', {
        repo: 'acme/gone',
        number: 404,
        url: `${gh.apiUrl}/repos/acme/gone/secret-scanning/alerts/404`,
      }),
    );
    const enriched = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(enriched.enriched).toBe(false);
    const result: KillSwitchResult = await h.client.workflow
      .getHandle(enriched.workflowId, enriched.runId)
      .result();
    expect(result.outcome).toBe('escalated');
    expect(
      h.pagerduty
        .events()
        .some((e) => e.dedup_key === enriched.workflowId && JSON.stringify(e).includes('UpstreamRefused')),
    ).toBe(true);
  });

  it('never sends the token to a host named by the delivery', () => {
    const api = 'https://api.github.com';
    expect(
      alertApiUrl(
        {
          alertUrl: 'https://evil.example/repos/a/b/secret-scanning/alerts/1',
          repository: 'a/b',
          alertNumber: 1,
        },
        api,
      ),
    ).toBe(`${api}/repos/a/b/secret-scanning/alerts/1`);
    expect(
      alertApiUrl(
        {
          alertUrl: `${api}.evil.example/repos/a/b/secret-scanning/alerts/1`,
          repository: 'a/b',
          alertNumber: 1,
        },
        api,
      ),
    ).toBe(`${api}/repos/a/b/secret-scanning/alerts/1`);
    expect(
      alertApiUrl(
        { alertUrl: `${api}/repos/a/b/secret-scanning/alerts/1`, repository: 'a/b', alertNumber: 1 },
        api,
      ),
    ).toBe(`${api}/repos/a/b/secret-scanning/alerts/1`);
  });
});

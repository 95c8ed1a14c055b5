/**
 * A sender described only by configuration: a security platform's "New Secret Detected" webhook
 * (HMAC-SHA256 header, nested findings) and a single-finding sender on Standard Webhooks, mapped to
 * detections and contained end to end.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { newWebhookSecret } from '../../lib/keys';
import type { KillSwitchResult } from '../../contracts/run';
import { rand, startHarness, type Harness } from '../helpers/harness';

const ACME = `acme-${rand()}${rand()}`;
const TINY = newWebhookSecret();
let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    env: { ACME_SECRETS: ACME, TINY_SECRETS: TINY },
    config: {
      sources: {
        custom: [
          {
            name: 'acme-platform',
            verify: {
              scheme: 'hmac-sha256',
              secretsEnv: 'ACME_SECRETS',
              header: 'X-Acme-Signature',
              prefix: 'sha256=',
            },
            mapping: {
              items: 'data.findings',
              secret: 'match.value',
              credentialType: 'kind',
              typeMap: { postgresql_uri: 'postgres_password' },
              severity: 'severity',
              dedupeId: 'id',
              verified: 'validation.live',
              location: {
                repository: 'where.repo',
                file: 'where.path',
                line: 'where.line',
                commit: 'where.commit',
                url: 'link',
              },
            },
          },
          {
            name: 'tiny-scanner',
            verify: { scheme: 'standard-webhooks', secretsEnv: 'TINY_SECRETS' },
            mapping: {
              credentialRef: { role: 'account', host: 'server' },
              defaultCredentialType: 'postgres_password',
              severity: 'level',
            },
          },
        ],
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
});

function acmePost(doc: unknown, secret = ACME) {
  const body = JSON.stringify(doc);
  return fetch(`${h.baseUrl}/webhooks/acme-platform`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-acme-signature': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`,
    },
    body,
  }).then(async (r) => ({ status: r.status, json: (await r.json().catch(() => null)) as any }));
}

describe('custom senders', () => {
  it('maps a nested "New Secret Detected" payload and contains the credential', async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const doc = {
      event: 'secret.detected',
      data: {
        findings: [
          {
            id: `f-${rand()}`,
            kind: 'postgresql_uri',
            severity: 'CRITICAL',
            validation: { live: true },
            match: {
              value: `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`,
            },
            where: { repo: 'acme/payments', path: 'deploy/.env', line: 9, commit: 'abc1234def' },
            link: 'https://platform.acme.test/findings/1',
          },
        ],
      },
    };
    const res = await acmePost(doc);
    expect(res.status).toBe(202);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const row = (
      await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
        res.json.workflowId,
      ])
    ).rows[0]!;
    expect(row).toMatchObject({
      source: 'acme-platform',
      validity: 'verified',
      location: { repository: 'acme/payments', file: 'deploy/.env', line: 9 },
    });
    expect(JSON.stringify(row)).not.toContain(password);
    expect((await acmePost(doc, 'wrong')).status).toBe(401);
  });

  it('maps a single-finding sender that names the credential without its value', async () => {
    const { role, password } = await h.owned.createRole();
    const res = await h.post(
      { account: role, server: '127.0.0.1', level: 'low' },
      { secret: TINY, path: '/webhooks/tiny-scanner' },
    );
    expect(res.status).toBe(202);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result).toMatchObject({
      outcome: 'contained',
      verification: { method: 'not_verifiable_no_leaked_value' },
    });
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
  });

  it('names the finding that maps to nothing', async () => {
    const res = await acmePost({
      data: {
        findings: [
          { id: 'a', kind: 'x', match: { value: 'v-1' } },
          { id: 'b', kind: 'x' },
        ],
      },
    });
    expect(res.status).toBe(422);
    expect(res.json.errors[0].field).toBe('data.findings[1].match.value');
    const notArray = await acmePost({ data: { findings: 'nope' } });
    expect(notArray.status).toBe(422);
  });
});

/**
 * GitLab's Token Revocation API contract, served by the kill switch: types listed, tokens taken
 * with 204 and contained end to end, 401/400 as the contract says, 429 + Retry-After when Temporal
 * cannot take them.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../lib/temporal-dev';
import { killSwitchWorkflowId, type KillSwitchResult } from '../../workflows/shared';
import { rand, startHarness, type Harness } from '../helpers/harness';

const TOKEN = `gitlab-revocation-${rand()}${rand()}`;
let h: Harness;
beforeAll(async () => {
  h = await startHarness({ env: { GITLAB_TOKENS: TOKEN }, config: { sources: { gitlab: { tokensEnv: 'GITLAB_TOKENS' } } } });
});
afterAll(async () => {
  await h?.close();
});

const call = (base: string, path: string, init: RequestInit & { token?: string } = {}) =>
  fetch(`${base}/gitlab${path}`, { ...init, headers: { authorization: init.token ?? TOKEN, 'content-type': 'application/json', ...(init.headers ?? {}) } });

describe('GitLab token revocation API', () => {
  it('lists the token types it revokes', async () => {
    const res = await call(h.baseUrl, '/v1/revocable_token_types');
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).types).toContain('postgres_connection_string');
  });

  it('takes a leaked token with 204 and contains it', async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const token = `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`;
    const res = await call(h.baseUrl, '/v1/revoke_tokens', {
      method: 'POST',
      body: JSON.stringify([{ type: 'postgres_connection_string', token, location: 'https://gitlab.example.com/acme/api/-/blob/abc/config/database.yml' }]),
    });
    expect(res.status).toBe(204);
    const workflowId = killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password));
    const result: KillSwitchResult = await h.client.workflow.getHandle(workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
  });

  it('answers 401 without the pre-shared token, 400 for malformed bodies and unknown types', async () => {
    expect((await call(h.baseUrl, '/v1/revocable_token_types', { token: 'nope' })).status).toBe(401);
    expect((await call(h.baseUrl, '/v1/revoke_tokens', { method: 'POST', body: '{not json' })).status).toBe(400);
    expect((await call(h.baseUrl, '/v1/revoke_tokens', { method: 'POST', body: JSON.stringify({ type: 'x' }) })).status).toBe(400);
    const unknown = await call(h.baseUrl, '/v1/revoke_tokens', { method: 'POST', body: JSON.stringify([{ type: 'floppy_key', token: 't' }]) });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as any).detail).toContain('[0].type');
  });

  it('answers 429 with Retry-After when Temporal cannot take the tokens', async () => {
    const down = await startHarness({ worker: false, temporalAddress: `127.0.0.1:${await freePort()}`, deadlineMs: 1000, env: { GITLAB_TOKENS: TOKEN }, config: { sources: { gitlab: { tokensEnv: 'GITLAB_TOKENS' } } } });
    try {
      const res = await call(down.baseUrl, '/v1/revoke_tokens', { method: 'POST', body: JSON.stringify([{ type: 'generic_secret', token: `t-${rand()}` }]) });
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('10');
    } finally {
      await down.close();
    }
  });
});

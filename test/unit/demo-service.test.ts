/**
 * The demo owning system npm start runs on embedded defaults (lib/demo-service.ts), against the
 * real service over loopback: its API (keys, sessions, admin), the embedded inventory entry routing
 * a generic detection of a demo key to it, and the http recipes of that entry revoking the key,
 * expiring its sessions and proving it dead, with the real HttpProvider.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reduceFinding } from '../../contracts/finding';
import * as boot from '../../lib/bootstrap';
import { loadConfig } from '../../lib/config';
import { demoWhoami, mintDemoKey } from '../../lib/demo-client';
import {
  DEMO_ADMIN_TOKEN_ENV,
  DEMO_KEY_RE,
  DEMO_SYSTEM,
  newDemoAdminToken,
  publishDemoEndpoint,
  readDemoEndpoint,
  startDemoService,
  type DemoService,
} from '../../lib/demo-service';
import { matchOwner, resolveInventoryEnv } from '../../lib/inventory';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { kindOf } from '../../lib/systems';
import { capturedLogs, testLogger } from '../helpers/harness';

let demo: DemoService;
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ks-demo-'));
const admin = newDemoAdminToken();

beforeAll(async () => {
  demo = await startDemoService({ adminToken: admin, logger: testLogger });
});
afterAll(async () => {
  await demo?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const req = (p: string, init: RequestInit & { token?: string } = {}) =>
  fetch(`${demo.url}${p}`, {
    ...init,
    headers: {
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...(init.headers as Record<string, string> | undefined),
    },
  });

describe('the demo service', () => {
  it('issues keys with sessions; revoking a key leaves its sessions until they are expired', async () => {
    expect(demo.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const key = await mintDemoKey({ url: demo.url, adminToken: admin }, 2);
    expect(key.value).toMatch(DEMO_KEY_RE);
    expect(key.value.startsWith(`demo_${key.prefix}_`)).toBe(true);
    expect(await demoWhoami(demo.url, { key: key.value })).toBe(200);
    for (const s of key.sessions) expect(await demoWhoami(demo.url, { session: s })).toBe(200);
    // A wrong secret with the right prefix is refused.
    expect(await demoWhoami(demo.url, { key: `${key.value.slice(0, -1)}x` })).toBe(401);

    const found = await (await req(`/admin/keys/by-prefix/${key.prefix}`, { token: admin })).json();
    expect(found).toEqual({
      key: { id: key.id, prefix: key.prefix, owner: 'send-test-detection', revoked: false, sessions: 2 },
    });
    const listed = (await (await req(`/admin/keys/${key.id}/sessions`, { token: admin })).json()) as {
      sessions: Array<{ id: string }>;
    };
    expect(listed.sessions).toHaveLength(2);
    // Session ids are not the session values.
    for (const s of key.sessions) expect(JSON.stringify(listed)).not.toContain(s);

    expect((await req(`/admin/keys/${key.id}`, { method: 'DELETE', token: admin })).status).toBe(204);
    expect((await req(`/admin/keys/${key.id}`, { method: 'DELETE', token: admin })).status).toBe(404);
    expect(await demoWhoami(demo.url, { key: key.value })).toBe(401);
    expect((await req(`/admin/keys/by-prefix/${key.prefix}`, { token: admin })).status).toBe(404);
    expect((await req(`/admin/keys/by-prefix/${key.prefix}?include=revoked`, { token: admin })).status).toBe(
      200,
    );
    // The sessions opened with the revoked key still work: only expiring them ends them.
    for (const s of key.sessions) expect(await demoWhoami(demo.url, { session: s })).toBe(200);
    const expired = await req(`/admin/keys/${key.id}/sessions/revoke`, { method: 'POST', token: admin });
    expect(await expired.json()).toEqual({ terminated: 2 });
    for (const s of key.sessions) expect(await demoWhoami(demo.url, { session: s })).toBe(401);
    // A revoked key cannot log in again.
    expect((await req('/api/sessions', { method: 'POST', token: key.value })).status).toBe(401);
  });

  it('guards the admin API with its token and validates input; an Idempotency-Key returns the same key', async () => {
    expect((await req('/admin/keys/by-prefix/abc')).status).toBe(401);
    expect((await req('/admin/keys/by-prefix/abc', { token: `${admin}x` })).status).toBe(401);
    const post = (body: string, headers: Record<string, string> = {}) =>
      req('/admin/keys', { method: 'POST', token: admin, body, headers });
    expect((await post('not json')).status).toBe(400);
    expect((await post(JSON.stringify({ owner: '' }))).status).toBe(422);
    expect((await post(JSON.stringify({ owner: 'x' }), { 'idempotency-key': 'a b' })).status).toBe(422);
    expect((await post('x'.repeat(20_000))).status).toBe(413);
    const a = await (await post(JSON.stringify({ owner: 'o' }), { 'idempotency-key': 'wf-1' })).json();
    const b = await (await post(JSON.stringify({ owner: 'o' }), { 'idempotency-key': 'wf-1' })).json();
    const c = await (await post(JSON.stringify({ owner: 'o' }), { 'idempotency-key': 'wf-2' })).json();
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    expect((await req('/nope')).status).toBe(404);
    expect((await req('/admin/keys', { method: 'PUT', token: admin })).status).toBe(405);
    // The service logs key prefixes, never a key or the admin token.
    const logs = capturedLogs.join('');
    expect(logs).toContain('demo service: API key issued');
    expect(logs).not.toContain(admin);
    expect(logs).not.toContain((a as { secret: string }).secret);
  });

  it('publishes its endpoint in the data folder for the tools, and says what is missing', () => {
    expect(() => readDemoEndpoint(dataDir)).toThrow(/no demo service: .*demo-service-url is missing/);
    const unpublish = publishDemoEndpoint(dataDir, demo.url);
    expect(() => readDemoEndpoint(dataDir)).toThrow(/demo-admin-token is missing/);
    const config = loadConfig({ KILLSWITCH_DATA_DIR: dataDir });
    const token = boot.localApiToken(config);
    expect(token.role).toBe('admin');
    expect(statSync(path.join(dataDir, 'api-token')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim()).toBe(token.token);
    unpublish();
    expect(() => readDemoEndpoint(dataDir)).toThrow(/demo-service-url is missing/);
  });
});

describe('the embedded inventory with the demo system', () => {
  const config = loadConfig({ KILLSWITCH_DATA_DIR: dataDir });
  const keys = createServerKeys(newServerKey());

  it('routes a generic detection of a demo key to acme-demo, whose recipes revoke, expire and verify', async () => {
    const inventory = boot.inventory(config, testLogger, { url: demo.url });
    expect(inventory.systems.map((s) => s.name)).toEqual([DEMO_SYSTEM]);
    // Its admin token comes from the environment, checked at startup like any other.
    expect(() => resolveInventoryEnv(inventory, {})).toThrow(DEMO_ADMIN_TOKEN_ENV);
    const env = resolveInventoryEnv(inventory, { [DEMO_ADMIN_TOKEN_ENV]: admin });

    const key = await mintDemoKey({ url: demo.url, adminToken: admin }, 3);
    // What send-test-detection sends, reduced as the generic webhook reduces it.
    const { detection, leakedValue } = reduceFinding(
      {
        source: 'generic',
        credentialType: 'generic',
        secret: key.value,
        credentialRef: { service: DEMO_SYSTEM, keyPrefix: key.prefix },
        severity: 'high',
      },
      keys,
      new Date(),
    );
    expect(leakedValue).toBe(key.value);
    const owner = matchOwner(inventory, detection);
    expect(owner).toMatchObject({ kind: 'owned', system: { name: DEMO_SYSTEM } });
    if (owner.kind !== 'owned') return;
    // Another service's key is not the demo's.
    expect(
      matchOwner(inventory, { ...detection, credentialRef: { service: 'billing', keyPrefix: key.prefix } })
        .kind,
    ).toBe('unowned');

    const provider = kindOf(owner.system).createProvider(owner.system, env);
    const request = { workflowId: 'killswitch-generic-demo-test', credentialRef: detection.credentialRef };
    const revoked = await provider.revoke({ ...request, mode: 'emergency', leakedValue });
    expect(revoked.revokedAt).not.toBeNull();
    expect(await demoWhoami(demo.url, { key: key.value })).toBe(401);
    const expired = await provider.expireSessions(request);
    expect(expired.terminated).toBe(3);
    for (const s of key.sessions) expect(await demoWhoami(demo.url, { session: s })).toBe(401);
    const verified = await provider.verifyDead(request, leakedValue);
    expect(verified.method).toBe('login_rejected');
    expect(verified.verifiedDeadAt).not.toBeNull();
    // A second run finds the key gone: nothing to do, still a success.
    expect((await provider.revoke({ ...request, mode: 'emergency', leakedValue })).note).toMatch(/already/);
  });

  it('is used only without an inventory file', () => {
    const file = path.join(dataDir, 'inventory.yaml');
    const withFile = loadConfig({ KILLSWITCH_DATA_DIR: dataDir, INVENTORY_FILE: file });
    expect(boot.inventoryFile(withFile)).toBe(file);
    expect(boot.inventoryFile(config)).toBeUndefined();
    expect(boot.inventory(config, testLogger).systems).toEqual([]);
  });
});

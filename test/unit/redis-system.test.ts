/** The `redis` kind's inventory schema and matching, and how a leaked redis:// URL becomes a Detection. */
import { describe, expect, it } from 'vitest';
import type { HttpProblem } from '../../contracts/errors';
import { normaliseGeneric, validateGeneric } from '../../api/sources/generic';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { matchOwner, parseInventory, resolveInventoryEnv } from '../../lib/inventory';

const keys = createServerKeys(newServerKey());
const now = new Date('2026-11-23T10:00:00Z');
const norm = (body: unknown) => normaliseGeneric(validateGeneric(body), keys, now);
const problemOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as HttpProblem).status;
  }
  return 'no problem';
};

describe('a leaked redis:// URL', () => {
  it('becomes user, host and port; the password alone is the sealed evidence', () => {
    const n = norm({
      credentialType: 'redis_password',
      secret: 'redis://cart_app:p%40ss%2Fw0rd@cache.internal:6380/2',
    });
    expect(n.leakedValue).toBe('p@ss/w0rd');
    expect(n.detection.credentialRef).toEqual({ user: 'cart_app', host: 'cache.internal', port: '6380' });
    expect(n.detection.fingerprint).toBe(keys.fingerprint('p@ss/w0rd'));
    expect(n.detection.hasEvidence).toBe(true);
    expect(JSON.stringify(n.detection)).not.toMatch(/p%40ss|p@ss/);
  });

  it('names the default user when the URL has only a password (legacy AUTH), and accepts rediss://', () => {
    const n = norm({ credentialType: 'redis_password', secret: 'rediss://:only-pw@[::1]:6390' });
    expect(n.leakedValue).toBe('only-pw');
    expect(n.detection.credentialRef).toEqual({ user: 'default', host: '::1', port: '6390' });
  });

  it('refuses a URL without a password, or naming another user than credentialRef', () => {
    expect(
      problemOf(() => norm({ credentialType: 'redis_password', secret: 'redis://cart_app@cache.internal' })),
    ).toBe(422);
    expect(
      problemOf(() =>
        norm({ credentialType: 'redis_password', secret: 'redis://a:pw@h', credentialRef: { user: 'b' } }),
      ),
    ).toBe(422);
  });

  it('leaves a bare password as it is: no user, so no redis system owns it and the run escalates', () => {
    const n = norm({ credentialType: 'redis_password', secret: 'just-a-password' });
    expect(n.leakedValue).toBe('just-a-password');
    expect(n.detection.credentialRef).toEqual({});
  });
});

describe('redis systems in the inventory', () => {
  const inv = parseInventory({
    systems: [
      {
        name: 'cache',
        kind: 'redis',
        adminUrlEnv: 'CACHE_ADMIN_URL',
        users: ['cart_*', 'default'],
        hosts: ['cache.internal'],
      },
      { name: 'queue', kind: 'redis', adminUrlEnv: 'QUEUE_ADMIN_URL', users: ['worker_?'] },
    ],
  });

  it('fills defaults and matches users by glob, and hosts when both sides name one', () => {
    expect(inv.systems[0]).toMatchObject({
      mode: 'emergency',
      persist: 'auto',
      stateKeyPrefix: 'killswitch:',
      sink: { kind: 'none' },
    });
    const owner = (credentialRef: Record<string, string>) => {
      const m = matchOwner(inv, { credentialType: 'redis_password', credentialRef });
      return m.kind === 'owned' ? m.system.name : m.kind;
    };
    expect(owner({ user: 'cart_app', host: 'CACHE.internal' })).toBe('cache');
    expect(owner({ user: 'cart_app' })).toBe('cache');
    expect(owner({ user: 'cart_app', host: 'elsewhere' })).toBe('unowned');
    expect(owner({ user: 'worker_1', host: 'anywhere' })).toBe('queue');
    expect(owner({ user: 'worker_12' })).toBe('unowned');
    expect(owner({})).toBe('unowned');
    expect(
      matchOwner(inv, { credentialType: 'postgres_password', credentialRef: { user: 'cart_app' } }).kind,
    ).toBe('unowned');
  });

  it('rejects quarantine and unknown fields, and checks the admin URL env var', () => {
    expect(() =>
      parseInventory({
        systems: [{ name: 'c', kind: 'redis', adminUrlEnv: 'X', users: ['a'], quarantine: true }],
      }),
    ).toThrow(/quarantine/);
    expect(() =>
      parseInventory({
        systems: [{ name: 'c', kind: 'redis', adminUrlEnv: 'X', users: ['a'], roles: ['a'] }],
      }),
    ).toThrow();
    expect(() =>
      parseInventory({ systems: [{ name: 'c', kind: 'redis', adminUrlEnv: 'X', users: [] }] }),
    ).toThrow();
    expect(() =>
      resolveInventoryEnv(inv, { CACHE_ADMIN_URL: 'postgres://x', QUEUE_ADMIN_URL: 'redis://a:b@h' }),
    ).toThrow(/CACHE_ADMIN_URL|adminUrlEnv/);
    expect(() =>
      resolveInventoryEnv(inv, { CACHE_ADMIN_URL: 'rediss://a:b@h:6380', QUEUE_ADMIN_URL: 'redis://a:b@h' }),
    ).not.toThrow();
  });
});

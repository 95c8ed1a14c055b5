/** The `mariadb` kind's inventory schema and matching, and how a leaked mysql:// URL becomes a Detection. */
import { describe, expect, it } from 'vitest';
import type { HttpProblem } from '../../contracts/errors';
import { normaliseGeneric, validateGeneric } from '../../api/sources/generic';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { InventoryError, matchOwner, parseInventory, resolveInventoryEnv } from '../../lib/inventory';
import { kindOf } from '../../lib/systems';

const keys = createServerKeys(newServerKey());
const now = new Date('2026-11-23T10:00:00Z');
const norm = (body: unknown) => normaliseGeneric(validateGeneric(body), keys, now);
const problemOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return `${(err as HttpProblem).status} ${(err as HttpProblem).message}`;
  }
  return 'no problem';
};
const invalid = (doc: unknown) => {
  try {
    parseInventory(doc);
  } catch (err) {
    if (err instanceof InventoryError) return err.message;
    throw err;
  }
  return 'valid';
};

describe('a leaked mysql:// or mariadb:// URL', () => {
  it('becomes user, host, port and database; the password alone is the sealed evidence', () => {
    const n = norm({
      credentialType: 'mysql_password',
      secret: 'mysql://app_orders:p%40ss%2Fw0rd@db.internal:3307/orders',
    });
    expect(n.leakedValue).toBe('p@ss/w0rd');
    expect(n.detection.credentialRef).toEqual({
      user: 'app_orders',
      host: 'db.internal',
      port: '3307',
      database: 'orders',
    });
    expect(n.detection.fingerprint).toBe(keys.fingerprint('p@ss/w0rd'));
    expect(JSON.stringify(n.detection)).not.toMatch(/p%40ss|p@ss/);
    expect(
      norm({ credentialType: 'mysql_password', secret: 'mariadb://app_x:pw@[::1]' }).detection.credentialRef,
    ).toEqual({ user: 'app_x', host: '::1' });
  });

  it('refuses a URL without a password, naming another user than credentialRef, or no user at all', () => {
    expect(
      problemOf(() => norm({ credentialType: 'mysql_password', secret: 'mysql://app@db.internal' })),
    ).toMatch(/^422 .*no password/);
    expect(
      problemOf(() =>
        norm({ credentialType: 'mysql_password', secret: 'mysql://a:pw@h', credentialRef: { user: 'b' } }),
      ),
    ).toMatch(/^422 .*credentialRef\.user/);
    expect(problemOf(() => norm({ credentialType: 'mysql_password', secret: 'just-a-password' }))).toMatch(
      /^422 .*credentialRef\.user: required for mysql_password/,
    );
    expect(
      problemOf(() =>
        norm({ credentialType: 'mysql_password', secret: 'just-a-password', credentialRef: { user: 'app' } }),
      ),
    ).toBe('no problem');
  });
});

describe('mariadb systems in the inventory', () => {
  const inv = parseInventory({
    systems: [
      {
        name: 'orders',
        kind: 'mariadb',
        adminUrlEnv: 'ORDERS_ADMIN_URL',
        users: ['app_*', 'report@10.0.%'],
        hosts: ['db.internal'],
      },
      { name: 'legacy', kind: 'mariadb', adminUrlEnv: 'LEGACY_ADMIN_URL', users: ['old_?'] },
    ],
  });

  it('defaults to emergency, matches users by glob (the @host part is the account host, not the server) and hosts when both sides name one', () => {
    expect(inv.systems[0]).toMatchObject({ mode: 'emergency', quarantine: false, sink: { kind: 'none' } });
    const owner = (credentialRef: Record<string, string>) => {
      const m = matchOwner(inv, { credentialType: 'mysql_password', credentialRef });
      return m.kind === 'owned' ? m.system.name : m.reason;
    };
    expect(owner({ user: 'app_orders', host: 'DB.internal' })).toBe('orders');
    expect(owner({ user: 'report' })).toBe('orders');
    expect(owner({ user: 'app_orders', host: 'elsewhere' })).toBe(
      'no mariadb system owns MariaDB/MySQL user "app_orders" on elsewhere',
    );
    expect(owner({ user: 'old_1', host: 'anywhere' })).toBe('legacy');
    expect(owner({})).toBe('no mariadb system owns no MariaDB/MySQL user');
    expect(
      matchOwner(inv, { credentialType: 'postgres_password', credentialRef: { role: 'app_orders' } }).kind,
    ).toBe('unowned');
    expect(kindOf(inv.systems[0]!).supports).toEqual({
      graceful: false,
      quarantine: false,
      replacement: true,
    });
  });

  it('refuses graceful mode and quarantine, naming the field, and checks the admin URL env var', () => {
    const base = { name: 'm', kind: 'mariadb', adminUrlEnv: 'X', users: ['a'] };
    expect(
      invalid({
        systems: [{ ...base, mode: 'graceful', sink: { kind: 'aws_secrets_manager', secretId: 's' } }],
      }),
    ).toContain('systems[0].mode: mariadb systems cannot keep two valid values; use emergency');
    expect(invalid({ systems: [{ ...base, quarantine: true }] })).toContain(
      'systems[0].quarantine: mariadb systems have no reversible quarantine',
    );
    expect(invalid({ systems: [{ ...base, users: ['a b'] }] })).toContain('systems[0].users[0]');
    expect(invalid({ systems: [{ ...base, roles: ['a'] }] })).toContain('systems[0]');
    expect(() =>
      resolveInventoryEnv(inv, { ORDERS_ADMIN_URL: 'postgres://x', LEGACY_ADMIN_URL: 'mysql://a:b@h' }),
    ).toThrow('systems[0].adminUrlEnv: ORDERS_ADMIN_URL must be a mysql:// or mariadb:// URL');
    expect(() => resolveInventoryEnv(inv, { LEGACY_ADMIN_URL: 'mysql://a:b@h' })).toThrow(
      'systems[0].adminUrlEnv: environment variable ORDERS_ADMIN_URL is not set',
    );
    expect(() =>
      resolveInventoryEnv(inv, {
        ORDERS_ADMIN_URL: 'mariadb://a:b@h:3306/x',
        LEGACY_ADMIN_URL: 'mysql://a:b@h',
      }),
    ).not.toThrow();
  });
});

import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  InventoryError,
  loadInventoryFile,
  matchOwner,
  parseInventory,
  resolveInventoryEnv,
} from '../../lib/inventory';

const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-inv-'));
const file = (name: string, text: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('inventory', () => {
  it('loads the shipped example', () => {
    const inv = loadInventoryFile('config/inventory.example.yaml');
    expect(inv.systems.length).toBeGreaterThan(0);
  });

  it('loads YAML and JSON', () => {
    const yaml = file(
      'a.yaml',
      'systems:\n  - name: app-db\n    kind: postgres\n    adminUrlEnv: APP_DB_ADMIN_URL\n    roles: [app_user, "svc_*"]\n',
    );
    expect(loadInventoryFile(yaml).systems[0]).toMatchObject({
      name: 'app-db',
      roles: ['app_user', 'svc_*'],
    });
    const json = file(
      'a.json',
      JSON.stringify({ systems: [{ name: 'db', kind: 'postgres', adminUrlEnv: 'DB_URL', roles: ['x'] }] }),
    );
    expect(loadInventoryFile(json).systems).toHaveLength(1);
  });

  it.each([
    ['systems:\n  - name: app-db\n    kind: postgres\n    roles: [a]\n', 'systems[0].adminUrlEnv'],
    ['systems:\n  - name: app-db\n    kind: oracle\n    adminUrlEnv: X\n    roles: [a]\n', 'systems[0].kind'],
    [
      'systems:\n  - name: App DB\n    kind: postgres\n    adminUrlEnv: X\n    roles: [a]\n',
      'systems[0].name',
    ],
    [
      'systems:\n  - name: a\n    kind: postgres\n    adminUrlEnv: lower\n    roles: [a]\n',
      'systems[0].adminUrlEnv',
    ],
    ['systems:\n  - name: a\n    kind: postgres\n    adminUrlEnv: X\n    roles: []\n', 'systems[0].roles'],
    [
      'systems:\n  - name: a\n    kind: postgres\n    adminUrlEnv: X\n    roles: [a]\n    adminUrl: postgres://inline\n',
      'systems[0]',
    ],
    [
      'systems:\n  - {name: a, kind: postgres, adminUrlEnv: X, roles: [a]}\n  - {name: a, kind: postgres, adminUrlEnv: Y, roles: [b]}\n',
      'systems[1].name',
    ],
  ])('names the bad field (%#)', (text, field) => {
    const p = file(`bad-${Math.random()}.yaml`, text);
    expect(() => loadInventoryFile(p)).toThrow(InventoryError);
    expect(() => loadInventoryFile(p)).toThrow(p);
    expect(() => loadInventoryFile(p)).toThrow(`${field}:`);
  });

  it('reports unparseable YAML with the file name', () => {
    const p = file('broken.yaml', 'systems: [\n');
    expect(() => loadInventoryFile(p)).toThrow(/broken\.yaml is not valid YAML/);
  });

  it('requires the env vars it names at startup', () => {
    const inv = parseInventory({
      systems: [{ name: 'a', kind: 'postgres', adminUrlEnv: 'A_URL', roles: ['x'] }],
    });
    expect(() => resolveInventoryEnv(inv, {})).toThrow(
      /systems\[0\]\.adminUrlEnv: environment variable A_URL is not set/,
    );
    expect(() => resolveInventoryEnv(inv, { A_URL: 'http://x' })).toThrow(/A_URL must be a postgres:\/\//);
    expect(resolveInventoryEnv(inv, { A_URL: 'postgres://u:p@h/db' }).A_URL).toBe('postgres://u:p@h/db');
  });

  it('matches owners by role pattern and host, and refuses to guess', () => {
    const inv = parseInventory({
      systems: [
        {
          name: 'payments',
          kind: 'postgres',
          adminUrlEnv: 'A',
          roles: ['pay_*'],
          hosts: ['pay-db.internal'],
        },
        { name: 'core', kind: 'postgres', adminUrlEnv: 'B', roles: ['app_user', 'shared_?'] },
        { name: 'core-replica', kind: 'postgres', adminUrlEnv: 'C', roles: ['shared_?'] },
      ],
    });
    const m = (credentialRef: Record<string, string>, credentialType = 'postgres_password' as const) =>
      matchOwner(inv, { credentialType, credentialRef });
    expect(m({ role: 'pay_api', host: 'pay-db.internal' })).toMatchObject({
      kind: 'owned',
      system: { name: 'payments' },
    });
    expect(m({ role: 'pay_api', host: 'other' })).toMatchObject({ kind: 'unowned' });
    expect(m({ role: 'pay_api' })).toMatchObject({ kind: 'owned', system: { name: 'payments' } });
    expect(m({ role: 'app_user', host: 'anything' })).toMatchObject({
      kind: 'owned',
      system: { name: 'core' },
    });
    expect(m({ role: 'app_users' })).toMatchObject({ kind: 'unowned' });
    expect(m({ role: 'shared_1' })).toMatchObject({
      kind: 'unowned',
      reason: expect.stringMatching(/matches 2 systems/),
    });
    expect(
      matchOwner(inv, { credentialType: 'aws_access_key', credentialRef: { accessKeyId: 'AKIA' } }),
    ).toMatchObject({ kind: 'unowned' });
  });
});

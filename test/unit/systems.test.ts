/**
 * The shared parts of every system kind: modes the inventory refuses, the inventory:check command,
 * and the per-system pacer that keeps a burst from hammering one owner.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createPacer } from '../../activities/providers/pacing';
import { parseInventory } from '../../lib/inventory';
import { durationMs } from '../../lib/systems/common';

const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-sys-'));
const pg = { name: 'db', kind: 'postgres', adminUrlEnv: 'DB_URL', roles: ['app_*'] };

describe('system kinds', () => {
  it('defaults every common field', () => {
    const s = parseInventory({ systems: [pg] }).systems[0]!;
    expect(s).toMatchObject({
      mode: 'emergency',
      overlap: '10m',
      quarantine: false,
      sink: { kind: 'none' },
      sessions: [],
      limits: { concurrency: 4, perMinute: 120 },
      breaker: { threshold: 25, window: '5m' },
    });
  });

  it.each([
    [{ ...pg, mode: 'graceful' }, 'systems[0].sink: graceful mode needs a sink'],
    [{ ...pg, quarantine: true }, 'systems[0].quarantine: postgres systems have no reversible quarantine'],
    [{ ...pg, overlap: 'ten minutes' }, 'systems[0].overlap: a duration'],
    [
      { ...pg, sink: { kind: 'aws_secrets_manager', secretId: 'x', aws: { region: 'mars' } } },
      'systems[0].sink.aws.region',
    ],
    [
      { ...pg, sink: { kind: 'aws_secrets_manager', secretId: 'x', aws: { accessKeyIdEnv: 'K' } } },
      'systems[0].sink.aws.secretAccessKeyEnv',
    ],
    [
      { ...pg, sessions: [{ kind: 'okta', baseUrl: 'ftp://x', tokenEnv: 'T', users: ['u'] }] },
      'systems[0].sessions[0].baseUrl',
    ],
    [{ ...pg, limits: { concurrency: 0 } }, 'systems[0].limits.concurrency'],
    [{ ...pg, breaker: { threshold: 0 } }, 'systems[0].breaker.threshold'],
  ])('refuses what it cannot honour, naming the field (%#)', (system, message) => {
    expect(() => parseInventory({ systems: [system] })).toThrow(message);
  });

  it('accepts graceful mode with a sink', () => {
    const s = parseInventory({
      systems: [
        {
          ...pg,
          mode: 'graceful',
          overlap: '30s',
          sink: { kind: 'aws_secrets_manager', secretId: 'prod/app-db' },
        },
      ],
    }).systems[0]!;
    expect(s).toMatchObject({
      mode: 'graceful',
      overlap: '30s',
      sink: { kind: 'aws_secrets_manager', aws: { region: 'us-east-1' } },
    });
  });

  it('reads durations', () => {
    expect([
      durationMs('500ms'),
      durationMs('30s'),
      durationMs('10m'),
      durationMs('2h'),
      durationMs('1d'),
    ]).toEqual([500, 30_000, 600_000, 7_200_000, 86_400_000]);
    expect(() => durationMs('10 minutes')).toThrow();
  });
});

describe('npm run inventory:check', () => {
  const run = (...args: string[]) =>
    spawnSync('npx', ['tsx', 'scripts/inventory-check.ts', ...args], {
      encoding: 'utf8',
      env: { ...process.env, DB_URL: '' },
    });

  it('passes the shipped example and the reference of every kind', () => {
    const r = run('config/inventory.example.yaml');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('valid');
    const all = run('config/inventory.reference.yaml');
    expect(all.status).toBe(0);
    for (const kind of ['postgres', 'aws_iam', 'redis', 'github', 'slack', 'http', 'mariadb'])
      expect(all.stdout).toContain(`(${kind},`);
  });

  it('reports every bad field by path and exits 1', () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(
      file,
      'systems:\n  - name: b\n    kind: postgres\n    adminUrlEnv: lower\n    roles: []\n    sink: {kind: aws_secrets_manager}\n',
    );
    const r = run(file);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('systems[0].sink.secretId');
    expect(r.stderr).toContain('systems[0].adminUrlEnv');
    expect(r.stderr).toContain('systems[0].roles');
  });

  it('with --env, names the env var that is missing', () => {
    const file = path.join(dir, 'ok.yaml');
    writeFileSync(file, 'systems:\n  - {name: db, kind: postgres, adminUrlEnv: DB_URL, roles: [a]}\n');
    const r = run(file, '--env');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('systems[0].adminUrlEnv: environment variable DB_URL is not set');
  });
});

describe('pacer', () => {
  it('never runs more than the concurrency at once', async () => {
    const pacer = createPacer({ concurrency: 2, perMinute: 10_000 });
    let active = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        pacer.run(async () => {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 5));
          active--;
        }),
      ),
    );
    expect(peak).toBe(2);
  });

  it('holds calls past the per-minute budget until tokens refill', async () => {
    let t = 0;
    const pacer = createPacer({ concurrency: 10, perMinute: 3 }, () => t);
    const done: number[] = [];
    const calls = Array.from({ length: 4 }, (_, i) => pacer.run(async () => done.push(i)));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toEqual([0, 1, 2]);
    expect(pacer.stats().queued).toBe(1);
    t = 40_000; // one token every 20 s: two tokens later, the queued call goes first, then the new one
    await Promise.all([...calls, pacer.run(async () => done.push(4))]);
    expect(done).toEqual([0, 1, 2, 3, 4]);
  });
});

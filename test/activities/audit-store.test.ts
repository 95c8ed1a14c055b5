/**
 * The kill switch's own store on both engines it runs on (real PostgreSQL, embedded PGlite):
 * migrations, the append-only unique-per-run audit table, and the sealed evidence store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { insertAuditRow } from '../../activities/audit';
import { createPgliteDb, createPostgresDb, migrate, type Db } from '../../lib/db';
import { createEvidenceStore } from '../../store/evidence';
import { sweepOnce } from '../../store/sweeper';
import { createServerKeys, newServerKey } from '../../lib/keys';
import type { RunSummary } from '../../contracts/run';
import { rand } from '../helpers/harness';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ks-pglite-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function summary(workflowId: string, runId: string): RunSummary {
  return {
    workflowId,
    runId,
    detection: {
      id: `generic:${rand()}`,
      source: 'generic',
      credentialType: 'postgres_password',
      credentialRef: { role: 'app_user', host: 'db.internal' },
      fingerprint: 'hmac-sha256:00',
      location: { repository: 'acme/api', file: '.env', line: 3 },
      severity: 'high',
      detectedAt: new Date().toISOString(),
      hasEvidence: false,
    },
    owner: {
      system: 'app-db',
      kind: 'postgres',
      mode: 'emergency',
      overlap: '10m',
      quarantine: false,
      canQuarantine: false,
      sink: 'none',
      replacement: false,
      userSessionTargets: 0,
      breaker: { threshold: 25, window: '5m', holdTimeout: '24h' },
    },
    outcome: 'contained',
    timeline: { receivedAt: new Date().toISOString(), rotatedAt: new Date().toISOString() },
    rotation: { mode: 'emergency', newValueDelivered: false, note: 'locked' },
    sessions: { terminated: 2 },
    verification: { method: 'login_rejected' },
  };
}

const engines: Array<[string, () => Promise<Db>]> = [
  ['PostgreSQL', async () => createPostgresDb(inject('auditDatabaseUrl'))],
  ['PGlite (embedded default)', async () => createPgliteDb(path.join(tmp, rand()))],
];

describe('migrations', () => {
  it('run from several processes at once: one applies, the others wait and find nothing to do', async () => {
    const base = inject('auditDatabaseUrl');
    const admin = createPostgresDb(base, { max: 1 });
    const name = `killswitch_migrate_${rand()}`;
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(base);
    url.pathname = `/${name}`;
    const dbs = Array.from({ length: 4 }, () => createPostgresDb(url.toString()));
    try {
      const applied = await Promise.all(dbs.map((db) => migrate(db)));
      expect(applied.filter((a) => a.length > 0)).toHaveLength(1);
      const tables = await dbs[0]!.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'killswitch_%' ORDER BY table_name",
      );
      expect(tables.rows.map((r) => r.table_name)).toEqual([
        'killswitch_admin_audit',
        'killswitch_audit',
        'killswitch_breaker_hits',
        'killswitch_breakers',
        'killswitch_deliveries',
        'killswitch_dry_run_state',
        'killswitch_event_deliveries',
        'killswitch_event_queue',
        'killswitch_events',
        'killswitch_evidence',
        'killswitch_jira_issues',
        'killswitch_migrations',
        'killswitch_notifications',
        'killswitch_rules',
        'killswitch_sightings',
        'killswitch_slack_digest_items',
        'killswitch_slack_digests',
        'killswitch_source_state',
        'killswitch_subscriptions',
      ]);
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.close();
    }
  });
});

describe.each(engines)('audit store on %s', (_name, open) => {
  it('migrates idempotently and keeps one append-only row per run', async () => {
    const db = await open();
    try {
      await migrate(db);
      expect(await migrate(db)).toEqual([]);
      const wf = `killswitch-test-${rand()}`;
      expect(await insertAuditRow(db, summary(wf, 'run-1'))).toEqual({ inserted: true });
      expect(await insertAuditRow(db, summary(wf, 'run-1'))).toEqual({ inserted: false });
      expect(await insertAuditRow(db, summary(wf, 'run-2'))).toEqual({ inserted: true });
      const rows = (
        await db.query<Record<string, any>>(
          'SELECT * FROM killswitch_audit WHERE workflow_id = $1 ORDER BY run_id',
          [wf],
        )
      ).rows;
      expect(rows).toHaveLength(2);
      expect(rows[0]).toMatchObject({
        outcome: 'contained',
        owning_system: 'app-db',
        sessions_terminated: 2,
        credential_ref: { role: 'app_user', host: 'db.internal' },
      });
      await expect(
        db.query("UPDATE killswitch_audit SET outcome = 'escalated' WHERE workflow_id = $1", [wf]),
      ).rejects.toThrow(/append-only/);
      await expect(db.query('DELETE FROM killswitch_audit WHERE workflow_id = $1', [wf])).rejects.toThrow(
        /append-only/,
      );
    } finally {
      await db.close();
    }
  });

  it('seals evidence, binds it to its workflow, and purges it', async () => {
    const db = await open();
    try {
      await migrate(db);
      const keys = createServerKeys(newServerKey());
      const store = createEvidenceStore(db, keys, 24);
      const wf = `killswitch-test-${rand()}`;
      const value = `leaked-${rand()}`;
      expect(await store.put(wf, keys.fingerprint(value), value)).toBe(true);
      expect(await store.put(wf, keys.fingerprint(value), value)).toBe(false);
      const raw = (
        await db.query<{ sealed: Buffer }>('SELECT sealed FROM killswitch_evidence WHERE workflow_id = $1', [
          wf,
        ])
      ).rows[0]!;
      expect(Buffer.from(raw.sealed).toString('latin1')).not.toContain(value);
      expect(await store.take(wf)).toBe(value);
      // Another server key cannot open it.
      await expect(createEvidenceStore(db, createServerKeys(newServerKey()), 24).take(wf)).rejects.toThrow();
      await store.purge(wf);
      expect(await store.take(wf)).toBeUndefined();

      const old = `killswitch-test-${rand()}`;
      await store.put(old, keys.fingerprint('x'), 'x');
      await db.query(
        "UPDATE killswitch_evidence SET expires_at = now() - interval '1 minute' WHERE workflow_id = $1",
        [old],
      );
      expect(await store.take(old)).toBeUndefined();
      expect(await store.purgeExpired()).toBeGreaterThanOrEqual(1);

      // The sweeper also forgets deliveries older than the replay window, and only those.
      await db.query(
        `INSERT INTO killswitch_deliveries (source, delivery_id, received_at) VALUES ('t', $1, now() - interval '31 days'), ('t', $2, now())`,
        [`old-${wf}`, `new-${wf}`],
      );
      const swept = await sweepOnce(db, store);
      expect(swept.deliveries).toBeGreaterThanOrEqual(1);
      const left = await db.query<{ delivery_id: string }>(
        "SELECT delivery_id FROM killswitch_deliveries WHERE source = 't' AND delivery_id LIKE $1",
        [`%-${wf}`],
      );
      expect(left.rows.map((r) => r.delivery_id)).toEqual([`new-${wf}`]);

      // A delivery claimed and never answered for over ten minutes (its ingress died, its sender has
      // not re-sent it) is reported for a human, by source and id; an answered or recent one is not.
      await db.query(
        `INSERT INTO killswitch_deliveries (source, delivery_id, received_at, status) VALUES
           ('t', $1, now() - interval '11 minutes', NULL), ('t', $2, now() - interval '11 minutes', 202), ('t', $3, now() - interval '1 minute', NULL)`,
        [`abandoned-${wf}`, `answered-${wf}`, `recent-${wf}`],
      );
      const reported = (await sweepOnce(db, store)).abandoned.filter((x) => x.deliveryId.endsWith(`-${wf}`));
      expect(reported.map((x) => [x.source, x.deliveryId])).toEqual([['t', `abandoned-${wf}`]]);
    } finally {
      await db.close();
    }
  });
});

/**
 * The delivery ledger's claim on both engines the kill switch runs on (real PostgreSQL, embedded
 * PGlite): one statement claims the delivery id and, only when the claim is new, writes what its
 * runs need (sealed values, sighting rows) in the same transaction; a claim seen again writes
 * nothing. Concurrent deliveries naming the same credentials in another order never deadlock.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDeliveryLedger } from '../../api/deliveries';
import { createPgliteDb, createPostgresDb, migrate, type Db } from '../../lib/db';
import type { DeliveryWrites } from '../../lib/dispatch';
import { createEvidenceStore } from '../../store/evidence';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { rand } from '../helpers/harness';

const keys = createServerKeys(newServerKey());
const tmp = mkdtempSync(path.join(os.tmpdir(), 'ks-ledger-'));
const engines: Array<{ name: string; db: Db }> = [];

beforeAll(async () => {
  const pgDb = createPostgresDb(inject('auditDatabaseUrl'), { max: 12 });
  await migrate(pgDb);
  const lite = await createPgliteDb(path.join(tmp, 'pglite'));
  await migrate(lite);
  engines.push({ name: 'postgres', db: pgDb }, { name: 'pglite', db: lite });
});
afterAll(async () => {
  for (const e of engines) await e.db.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Writes of a delivery naming these credentials (one sighting each, a sealed value for each). */
function writesFor(db: Db, workflowIds: string[], detection = 'det'): DeliveryWrites {
  const evidence = createEvidenceStore(db, keys, 1);
  return {
    evidence: workflowIds.map((w) => evidence.seal(w, keys.fingerprint(`value-${w}`), `value-${w}`)),
    sightings: workflowIds.map((w) => ({
      workflowId: w,
      detectionId: `${detection}-${w}`,
      source: 'ci',
      scanner: null,
      location: { file: 'a.env' },
      validity: null,
      receivedAt: new Date().toISOString(),
    })),
  };
}

async function txOf(db: Db, table: string, where: string, arg: string): Promise<string[]> {
  return (
    await db.query<{ tx: string }>(`SELECT xmin::text AS tx FROM ${table} WHERE ${where} ORDER BY 1`, [arg])
  ).rows.map((r) => r.tx);
}

describe.each(['postgres', 'pglite'])('the claim (%s)', (engine) => {
  const db = () => engines.find((e) => e.name === engine)!.db;

  it('a new claim commits its sealed values and sightings with it, in one transaction; a value already held stays its run’s', async () => {
    const ledger = createDeliveryLedger(db());
    const [held, fresh] = [`wf-held-${rand()}`, `wf-fresh-${rand()}`];
    await createEvidenceStore(db(), keys, 1).put(held, keys.fingerprint('other'), 'other');
    const id = `d-${rand()}`;
    // The same credential twice in one delivery (two findings of one key) is written once.
    const writes = writesFor(db(), [fresh, held, fresh]);
    const claim = await ledger.claim('ci', id, writes);
    expect(claim).toEqual({ kind: 'new', sealed: [fresh] });

    const [tx] = await txOf(db(), 'killswitch_deliveries', 'delivery_id = $1', id);
    expect(await txOf(db(), 'killswitch_evidence', 'workflow_id = $1', fresh)).toEqual([tx]);
    expect(await txOf(db(), 'killswitch_sightings', 'workflow_id = $1', fresh)).toEqual([tx]);
    expect(await txOf(db(), 'killswitch_sightings', 'workflow_id = $1', held)).toEqual([tx]);
    expect(await txOf(db(), 'killswitch_evidence', 'workflow_id = $1', held)).not.toEqual([tx]);
    // The sealed value opens with the evidence store, bound to its workflow id.
    expect(await createEvidenceStore(db(), keys, 1).take(fresh)).toBe(`value-${fresh}`);
  });

  it('a claim seen again writes nothing: unfinished (with its first receipt), then answered', async () => {
    const ledger = createDeliveryLedger(db());
    const id = `d-${rand()}`;
    const [first, later] = [`wf-first-${rand()}`, `wf-later-${rand()}`];
    expect(await ledger.claim('ci', id, writesFor(db(), [first]))).toMatchObject({ kind: 'new' });
    const again = await ledger.claim('ci', id, writesFor(db(), [later]));
    expect(again).toEqual({ kind: 'unfinished', receivedAt: expect.any(Date) });
    expect(await txOf(db(), 'killswitch_evidence', 'workflow_id = $1', later)).toEqual([]);
    expect(await txOf(db(), 'killswitch_sightings', 'workflow_id = $1', later)).toEqual([]);
    await ledger.complete('ci', id, 202, { status: 'accepted', workflowId: first });
    expect(await ledger.claim('ci', id, writesFor(db(), [later]))).toEqual({
      kind: 'answered',
      status: 202,
      response: { status: 'accepted', workflowId: first },
    });
    expect(await txOf(db(), 'killswitch_evidence', 'workflow_id = $1', later)).toEqual([]);
  });

  it('a released claim is claimed anew, with its writes', async () => {
    const ledger = createDeliveryLedger(db());
    const id = `d-${rand()}`;
    const wf = `wf-${rand()}`;
    await ledger.claim('ci', id);
    await ledger.release('ci', id);
    expect(await ledger.claim('ci', id, writesFor(db(), [wf]))).toEqual({ kind: 'new', sealed: [wf] });
  });
});

describe('concurrent claims (postgres)', () => {
  it('deliveries naming the same credentials in different orders wait on each other, never deadlock', async () => {
    const db = engines.find((e) => e.name === 'postgres')!.db;
    const ledger = createDeliveryLedger(db);
    const failures: unknown[] = [];
    for (let i = 0; i < 150; i++) {
      const ids = Array.from({ length: 6 }, (_, k) => `wf-order-${rand()}-${i}-${k}`);
      const orders = [ids, [...ids].reverse(), [ids[3]!, ids[0]!, ids[5]!, ids[1]!]];
      const settled = await Promise.allSettled(
        orders.map((o, k) => ledger.claim('ci', `d-order-${rand()}-${i}-${k}`, writesFor(db, o))),
      );
      for (const s of settled)
        if (s.status === 'rejected') failures.push((s.reason as { code?: string }).code ?? s.reason);
    }
    expect(failures).toEqual([]);
  });
});

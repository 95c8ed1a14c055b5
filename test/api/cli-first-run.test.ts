/**
 * The CLI and the API on a first run, on the ingress as server.ts wires it (createIngressApp) against
 * the run's PostgreSQL: an API that is off answers a problem saying so (never "no such route"), and
 * the CLI prints it; the CLI reads the local token npm start keeps in the data folder when
 * KILLSWITCH_API_TOKEN is unset; --version and the environment in --help; `status --wait` stops at
 * a step where the run waits for a person and shows the elapsed time.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createIngressApp } from '../../api/server';
import { run, type Io } from '../../cli/killswitch';
import { loadConfig } from '../../lib/config';
import { createPostgresDb, migrate, type Db } from '../../lib/db';
import { parseInventory } from '../../lib/inventory';
import { createServerKeys, newServerKey, newWebhookSecret } from '../../lib/keys';
import { createEvidenceStore } from '../../store/evidence';
import { testLogger } from '../helpers/harness';

const VIEWER = `viewer-${randomBytes(16).toString('hex')}`;
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ks-cli-'));
const servers: http.Server[] = [];
let db: Db;
let connection: Connection;
let on: string;
let off: string;

async function serve(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  servers.push(s);
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

async function ingress(extra: Record<string, string>): Promise<string> {
  const env: Record<string, string> = {
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    DATABASE_URL: inject('auditDatabaseUrl'),
    KILLSWITCH_SERVER_KEY: newServerKey(),
    GENERIC_WEBHOOK_SECRETS: newWebhookSecret(),
    ...extra,
  };
  const config = loadConfig(env);
  const keys = createServerKeys(config.serverKey!);
  const app = createIngressApp(config, {
    logger: testLogger,
    client: new Client({ connection, namespace: config.temporal.namespace }),
    keys,
    db,
    evidence: createEvidenceStore(db, keys, 24),
    genericSecrets: config.webhook.genericSecrets!,
    inventory: parseInventory({}),
    env,
  });
  return serve(app);
}

beforeAll(async () => {
  db = createPostgresDb(inject('auditDatabaseUrl'));
  await migrate(db);
  connection = Connection.lazy({ address: inject('temporalAddress') });
  off = await ingress({});
  on = await ingress({ API_TOKENS: `viewer:${VIEWER}` });
});
afterAll(async () => {
  for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  await connection?.close();
  await db?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function cli(argv: string[], env: Record<string, string | undefined>) {
  let out = '';
  let err = '';
  const io: Io = {
    out: (x) => (out += x),
    err: (x) => (err += x),
    env,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
  return { code: await run(argv, io), out, err };
}

describe('an API that is off', () => {
  it('answers a problem saying how to turn it on, and the CLI prints it', async () => {
    const res = await fetch(`${off}/api/detections`, { headers: { authorization: `Bearer ${VIEWER}` } });
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({
      type: 'urn:secret-kill-switch:problem:api-off',
      detail: 'the read API is off: set API_TOKENS (viewer:<token> or admin:<token>)',
    });
    const admin = await fetch(`${off}/admin/sources`);
    expect(admin.status).toBe(503);
    expect(((await admin.json()) as { detail: string }).detail).toMatch(
      /^the admin API is off: set API_TOKENS/,
    );
    // Other unknown routes are still plain 404s.
    expect((await fetch(`${off}/nope`)).status).toBe(404);

    const recent = await cli(['recent', '--url', off], { KILLSWITCH_API_TOKEN: VIEWER });
    expect(recent.code).toBe(1);
    expect(recent.err).toContain('503: the read API is off: set API_TOKENS');
    // Not "no detection with id …": the run may well exist.
    const status = await cli(['status', 'killswitch-generic-x', '--url', off], {
      KILLSWITCH_API_TOKEN: VIEWER,
    });
    expect(status.code).toBe(1);
    expect(status.err).toContain('the read API is off');
  });
});

describe('the CLI on a first run', () => {
  it("reads npm start's local token from the data folder when KILLSWITCH_API_TOKEN is unset", async () => {
    const env = { KILLSWITCH_DATA_DIR: dataDir, KILLSWITCH_URL: on };
    const missing = await cli(['recent'], env);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain(`there is no local token in ${path.join(dataDir, 'api-token')}`);

    writeFileSync(path.join(dataDir, 'api-token'), `${VIEWER}\n`, { mode: 0o600 });
    const ok = await cli(['recent', '--limit', '1'], env);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/^(RECORDED\s+OUTCOME|no detections)/);
    // The variable wins over the file; set but empty means no token.
    const wrong = await cli(['recent'], { ...env, KILLSWITCH_API_TOKEN: `x${VIEWER}` });
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('401');
    expect((await cli(['recent'], { ...env, KILLSWITCH_API_TOKEN: '' })).code).toBe(2);
    // PORT sets the default ingress when KILLSWITCH_URL is unset.
    const port = new URL(on).port;
    const byPort = await cli(['recent', '--limit', '1'], { KILLSWITCH_DATA_DIR: dataDir, PORT: port });
    expect(byPort.code, byPort.err).toBe(0);
  });

  it('--version prints the package version; --help names the environment variables', async () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const v = await cli(['--version'], {});
    expect(v.code).toBe(0);
    expect(v.out.trim()).toBe(pkg.version);
    const help = await cli(['--help'], {});
    expect(help.code).toBe(0);
    for (const name of [
      'KILLSWITCH_URL',
      'KILLSWITCH_API_TOKEN',
      'KILLSWITCH_DATA_DIR',
      'GENERIC_WEBHOOK_SECRETS',
      'PORT',
    ])
      expect(help.out).toContain(name);
  });

  it('status --wait follows the steps and stops where the run waits for a person', async () => {
    // The read API's answers over time (a fake at the network boundary): revoking, then approval.
    let calls = 0;
    const api = await serve((req, res) => {
      calls++;
      const step = calls < 3 ? 'revoking' : 'awaiting_approval';
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          workflowId: 'killswitch-generic-w',
          live: { status: 'RUNNING', step },
          audit: [],
          sightings: [{}],
        }),
      );
    });
    const r = await cli(['status', 'killswitch-generic-w', '--wait', '--interval', '100', '--timeout', '5'], {
      KILLSWITCH_API_TOKEN: VIEWER,
      KILLSWITCH_URL: api,
    });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^\d\d:\d\d:\d\d {2}\+\d+\.\ds {2}revoking$/m);
    expect(r.out).toMatch(/^\d\d:\d\d:\d\d {2}\+\d+\.\ds {2}awaiting_approval$/m);
    expect(r.out).toMatch(/^run\s+RUNNING \(step awaiting_approval\)$/m);
    expect(r.out).toMatch(
      /^waiting for a person \(step awaiting_approval\) after \d+\.\ds: approve or deny/m,
    );
    expect(calls).toBe(3);
  });
});

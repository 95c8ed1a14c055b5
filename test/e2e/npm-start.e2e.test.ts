/**
 * The quick start, as a newcomer runs it: `npm start` (the build, then the compiled code) with
 * nothing configured but ports and a data folder starts a Temporal dev server (UI included), the
 * worker (on the prebuilt workflow bundle) and the ingress on an embedded PGlite audit store; the
 * bundled script sends a signed detection; Ctrl-C stops everything; a second start finds the first
 * run in the persisted dev server.
 *
 * The first run on embedded defaults (no inventory at all): npm start runs the demo service and
 * prints its banner; `npm run send-test-detection` leaks a fresh demo key and the run ends
 * contained (revoked, sessions expired, verified dead, audited, the Slack message logged); the CLI
 * reads the local API token npm start generated.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../tools/temporal-dev';
import { codecFromConfig, collectPayloads, killSwitchDataConverter } from '../../lib/codec';
import { createServerKeys } from '../../lib/keys';
import { ownedSystem } from '../helpers/harness';

const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ks-start-'));
const demoDataDir = mkdtempSync(path.join(os.tmpdir(), 'ks-start-demo-'));
const children: ChildProcess[] = [];
const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> })
  .scripts;
// What `npm start` runs: the build (prestart: compiled JavaScript and the workflow bundle in
// dist/), then one plain node process on the compiled code. No loader and no wrapper: the tsx CLI's
// signal relay would SIGKILL a child that does not confirm a SIGTERM within 30 ms, so a busy one
// never drained.
beforeAll(() => {
  expect(scripts.prestart).toBe('npm run -s build');
  const built = spawnSync('npm', ['run', '-s', 'build'], { encoding: 'utf8' });
  expect(built.status, built.stderr).toBe(0);
  expect(built.stdout).toMatch(/^build: \d+ files compiled to dist\/ .*workflow bundle/);
}, 120_000);
afterAll(() => {
  // The whole process group: a failed test must not leave the dev server behind.
  for (const c of children) if (c.exitCode === null && c.pid) process.kill(-c.pid, 'SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(demoDataDir, { recursive: true, force: true });
});

async function start(env: Record<string, string>): Promise<{ child: ChildProcess; output: () => string }> {
  let out = '';
  const [node, ...args] = scripts.start!.split(/\s+/);
  expect([node, ...args]).toEqual(['node', 'dist/scripts/start.js']);
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(child);
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 90_000;
  // The log line, then the banner (stderr) right after it.
  while (!out.includes('kill switch ready') || !out.includes('Secret Kill Switch is ready')) {
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${out}`);
    if (Date.now() > deadline) throw new Error(`npm start not ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, output: () => out };
}

/**
 * The fields of the 'kill switch ready' log line, and the banner's one-time UI login link (never in
 * the logs: it carries a credential).
 */
function readyLine(output: string): { temporalUi?: string; temporalUiLogin?: string } {
  const line = output.split('\n').find((l) => l.includes('"msg":"kill switch ready"'));
  const fields = JSON.parse(line!) as { temporalUi?: string; temporalUiLogin?: string };
  expect(fields.temporalUiLogin).toBeUndefined();
  expect(line).not.toContain('/_killswitch/login');
  const login = /Temporal UI\s+(\S+\/_killswitch\/login\S*)/.exec(output)?.[1];
  return { ...fields, ...(login ? { temporalUiLogin: login } : {}) };
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  return exited;
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

describe('npm start on embedded defaults', () => {
  it('starts, contains a leak sent by the test script, stops on Ctrl-C, and keeps its runs', async () => {
    const owned = await ownedSystem();
    const o = inject('owned');
    const { role, password } = await owned.createRole();
    const [port, tPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    const inventoryFile = path.join(dataDir, 'inventory.yaml');
    writeFileSync(
      inventoryFile,
      `systems:\n  - name: owned-db\n    kind: postgres\n    adminUrlEnv: OWNED_DB_ADMIN_URL\n    roles: ["app_*"]\n`,
    );
    const env = {
      KILLSWITCH_DATA_DIR: dataDir,
      PORT: String(port),
      TEMPORAL_DEV_PORT: String(tPort),
      TEMPORAL_DEV_UI_PORT: String(uiPort),
      INVENTORY_FILE: inventoryFile,
      OWNED_DB_ADMIN_URL: owned.adminUrl,
      ...(process.env.TEMPORAL_CLI ? { TEMPORAL_CLI: process.env.TEMPORAL_CLI } : {}),
    };

    const first = await start(env);
    expect(first.output()).toContain('"store":"pglite"');
    // The worker runs the workflow bundle the build made, not one bundled at start.
    expect(first.output()).toContain('"msg":"running the prebuilt workflow bundle"');
    // One UI origin, printed once and used everywhere: the banner, run links, the codec endpoint.
    const ready = readyLine(first.output());
    const ui = `http://127.0.0.1:${uiPort}`;
    expect(ready.temporalUi).toBe(ui);
    expect((await fetch(`${ui}/`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

    const leaked = `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`;
    const sent = spawnSync(
      path.resolve('node_modules/.bin/tsx'),
      [
        'scripts/send-test-detection.ts',
        '--url',
        `http://127.0.0.1:${port}/webhooks/generic`,
        '--secret',
        leaked,
      ],
      {
        env: { ...process.env, KILLSWITCH_DATA_DIR: dataDir, GENERIC_WEBHOOK_SECRETS: '' },
        encoding: 'utf8',
      },
    );
    expect(sent.status, sent.stderr).toBe(0);
    expect(sent.stdout).toMatch(/^202 /);
    const { workflowId, runId, temporalUiUrl } = JSON.parse(sent.stdout.slice(4)) as {
      workflowId: string;
      runId: string;
      temporalUiUrl: string;
    };
    expect(temporalUiUrl).toBe(`${ui}/namespaces/default/workflows/${workflowId}/${runId}/history`);

    // Payloads are encrypted with the key derived from the generated server key (no configuration).
    const keys = createServerKeys(readFileSync(path.join(dataDir, 'server.key'), 'utf8').trim());
    const dataConverter = killSwitchDataConverter(codecFromConfig({ codec: { keys: undefined } }, keys));
    const connection = await Connection.connect({ address: `127.0.0.1:${tPort}` });
    let rawHistory: unknown;
    try {
      await expect(new Client({ connection }).workflow.getHandle(workflowId).result()).rejects.toThrow(
        /binary\/encrypted/,
      );
      rawHistory = await new Client({ connection }).workflow.getHandle(workflowId).fetchHistory();
      const client = new Client({ connection, dataConverter });
      const result = await client.workflow.getHandle(workflowId).result();
      expect(result.outcome).toBe('contained');
      expect(await owned.loginFails(role, password)).toBe('28P01');
    } finally {
      await connection.close();
    }

    // The dev UI calls the codec on its own origin (the gateway), and nothing secret is in that URL.
    const settings = (await (await fetch(`${ui}/api/v1/settings`)).json()) as {
      Codec?: { Endpoint?: string };
    };
    expect(settings.Codec?.Endpoint).toBe(`${ui}/codec`);
    // The dev server's store runs in WAL mode (bytes 18/19 of the SQLite header are 2).
    const header = readFileSync(path.join(dataDir, 'temporal.db')).subarray(0, 20);
    expect([header[18], header[19]]).toEqual([2, 2]);

    // The UI's Origin is no credential: without the login cookie or the token, nobody decodes,
    // neither at the UI's codec nor at the ingress's.
    const sealed = collectPayloads(rawHistory)
      .filter((p) => p.path.includes('workflowExecutionStartedEventAttributes.input'))
      .map(({ payload }) => ({
        metadata: Object.fromEntries(
          Object.entries(payload.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')]),
        ),
        data: Buffer.from(payload.data!).toString('base64'),
      }));
    expect(sealed).toHaveLength(1);
    const decode = (base: string, headers: Record<string, string>) =>
      fetch(`${base}/codec/decode`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
        body: JSON.stringify({ payloads: sealed }),
      });
    for (const base of [ui, `http://127.0.0.1:${port}`]) {
      const refused = await decode(base, { origin: ui });
      expect(refused.status, base).toBe(401);
      expect(await refused.text()).not.toContain(role);
      expect((await decode(base, { origin: 'http://evil.example' })).status, base).toBe(403);
    }
    // The printed one-time login link sets an HttpOnly, SameSite=Strict cookie on the UI's origin;
    // with it the UI's codec answers decoded payloads.
    const link = new URL(ready.temporalUiLogin!);
    expect(link.origin).toBe(ui);
    const login = await fetch(link, { redirect: 'manual' });
    expect(login.status).toBe(303);
    const setCookie = login.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/; HttpOnly/);
    expect(setCookie).toMatch(/; SameSite=Strict/);
    const decoded = await decode(ui, { origin: ui, cookie: setCookie.split(';')[0]! });
    expect(decoded.status).toBe(200);
    expect(decoded.headers.get('access-control-allow-origin')).toBe(ui);
    const [plain] = ((await decoded.json()) as { payloads: Array<{ data: string }> }).payloads;
    expect(Buffer.from(plain!.data, 'base64').toString()).toContain(role);
    expect((await fetch(link, { redirect: 'manual' })).status).toBe(401); // one-time
    // The local codec token (0600 in the data folder) is the bearer for the CLI, at either codec.
    const tokenFile = path.join(dataDir, 'codec-token');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenFile, 'utf8').trim();
    expect((await decode(`http://127.0.0.1:${port}`, { authorization: `Bearer ${token}` })).status).toBe(200);
    // Another host name for the UI is sent to the one origin.
    const other = await fetch(`http://localhost:${uiPort}/namespaces/default/workflows`, {
      redirect: 'manual',
    });
    expect(other.status).toBe(308);
    expect(other.headers.get('location')).toBe(`${ui}/namespaces/default/workflows`);

    expect(await stop(first.child, 'SIGINT')).toBe(0);
    expect(first.output()).toContain('"msg":"stopped"');
    expect(await portOpen(tPort)).toBe(false);
    expect(await portOpen(port)).toBe(false);

    // The dev server state lives in the data folder: the run is still there after a restart.
    const second = await start(env);
    const again = await Connection.connect({ address: `127.0.0.1:${tPort}` });
    try {
      const d = await new Client({ connection: again }).workflow.getHandle(workflowId).describe();
      expect(d.status.name).toBe('COMPLETED');
    } finally {
      await again.close();
    }
    expect(await stop(second.child, 'SIGTERM')).toBe(0);
    await owned.su.end();
  });
});

describe('the first run on embedded defaults', () => {
  it('runs the demo system: send-test-detection ends contained, the CLI reads the local token', async () => {
    const [port, tPort, uiPort] = [await freePort(), await freePort(), await freePort()];
    const env = {
      KILLSWITCH_DATA_DIR: demoDataDir,
      PORT: String(port),
      TEMPORAL_DEV_PORT: String(tPort),
      TEMPORAL_DEV_UI_PORT: String(uiPort),
      ...(process.env.TEMPORAL_CLI ? { TEMPORAL_CLI: process.env.TEMPORAL_CLI } : {}),
    };
    const started = await start(env);
    const ui = `http://127.0.0.1:${uiPort}`;
    // The banner: the ingress, the UI's login link on the one origin, the local secrets, the next command.
    await waitFor(() => started.output().includes('Secret Kill Switch is ready'));
    const banner = started.output().slice(started.output().indexOf('Secret Kill Switch is ready'));
    expect(banner).toMatch(new RegExp(`ingress\\s+http://localhost:${port}/webhooks/generic`));
    const login = new RegExp(`Temporal UI\\s+(${ui}/\\S+)`).exec(banner)?.[1];
    expect(login).toBeDefined();
    expect((await fetch(login!, { redirect: 'manual' })).status).toBe(303);
    expect(banner).toContain(
      `${demoDataDir}/ (server.key, generic-webhook-secret, codec-token, api-token, demo-admin-token`,
    );
    expect(banner).toMatch(/demo system\s+acme-demo at http:\/\/127\.0\.0\.1:\d+/);
    expect(banner).toMatch(/next\s+npm run send-test-detection/);
    for (const f of ['api-token', 'demo-admin-token'])
      expect(statSync(path.join(demoDataDir, f)).mode & 0o777).toBe(0o600);
    const apiToken = readFileSync(path.join(demoDataDir, 'api-token'), 'utf8').trim();
    expect(started.output()).not.toContain(apiToken);

    // `npm run send-test-detection` as the README says, with the ingress found through PORT.
    const toolEnv: NodeJS.ProcessEnv = {
      ...process.env,
      KILLSWITCH_DATA_DIR: demoDataDir,
      PORT: String(port),
    };
    delete toolEnv.GENERIC_WEBHOOK_SECRETS;
    delete toolEnv.KILLSWITCH_API_TOKEN;
    delete toolEnv.KILLSWITCH_URL;
    const sent = spawnSync('npm', ['run', '-s', 'send-test-detection'], { env: toolEnv, encoding: 'utf8' });
    expect(sent.status, `${sent.stdout}\n${sent.stderr}`).toBe(0);
    expect(sent.stdout).toMatch(/^outcome\s+contained after \d+\.\d s \(system acme-demo, policy rotate/m);
    expect(sent.stdout).toMatch(/^sessions\s+2 expired$/m);
    expect(sent.stdout).toMatch(/^verified\s+dead at \S+ \(login_rejected\)$/m);
    expect(sent.stdout).toMatch(
      /^check\s+whoami with the leaked key: 401 \(dead\); with its sessions: 401, 401 \(expired\)$/m,
    );
    const workflowId = /^workflow\s+(\S+)$/m.exec(sent.stdout)?.[1];
    expect(workflowId).toMatch(/^killswitch-generic-/);
    expect(sent.stdout).toMatch(
      new RegExp(`^open\\s+${ui}/namespaces/default/workflows/${workflowId}/`, 'm'),
    );
    // The key, dead at the demo service (its prefix is printed, never the key).
    const prefix = /demo_([0-9a-f]{12})_…/.exec(sent.stdout)?.[1];
    const demoUrl = readFileSync(path.join(demoDataDir, 'demo-service-url'), 'utf8').trim();
    const adminToken = readFileSync(path.join(demoDataDir, 'demo-admin-token'), 'utf8').trim();
    const key = await fetch(`${demoUrl}/admin/keys/by-prefix/${prefix}?include=revoked`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(await key.json()).toMatchObject({ key: { revoked: true, sessions: 0 } });
    // Slack is not configured: the run's message is in the log.
    await waitFor(() => started.output().includes('Slack is not configured; message logged instead'));

    // The CLI, with nothing exported: the local token from the data folder, the ingress from PORT.
    const cli = (...args: string[]) =>
      spawnSync(path.resolve('node_modules/.bin/tsx'), ['cli/killswitch.ts', ...args], {
        env: toolEnv,
        encoding: 'utf8',
      });
    const recent = cli('recent', '--limit', '5');
    expect(recent.status, recent.stderr).toBe(0);
    expect(recent.stdout).toMatch(
      new RegExp(`contained\\s+generic\\s+generic\\s+acme-demo\\s+rotate\\s+${workflowId}`),
    );
    const status = cli('status', workflowId!, '--wait', '--timeout', '30');
    expect(status.status, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^outcome\s+contained$/m);
    expect(status.stdout).toMatch(/^ended after \d+\.\ds$/m);
    const version = cli('--version');
    expect(version.stdout.trim()).toBe(
      (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version,
    );

    expect(await stop(started.child, 'SIGINT')).toBe(0);
    // The demo service's address is gone with it: the tools then say there is no demo service.
    expect(() => statSync(path.join(demoDataDir, 'demo-service-url'))).toThrow();
    const again = spawnSync('npm', ['run', '-s', 'send-test-detection'], { env: toolEnv, encoding: 'utf8' });
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('no demo service');
  });
});

async function waitFor(cond: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * docker-compose.yml and the Dockerfile cannot be run here (no Docker), so this keeps them true to
 * the project instead: services wire up, the env vars the containers get are ones lib/config.ts
 * knows and parses, the search attributes registered are the ones the workflow sets, and the
 * entry points the image runs are what `npm run build` compiles, and the image holds what they read.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as esbuild } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONVERTER_PATHS, FAILURE_CONVERTER_PATH } from '../lib/codec';
import { envSchema, loadConfig } from '../lib/config';
import { MIGRATIONS_DIR } from '../lib/db';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../contracts/run';
import { ENTRY_POINTS } from '../scripts/build';
import {
  buildWorkflowBundle,
  WORKFLOW_BUNDLE_MANIFEST_NAME,
  WORKFLOWS_PATH,
} from '../worker/workflow-bundle';

const root = fileURLToPath(new URL('..', import.meta.url));
const compose = parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8')) as any;
const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const services: Record<string, any> = compose?.services ?? {};
const APP_SERVICES = ['worker', 'api'] as const;
const knownEnv = new Set(Object.keys(envSchema.shape));

/** `environment:` as a map, whichever of the two Compose syntaxes the service uses. */
function environment(service: string): Record<string, string> {
  const env = services[service]?.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry: string) => {
        const i = entry.indexOf('=');
        return i === -1 ? [entry, ''] : [entry.slice(0, i), entry.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v == null ? '' : String(v)]));
}

function dependsOn(service: string): Record<string, { condition?: string }> {
  const d = services[service]?.depends_on ?? {};
  return Array.isArray(d) ? Object.fromEntries(d.map((name: string) => [name, {}])) : d;
}

/** The subset of Compose interpolation this file uses: $$, ${VAR}, ${VAR:-default}, ${VAR:?message}. */
function interpolate(value: string, host: Record<string, string | undefined>): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g,
    (match, name?: string, op?: string, arg?: string) => {
      if (match === '$$') return '$';
      const v = host[name!];
      const unset = op?.startsWith(':') ? !v : v === undefined;
      if (op?.endsWith('?') && unset) throw new Error(`required variable ${name} is missing: ${arg}`);
      if (op?.endsWith('-') && unset) return arg ?? '';
      return v ?? '';
    },
  );
}

function resolvedEnv(service: string, host: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(environment(service)).map(([k, v]) => [k, interpolate(v, host)]));
}

/** The Dockerfile's stages, each FROM with the lines under it. */
const stages = dockerfile
  .split(/^(?=FROM\s)/m)
  .filter((s) => s.startsWith('FROM'))
  .map((body) => ({ from: body.split('\n')[0]!, name: /^FROM\s+\S+\s+AS\s+(\S+)/i.exec(body)?.[1], body }));
const runtimeStage = stages.at(-1)?.body ?? '';

/** The exec-form CMD of the Dockerfile (the last one wins, as in Docker). */
function dockerCmd(): string[] {
  const cmds = [...runtimeStage.matchAll(/^CMD\s+(\[.*\])\s*$/gm)];
  expect(cmds.length, 'Dockerfile has an exec-form CMD').toBeGreaterThan(0);
  return JSON.parse(cmds.at(-1)![1]!) as string[];
}

/** `node dist/<x>.js`, where <x>.ts is an entry point `npm run build` compiles: that source. */
function compiledEntry(argv: string[]): string {
  expect(argv[0]).toBe('node');
  // node [flags] dist/<entry>.js: V8 flags only (no loader, no --import).
  const flags = argv.slice(1, -1);
  for (const f of flags)
    expect(f, 'a node flag before the entry').toMatch(/^--(max-old-space-size|max-semi-space-size)=\d+$/);
  const entry = argv[argv.length - 1]!;
  const m = /^dist\/(.+)\.js$/.exec(entry);
  expect(m, `${entry} is compiled JavaScript under dist/`).not.toBeNull();
  const source = `${m![1]}.ts`;
  expect(ENTRY_POINTS, `npm run build compiles ${source}`).toContain(source);
  expect(existsSync(path.join(root, source))).toBe(true);
  return source;
}

/** Sources of the plain COPY lines of a stage (not COPY --from). */
function copiedIn(stage: string): string[] {
  return [...stage.matchAll(/^COPY\s+(?!--)(.+?)\s+\S+\s*$/gm)].flatMap((m) => m[1]!.split(/\s+/));
}

function publishedPorts(service: string): Array<{ published: string; target: string }> {
  return (services[service]?.ports ?? []).map((p: any) => {
    if (typeof p === 'object') return { published: String(p.published), target: String(p.target) };
    const parts = String(p)
      .replace(/\/(tcp|udp)$/, '')
      .split(':');
    return { published: parts.at(-2) ?? parts.at(-1)!, target: parts.at(-1)! };
  });
}

const hostEnv = {
  KILLSWITCH_SERVER_KEY: randomBytes(32).toString('base64'),
  GENERIC_WEBHOOK_SECRETS: `whsec_${randomBytes(24).toString('base64')}`,
};

describe('docker-compose.yml', () => {
  it('is Compose Specification YAML with the expected services', () => {
    expect(compose).toBeTypeOf('object');
    expect(compose).not.toHaveProperty('version');
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining([
        'postgres',
        'temporal',
        'temporal-search-attributes',
        'temporal-ui',
        'worker',
        'api',
      ]),
    );
  });

  it('gives every service an image or a build', () => {
    for (const [name, svc] of Object.entries(services)) {
      expect(Boolean(svc?.image || svc?.build), `${name} has image or build`).toBe(true);
    }
    for (const name of APP_SERVICES)
      expect(services[name].build, `${name} is built from the Dockerfile`).toBeDefined();
  });

  it('only depends on services that exist, with conditions they can meet', () => {
    for (const name of Object.keys(services)) {
      for (const [target, dep] of Object.entries(dependsOn(name))) {
        expect(services, `${name} depends on ${target}`).toHaveProperty([target]);
        if (dep.condition === 'service_healthy')
          expect(services[target].healthcheck, `${target} has a healthcheck`).toBeDefined();
        if (dep.condition === 'service_completed_successfully')
          expect(services[target].restart, `${target} is one-shot`).toBe('no');
      }
    }
    for (const name of APP_SERVICES) {
      expect(dependsOn(name)).toMatchObject({
        postgres: { condition: 'service_healthy' },
        'temporal-search-attributes': { condition: 'service_completed_successfully' },
      });
    }
  });

  it('sets the variables the split processes require', () => {
    for (const name of APP_SERVICES) {
      expect(Object.keys(environment(name))).toEqual(
        expect.arrayContaining(['DATABASE_URL', 'TEMPORAL_ADDRESS', 'KILLSWITCH_SERVER_KEY']),
      );
    }
    expect(Object.keys(environment('api'))).toContain('GENERIC_WEBHOOK_SECRETS');
  });

  it('sets only variables lib/config.ts knows', () => {
    for (const name of APP_SERVICES) {
      const unknown = Object.keys(environment(name)).filter((k) => !knownEnv.has(k));
      expect(unknown, `${name}: env vars missing from envSchema`).toEqual([]);
    }
  });

  it('refuses to start without the two secrets and leaves the notifiers optional', () => {
    const required = /^\$\{(KILLSWITCH_SERVER_KEY|GENERIC_WEBHOOK_SECRETS):\?\s*\S.*\}$/;
    for (const name of APP_SERVICES) expect(environment(name).KILLSWITCH_SERVER_KEY).toMatch(required);
    expect(environment('api').GENERIC_WEBHOOK_SECRETS).toMatch(required);
    for (const [k, v] of Object.entries(environment('worker'))) {
      if (['SLACK_BOT_TOKEN', 'SLACK_CHANNEL', 'PAGERDUTY_ROUTING_KEY'].includes(k))
        expect(v).toBe(`\${${k}:-}`);
    }
    expect(() => resolvedEnv('worker', {})).toThrow(/KILLSWITCH_SERVER_KEY/);
    expect(() => resolvedEnv('api', { KILLSWITCH_SERVER_KEY: hostEnv.KILLSWITCH_SERVER_KEY })).toThrow(
      /GENERIC_WEBHOOK_SECRETS/,
    );
  });

  it('hands worker and api an environment loadConfig accepts, pointing at the stack', () => {
    const pgEnv = resolvedEnv('postgres', hostEnv);
    for (const name of APP_SERVICES) {
      const config = loadConfig(resolvedEnv(name, hostEnv));
      const db = new URL(config.databaseUrl!);
      expect(services, `${name}: DATABASE_URL host is a service`).toHaveProperty([db.hostname]);
      expect(db.hostname).toBe('postgres');
      expect(decodeURIComponent(db.username)).toBe(pgEnv.POSTGRES_USER);
      expect(decodeURIComponent(db.password)).toBe(pgEnv.POSTGRES_PASSWORD);
      expect(db.pathname).toBe(`/${pgEnv.POSTGRES_DB}`);
      expect(config.temporal.address).toBe('temporal:7233');
      expect(config.temporal.uiUrl).toBe('http://localhost:8233');
    }
    expect(loadConfig(resolvedEnv('api', hostEnv)).webhook.genericSecrets).toEqual([
      hostEnv.GENERIC_WEBHOOK_SECRETS,
    ]);
  });

  it('mounts the inventory the worker is told to read', () => {
    const inventoryFile = environment('worker').INVENTORY_FILE;
    expect(inventoryFile).toBe('/app/config/inventory.yaml');
    expect(services.worker.volumes).toContain(`./config:${path.posix.dirname(inventoryFile!)}:ro`);
  });

  it('registers exactly the search attributes the workflow sets, in the namespace the worker uses', () => {
    const svc = services['temporal-search-attributes'];
    expect(environment('temporal-search-attributes').TEMPORAL_ADDRESS).toBe('temporal:7233');
    expect(dependsOn('temporal-search-attributes')).toHaveProperty(['temporal']);
    const script = [svc.entrypoint, svc.command].flat().filter(Boolean).join('\n');
    const created = [
      ...script.matchAll(/search-attribute create --namespace (\S+) --name (\S+) --type (\S+)/g),
    ].map((m) => ({
      namespace: m[1],
      name: m[2]!,
      type: m[3],
    }));
    expect(
      created.map(({ name, type }) => ({ name, type })).sort((a, b) => a.name.localeCompare(b.name)),
    ).toEqual([...SEARCH_ATTRIBUTE_DEFINITIONS].sort((a, b) => a.name.localeCompare(b.name)));
    const namespace = loadConfig(resolvedEnv('worker', hostEnv)).temporal.namespace;
    for (const c of created) expect(c.namespace).toBe(namespace);
    expect(script, 'tolerates attributes that already exist').toContain('already exists');
  });

  it('pins the Temporal images to 1.2x releases', () => {
    expect(services.temporal.image).toMatch(/^temporalio\/auto-setup:1\.2\d\.\d+$/);
    expect(services['temporal-search-attributes'].image).toMatch(/^temporalio\/admin-tools:1\.2\d\.\d+/);
    expect(services['temporal-ui'].image).toMatch(/^temporalio\/ui:\d+\.\d+\.\d+$/);
  });

  it('publishes the ingress on 3000 and health-checks /healthz', () => {
    const port = environment('api').PORT ?? '3000';
    expect(publishedPorts('api')).toContainEqual({ published: '3000', target: port });
    expect(JSON.stringify(services.api.healthcheck?.test)).toContain(`:${port}/healthz`);
  });
});

describe('Dockerfile', () => {
  it('runs the compiled worker by default, from an entry point the build compiles', () => {
    // Node itself, no TypeScript loader: SIGTERM reaches the worker and it drains.
    expect(compiledEntry(dockerCmd())).toBe('worker/index.ts');
  });

  it('runs the worker with the node flags of npm run start:worker (the heap cap the bench measured)', () => {
    const script = (
      JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts['start:worker']!;
    expect(dockerCmd()).toEqual(script.split(/\s+/));
    expect(script).toContain('--max-old-space-size=');
  });

  it('gives the api the compiled ingress', () => {
    const command = services.api.command;
    const argv: string[] = Array.isArray(command) ? command : String(command).split(/\s+/);
    expect(compiledEntry(argv)).toBe('api/server.ts');
  });

  it('compiles and bundles in a build stage that has the sources', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages.find((s) => s.name === 'build')?.body ?? '';
    expect(build).toMatch(/^FROM node:20-bookworm-slim AS build$/m);
    expect(build).toMatch(/^RUN npm ci$/m);
    expect(build).toMatch(/^RUN npm run build$/m);
    const copied = copiedIn(build);
    for (const src of [
      'package.json',
      'tsconfig.json',
      'contracts/',
      'lib/',
      'store/',
      'workflows/',
      'activities/',
      'worker/',
      'api/',
      'scripts/',
      'tools/',
    ])
      expect(copied).toContain(src);
    for (const src of copied)
      expect(existsSync(path.join(root, src)), `COPY source ${src} exists`).toBe(true);
    for (const entry of ENTRY_POINTS)
      expect(
        copied.some((src) => entry.startsWith(src)),
        `${entry} is copied`,
      ).toBe(true);
  });

  it('copies every source file the entry points import into the build stage (a new folder is not forgotten)', async () => {
    const copied = copiedIn(stages.find((s) => s.name === 'build')?.body ?? '');
    const result = await esbuild({
      entryPoints: ENTRY_POINTS.map((e) => path.join(root, e)),
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      logLevel: 'silent',
      outdir: os.tmpdir(),
      absWorkingDir: root,
    });
    const ours = Object.keys(result.metafile.inputs).filter((f) => !f.startsWith('node_modules/'));
    expect(ours.length).toBeGreaterThan(20);
    const missing = ours.filter(
      (file) => !copied.some((src) => (src.endsWith('/') ? file.startsWith(src) : file === src)),
    );
    expect(missing, 'imported files the build stage does not COPY').toEqual([]);
  });

  it('runs on production dependencies, the built dist/ and the files read at run time, as non-root, exposing 3000', () => {
    expect(stages.at(-1)!.from).toMatch(/^FROM node:20-bookworm-slim\s*$/);
    expect(runtimeStage).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(runtimeStage).toMatch(/^COPY --from=build \/app\/dist\/ dist\/$/m);
    expect(runtimeStage).not.toMatch(/tsx/);
    const copied = copiedIn(runtimeStage);
    for (const src of copied)
      expect(existsSync(path.join(root, src)), `COPY source ${src} exists`).toBe(true);
    const inImage = (file: string) =>
      copied.some((src) => (src.endsWith('/') ? file.startsWith(src) : file === src));
    expect(inImage(`${path.relative(root, MIGRATIONS_DIR)}/`)).toBe(true);
    expect(inImage(path.relative(root, FAILURE_CONVERTER_PATH))).toBe(true);
    expect(copied).toContain('config/');
    const user = [...runtimeStage.matchAll(/^USER\s+(\S+)/gm)].at(-1)?.[1];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    expect(runtimeStage).toMatch(/^EXPOSE 3000\b/m);
  });

  it('holds every file the worker checks the workflow bundle against, so the image runs its prebuilt bundle', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-bundle-'));
    try {
      await buildWorkflowBundle({ workflowsPath: WORKFLOWS_PATH, converters: CONVERTER_PATHS, dir });
      const manifest = JSON.parse(readFileSync(path.join(dir, WORKFLOW_BUNDLE_MANIFEST_NAME), 'utf8')) as {
        inputs: Record<string, string>;
      };
      const ours = Object.keys(manifest.inputs).filter((f) => !f.startsWith('node_modules/'));
      expect(ours).toContain('workflows/index.ts');
      // An SDK upgrade makes the bundle stale too: its workflow runtime is among the inputs.
      expect(Object.keys(manifest.inputs)).toEqual(
        expect.arrayContaining([expect.stringMatching(/^node_modules\/@temporalio\/workflow\//)]),
      );
      const copied = copiedIn(runtimeStage);
      const missing = ours.filter(
        (file) => !copied.some((src) => (src.endsWith('/') ? file.startsWith(src) : file === src)),
      );
      expect(missing, 'files the runtime stage does not COPY').toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * docker-compose.yml and the Dockerfile cannot be run here (no Docker), so this keeps them true to
 * the project instead: the file is valid against the Compose Specification's JSON schema; the stack
 * is set up the way Temporal's self-hosting compose does it (temporalio/server, temporal-sql-tool
 * schema jobs, namespace, search attributes, dynamic config, healthchecks); the kill switch's secrets
 * come from files (`<VAR>_FILE`, read by lib/config.ts) that docker/generate-secrets.sh writes and
 * loadConfig accepts; the internet-facing api gets no owned-system credentials; Temporal and the
 * audit store have their own database users; public URLs are required, not localhost; only the
 * ingress is published. And the entry points the image runs are what `npm run build` compiles, and
 * the image holds what they read.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { build as esbuild } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONVERTER_PATHS, FAILURE_CONVERTER_PATH } from '../lib/codec';
import { envSchema, loadConfig, SECRET_FILE_VARS } from '../lib/config';
import { MIGRATIONS_DIR } from '../lib/db';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../contracts/run';
import { ENTRY_POINTS } from '../scripts/build';
import {
  buildWorkflowBundle,
  WORKFLOW_BUNDLE_MANIFEST_NAME,
  WORKFLOWS_PATH,
} from '../worker/workflow-bundle';

const root = fileURLToPath(new URL('..', import.meta.url));
const composeText = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
// Compose resolves YAML merge keys (<<:) and anchors.
const compose = parse(composeText, { merge: true }) as any;
const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const services: Record<string, any> = compose?.services ?? {};
const APP_SERVICES = ['worker', 'api'] as const;
const knownEnv = new Set(Object.keys(envSchema.shape));
const secretVars = new Set<string>(SECRET_FILE_VARS);
const scriptOf = (file: string) => readFileSync(path.join(root, file), 'utf8');

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

/** Short-syntax ports, interpolated: `[host_ip:]published:target`. */
function publishedPorts(
  service: string,
  host: Record<string, string | undefined> = {},
): Array<{ ip: string | undefined; published: string; target: string }> {
  return (services[service]?.ports ?? []).map((p: any) => {
    if (typeof p === 'object')
      return { ip: p.host_ip, published: String(p.published), target: String(p.target) };
    const parts = interpolate(String(p), host)
      .replace(/\/(tcp|udp)$/, '')
      .split(':');
    return {
      ip: parts.length === 3 ? parts[0] : undefined,
      published: parts.at(-2) ?? parts.at(-1)!,
      target: parts.at(-1)!,
    };
  });
}

/** The host-side variables an operator sets (docs/operating.md, "Production stack"). */
const hostEnv = {
  POSTGRES_PASSWORD: 'superuser-password-0123456789abcdef',
  TEMPORAL_DB_PASSWORD: 'temporal-password-0123456789abcdef',
  KILLSWITCH_PUBLIC_URL: 'https://killswitch.example.com',
  TEMPORAL_UI_PUBLIC_URL: 'https://temporal.example.com',
};

/** The secrets as docker/generate-secrets.sh writes them, in a scratch copy of the project's docker/. */
let scratch: string;
let secretsDir: string;
beforeAll(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'ks-compose-'));
  cpSync(path.join(root, 'docker'), path.join(scratch, 'docker'), { recursive: true });
  execFileSync('sh', [path.join(scratch, 'docker', 'generate-secrets.sh')], { stdio: 'pipe' });
  secretsDir = path.join(scratch, 'secrets');
});
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** A service's environment as its container sees it: /run/secrets/<name> read from the generated files. */
function containerEnv(service: string, host: Record<string, string | undefined> = hostEnv) {
  return Object.fromEntries(
    Object.entries(resolvedEnv(service, host)).map(([k, v]) => [
      k,
      k.endsWith('_FILE') && v.startsWith('/run/secrets/') ? path.join(secretsDir, path.basename(v)) : v,
    ]),
  );
}

/** The Compose Specification's JSON schema (compose-spec/compose-spec, schema/compose-spec.json, Apache-2.0), vendored: no network at test time. */
function composeSchema(): object {
  return JSON.parse(readFileSync(path.join(root, 'test/fixtures/compose-spec.schema.json'), 'utf8'));
}

describe('docker-compose.yml', () => {
  it('is valid against the Compose Specification JSON schema, and the schema rejects a broken file', () => {
    expect(compose).not.toHaveProperty('version');
    const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
    // Draft-07, which Ajv speaks; its $schema URL (https) is not one Ajv has under that name.
    const { $schema: _draft, ...schema } = composeSchema() as { $schema?: string };
    expect(_draft).toMatch(/draft-07/);
    const validate = ajv.compile(schema);
    expect(validate(compose), JSON.stringify(validate.errors, null, 2)).toBe(true);
    // The check has teeth: a misspelt key and a wrong depends_on condition are caught.
    const broken = structuredClone(compose);
    broken.services.api.depends_on.temporal.condition = 'service_up';
    broken.services.worker.enviroment = {};
    expect(validate(broken)).toBe(false);
  });

  it('runs Temporal as its self-hosting compose does: temporalio/server, schema jobs, namespace, search attributes', () => {
    expect(services.temporal.image).toMatch(/^temporalio\/server:1\.(2|3)\d\.\d+$/);
    expect(Object.values(services).map((s) => s.image)).not.toContainEqual(
      expect.stringMatching(/auto-setup/),
    );
    for (const job of ['temporal-schema', 'temporal-create-namespace', 'temporal-search-attributes'])
      expect(services[job].image, job).toMatch(/^temporalio\/admin-tools:1\.(2|3)\d\.\d+/);
    expect(services['temporal-ui']?.image).toMatch(/^temporalio\/ui:\d+\.\d+\.\d+$/);

    // The schema job: temporal-sql-tool setup-schema + update-schema for both databases, as the temporal user.
    const schema = scriptOf('docker/temporal/setup-postgres.sh');
    expect(services['temporal-schema'].command).toEqual(['/scripts/setup-postgres.sh']);
    expect(services['temporal-schema'].volumes).toContain('./docker/temporal:/scripts:ro');
    expect(schema).toMatch(/temporal-sql-tool --plugin postgres12 .*setup-schema -v 0\.0/);
    expect(schema).toMatch(/temporal-sql-tool --plugin postgres12 .*update-schema -d/);
    expect(schema).toContain('/etc/temporal/schema/postgresql/v12/temporal/versioned');
    expect(schema).toContain('/etc/temporal/schema/postgresql/v12/visibility/versioned');
    expect(schema).toMatch(/for db in temporal temporal_visibility/);
    expect(resolvedEnv('temporal-schema', hostEnv)).toMatchObject({
      POSTGRES_USER: 'temporal',
      DB: 'postgres12',
    });

    // The namespace job creates the namespace the worker and the api use.
    const namespace = loadConfig(containerEnv('worker')).temporal.namespace;
    expect(loadConfig(containerEnv('api')).temporal.namespace).toBe(namespace);
    expect(resolvedEnv('temporal-create-namespace', hostEnv).KILLSWITCH_NAMESPACE).toBe(namespace);
    expect(scriptOf('docker/temporal/create-namespace.sh')).toMatch(
      /temporal operator namespace create --namespace "\$NAMESPACE"/,
    );

    // The search attributes job registers exactly the ones the workflow sets, in that namespace.
    expect(resolvedEnv('temporal-search-attributes', hostEnv).KILLSWITCH_NAMESPACE).toBe(namespace);
    const sa = scriptOf('docker/temporal/search-attributes.sh');
    expect(sa).toContain('search-attribute create --namespace "$NAMESPACE" --name "$1" --type "$2"');
    const registered = [...sa.matchAll(/^register (\S+) (\S+)$/gm)].map((m) => ({
      name: m[1]!,
      type: m[2]!,
    }));
    expect(registered.sort((a, b) => a.name.localeCompare(b.name))).toEqual(
      [...SEARCH_ATTRIBUTE_DEFINITIONS].sort((a, b) => a.name.localeCompare(b.name)),
    );
    expect(sa, 'tolerates attributes that already exist').toContain('already exists');
    for (const job of ['temporal-schema', 'temporal-create-namespace', 'temporal-search-attributes']) {
      const cmd = [services[job].entrypoint, services[job].command].flat();
      const file = cmd.find((c: string) => c.startsWith('/scripts/'))!;
      const local = path.join(root, 'docker/temporal', path.basename(file));
      expect(existsSync(local), `${job} runs ${file}`).toBe(true);
      expect(statSync(local).mode & 0o111, `${file} is executable`).not.toBe(0);
    }
  });

  it('mounts a dynamic config file that exists and parses', () => {
    const env = resolvedEnv('temporal', hostEnv);
    const mount = (services.temporal.volumes as string[]).find((v) =>
      v.includes(':/etc/temporal/config/dynamicconfig'),
    );
    expect(mount).toBe('./docker/temporal/dynamicconfig:/etc/temporal/config/dynamicconfig:ro');
    const rel = env.DYNAMIC_CONFIG_FILE_PATH!;
    expect(rel).toMatch(/^config\/dynamicconfig\/[\w.-]+\.yaml$/);
    const file = path.join(root, 'docker/temporal/dynamicconfig', path.basename(rel));
    const doc = parse(readFileSync(file, 'utf8')) as Record<string, Array<{ value: unknown }>>;
    expect(Object.keys(doc).length).toBeGreaterThan(0);
    for (const [key, values] of Object.entries(doc)) {
      expect(key).toMatch(/^[a-zA-Z]+(\.[a-zA-Z]+)+$/);
      expect(Array.isArray(values) && values.every((v) => 'value' in v), key).toBe(true);
    }
  });

  it('orders start-up with healthchecks and one-shot jobs', () => {
    for (const name of Object.keys(services)) {
      for (const [target, dep] of Object.entries(dependsOn(name))) {
        expect(services, `${name} depends on ${target}`).toHaveProperty([target]);
        expect(dep.condition, `${name} -> ${target} has a condition`).toMatch(
          /^service_(healthy|completed_successfully)$/,
        );
        if (dep.condition === 'service_healthy')
          expect(services[target].healthcheck, `${target} has a healthcheck`).toBeDefined();
        if (dep.condition === 'service_completed_successfully') {
          expect(services[target].restart, `${target} is one-shot`).toMatch(/^(no|on-failure(:\d+)?)$/);
          expect(services[target].healthcheck).toBeUndefined();
        }
      }
    }
    expect(dependsOn('temporal-schema')).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(dependsOn('temporal')).toEqual({
      'temporal-schema': { condition: 'service_completed_successfully' },
    });
    expect(dependsOn('temporal-create-namespace')).toEqual({ temporal: { condition: 'service_healthy' } });
    expect(dependsOn('temporal-search-attributes')).toEqual({
      'temporal-create-namespace': { condition: 'service_completed_successfully' },
    });
    for (const name of APP_SERVICES) {
      expect(dependsOn(name)).toEqual({
        postgres: { condition: 'service_healthy' },
        temporal: { condition: 'service_healthy' },
        'temporal-search-attributes': { condition: 'service_completed_successfully' },
      });
    }
    // The app services' healthchecks ask their readiness endpoints (lib/health.ts), on the ports they listen on.
    expect(JSON.stringify(services.api.healthcheck.test)).toContain(
      `127.0.0.1:${resolvedEnv('api', hostEnv).PORT}/readyz`,
    );
    expect(JSON.stringify(services.worker.healthcheck.test)).toContain(
      `127.0.0.1:${resolvedEnv('worker', hostEnv).WORKER_HEALTH_PORT}/readyz`,
    );
  });

  it('builds one image once: the worker builds it, the api runs the same image', () => {
    const built = Object.entries(services).filter(([, s]) => s.build);
    expect(built.map(([n]) => n)).toEqual(['worker']);
    expect(services.api.image).toBe(services.worker.image);
    expect(services.api.build).toBeUndefined();
    for (const [name, svc] of Object.entries(services))
      expect(Boolean(svc?.image || svc?.build), `${name} has image or build`).toBe(true);
  });

  it('gives the kill switch its secrets as files only, each one the service mounts', () => {
    const top: Record<string, { file?: string }> = compose.secrets ?? {};
    for (const name of APP_SERVICES) {
      const env = environment(name);
      const mounted = new Set<string>(services[name].secrets ?? []);
      for (const k of Object.keys(env)) {
        expect(secretVars.has(k), `${name}: ${k} is a secret, passed as ${k}_FILE`).toBe(false);
        if (!k.endsWith('_FILE') || k === 'INVENTORY_FILE') continue;
        expect(secretVars.has(k.slice(0, -5)), `${name}: ${k} is a <VAR>_FILE lib/config.ts reads`).toBe(
          true,
        );
        const m = /^\/run\/secrets\/([a-z_]+)$/.exec(env[k]!);
        expect(m, `${name}: ${k} points at /run/secrets/<name>`).not.toBeNull();
        expect(mounted.has(m![1]!), `${name} mounts the secret ${m![1]}`).toBe(true);
        expect(top[m![1]!]?.file, `secret ${m![1]} is a file`).toMatch(/^\.\/secrets\/[a-z_]+$/);
      }
    }
  });

  it('sets only variables lib/config.ts knows (or their _FILE form)', () => {
    for (const name of APP_SERVICES) {
      const unknown = Object.keys(environment(name)).filter(
        (k) => !knownEnv.has(k) && !(k.endsWith('_FILE') && secretVars.has(k.slice(0, -5))),
      );
      expect(unknown, `${name}: env vars missing from envSchema`).toEqual([]);
    }
  });

  it('docker/generate-secrets.sh writes secrets loadConfig accepts, and keeps them on a second run', () => {
    const before = Object.fromEntries(
      readdirSync(secretsDir).map((f) => [f, readFileSync(path.join(secretsDir, f), 'utf8')]),
    );
    const mode = statSync(secretsDir).mode & 0o777;
    expect(mode).toBe(0o700);
    expect(before['.gitignore']).toBe('*\n');
    for (const name of Object.keys(compose.secrets))
      expect(before, `generates ${name}`).toHaveProperty([name]);
    execFileSync('sh', [path.join(scratch, 'docker', 'generate-secrets.sh')], { stdio: 'pipe' });
    for (const [f, text] of Object.entries(before))
      expect(readFileSync(path.join(secretsDir, f), 'utf8'), `${f} kept`).toBe(text);
    const dotenv = readFileSync(path.join(scratch, '.env'), 'utf8');
    expect(dotenv).toMatch(/^POSTGRES_PASSWORD=[0-9a-f]{48}$/m);
    expect(dotenv).toMatch(/^TEMPORAL_DB_PASSWORD=[0-9a-f]{48}$/m);

    const worker = loadConfig(containerEnv('worker'));
    const api = loadConfig(containerEnv('api'));
    expect(worker.serverKey).toBe(before.server_key!.trim());
    expect(api.serverKey).toBe(worker.serverKey);
    expect(api.codec.keys).toEqual(worker.codec.keys);
    expect(api.codec.keys?.length).toBe(1);
    expect(api.webhook.genericSecrets).toEqual([before.webhook_secrets!.trim()]);
    expect(api.codec.tokens).toEqual([before.codec_tokens!.trim()]);
    expect(api.observability.metricsToken).toBe(before.metrics_token!.trim());
    // The optional notifiers are empty files: unset, so loadConfig does not ask for a Slack channel.
    expect(worker.slack.token).toBeUndefined();
    expect(worker.pagerduty.routingKey).toBeUndefined();
    expect(api.apiTokens).toEqual([]);
  });

  it('uses separate database users for Temporal and the audit store, none of them the superuser', () => {
    const pg = resolvedEnv('postgres', hostEnv);
    expect(pg.POSTGRES_USER).toBe('postgres');
    expect(services.postgres.volumes).toContain('./docker/postgres:/docker-entrypoint-initdb.d:ro');
    const init = scriptOf('docker/postgres/10-users.sh');
    expect(statSync(path.join(root, 'docker/postgres/10-users.sh')).mode & 0o111).not.toBe(0);
    expect(init).toContain("CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';");
    expect(init).toContain('CREATE DATABASE temporal OWNER temporal;');
    expect(init).toContain('CREATE DATABASE temporal_visibility OWNER temporal;');
    expect(init).toContain("CREATE ROLE killswitch LOGIN PASSWORD :'killswitch_password';");
    expect(init).toContain('CREATE DATABASE killswitch OWNER killswitch;');
    // Temporal connects as `temporal` with the password the init script gave that user.
    for (const svc of ['temporal', 'temporal-schema']) {
      const env = resolvedEnv(svc, hostEnv);
      expect(env.POSTGRES_USER, svc).toBe('temporal');
      expect(env.POSTGRES_PWD, svc).toBe(hostEnv.TEMPORAL_DB_PASSWORD);
      expect(env.POSTGRES_SEEDS, svc).toBe('postgres');
    }
    expect(pg.TEMPORAL_DB_PASSWORD).toBe(hostEnv.TEMPORAL_DB_PASSWORD);
    // The kill switch connects as `killswitch` to its own database, with the password the init script read.
    expect(services.postgres.secrets).toContain('killswitch_db_password');
    expect(path.basename(pg.KILLSWITCH_DB_PASSWORD_FILE!)).toBe('killswitch_db_password');
    const password = readFileSync(path.join(secretsDir, 'killswitch_db_password'), 'utf8').trim();
    for (const name of APP_SERVICES) {
      const db = new URL(loadConfig(containerEnv(name)).databaseUrl!);
      expect(db.hostname).toBe('postgres');
      expect(db.username).toBe('killswitch');
      expect(decodeURIComponent(db.password)).toBe(password);
      expect(db.pathname).toBe('/killswitch');
    }
    // The superuser's password reaches the postgres container only.
    for (const [name] of Object.entries(services).filter(([n]) => n !== 'postgres'))
      expect(JSON.stringify(services[name]), name).not.toContain('${POSTGRES_PASSWORD');
  });

  it('refuses to start without the database passwords and the public URLs: no silent defaults', () => {
    expect(environment('postgres').POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?\s*\S.*\}$/);
    expect(() => resolvedEnv('postgres', { ...hostEnv, POSTGRES_PASSWORD: undefined })).toThrow(
      /POSTGRES_PASSWORD/,
    );
    expect(() => resolvedEnv('temporal', { ...hostEnv, TEMPORAL_DB_PASSWORD: '' })).toThrow(
      /TEMPORAL_DB_PASSWORD/,
    );
    for (const name of APP_SERVICES) {
      expect(() => resolvedEnv(name, { ...hostEnv, TEMPORAL_UI_PUBLIC_URL: undefined })).toThrow(
        /TEMPORAL_UI_PUBLIC_URL/,
      );
    }
    expect(() => resolvedEnv('api', { ...hostEnv, KILLSWITCH_PUBLIC_URL: undefined })).toThrow(
      /KILLSWITCH_PUBLIC_URL/,
    );
    // Compose interpolates every service before it applies profiles: the opt-in UI may require only
    // what the default stack requires anyway, or a plain `docker compose up` would stop.
    const requiredIn = (svc: string) =>
      new Set([...JSON.stringify(services[svc]).matchAll(/\$\{([A-Z0-9_]+):\?/g)].map((m) => m[1]!));
    const byDefault = new Set(
      Object.keys(services)
        .filter((n) => !services[n].profiles)
        .flatMap((n) => [...requiredIn(n)]),
    );
    for (const name of Object.keys(services).filter((n) => services[n].profiles))
      expect(
        [...requiredIn(name)].filter((v) => !byDefault.has(v)),
        name,
      ).toEqual([]);
    expect(() => resolvedEnv('temporal-ui', hostEnv)).not.toThrow();
  });

  it('links to the public URLs the operator sets, never to localhost', () => {
    const host = {
      ...hostEnv,
      KILLSWITCH_PUBLIC_URL: 'https://ks.corp.example',
      TEMPORAL_UI_PUBLIC_URL: 'https://ui.corp.example',
    };
    for (const name of APP_SERVICES) {
      const config = loadConfig(containerEnv(name, host));
      expect(config.temporal.uiUrl).toBe('https://ui.corp.example');
      // The codec endpoint's CORS allows the UI's public origin.
      expect(config.temporal.uiOrigin).toBe('https://ui.corp.example');
    }
    expect(loadConfig(containerEnv('api', host)).publicBaseUrl).toBe('https://ks.corp.example');
    for (const [name, svc] of Object.entries(services))
      for (const v of Object.values(environment(name)))
        expect(v, `${name} (${JSON.stringify(svc.image)})`).not.toMatch(/localhost|127\.0\.0\.1/);
  });

  it("lets the Temporal UI decode through the ingress codec endpoint with the signed-in engineer's token", () => {
    const ui = resolvedEnv('temporal-ui', {
      ...hostEnv,
      TEMPORAL_AUTH_PROVIDER_URL: 'https://idp.example.com',
      TEMPORAL_AUTH_CLIENT_ID: 'temporal-ui',
      TEMPORAL_AUTH_CLIENT_SECRET: 'client-secret',
    });
    const api = loadConfig({
      ...containerEnv('api'),
      CODEC_JWT_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json',
      CODEC_JWT_ISSUER: 'https://idp.example.com',
      CODEC_JWT_AUDIENCE: 'temporal-ui',
    });
    expect(ui.TEMPORAL_CODEC_ENDPOINT).toBe(`${api.publicBaseUrl}/codec`);
    expect(ui.TEMPORAL_CODEC_PASS_ACCESS_TOKEN).toBe('true');
    expect(ui.TEMPORAL_AUTH_ENABLED).toBe('true');
    expect(ui.TEMPORAL_AUTH_CALLBACK_URL).toBe(`${hostEnv.TEMPORAL_UI_PUBLIC_URL}/auth/sso/callback`);
    expect(api.codec.jwt).toEqual({
      jwksUrl: 'https://idp.example.com/.well-known/jwks.json',
      issuer: 'https://idp.example.com',
      audience: 'temporal-ui',
    });
    // The same three variables are wired through from the host.
    for (const k of ['CODEC_JWT_JWKS_URL', 'CODEC_JWT_ISSUER', 'CODEC_JWT_AUDIENCE'])
      expect(environment('api')[k]).toBe(`\${${k}:-}`);
    expect(api.temporal.uiOrigin).toBe(new URL(hostEnv.TEMPORAL_UI_PUBLIC_URL).origin);
    expect(ui.TEMPORAL_DEFAULT_NAMESPACE).toBe(api.temporal.namespace);
  });

  it("keeps the owned systems' admin credentials and the PagerDuty key away from the internet-facing api", () => {
    expect(services.worker.env_file).toEqual([{ path: './secrets/worker.env', required: false }]);
    expect(services.api.env_file).toBeUndefined();
    const apiText = JSON.stringify(services.api);
    expect(apiText).not.toMatch(/worker\.env|PAGERDUTY|ADMIN_URL|pagerduty/);
    expect(services.api.secrets).not.toContain('pagerduty_routing_key');
    expect(services.worker.secrets).toContain('pagerduty_routing_key');
    expect(environment('worker')).not.toHaveProperty('GENERIC_WEBHOOK_SECRETS_FILE');
    expect(environment('worker')).not.toHaveProperty('CODEC_TOKENS_FILE');
    const inventoryFile = environment('worker').INVENTORY_FILE!;
    for (const name of APP_SERVICES)
      expect(services[name].volumes).toContain(`./config:${path.posix.dirname(inventoryFile)}:ro`);
  });

  it('publishes only the ingress, on a configurable interface (loopback by default)', () => {
    const inDefaultStack = Object.entries(services).filter(([, s]) => !s.profiles);
    const published = inDefaultStack.filter(([, s]) => (s.ports ?? []).length > 0).map(([n]) => n);
    expect(published).toEqual(['api']);
    for (const [, s] of Object.entries(services)) expect(s.expose).toBeUndefined();
    const port = resolvedEnv('api', hostEnv).PORT;
    expect(publishedPorts('api')).toEqual([{ ip: '127.0.0.1', published: '3000', target: port }]);
    expect(publishedPorts('api', { KILLSWITCH_BIND: '0.0.0.0', KILLSWITCH_PORT: '8443' })).toEqual([
      { ip: '0.0.0.0', published: '8443', target: port },
    ]);
    // The UI, an opt-in profile, listens on loopback for the TLS terminator in front.
    expect(services['temporal-ui'].profiles).toEqual(['ui']);
    expect(publishedPorts('temporal-ui')).toEqual([{ ip: '127.0.0.1', published: '8080', target: '8080' }]);
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

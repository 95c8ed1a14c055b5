/**
 * `npm run build`: what production runs. `npm start`, `start:worker` and `start:api` run it first;
 * the Dockerfile runs it in its build stage; the bench before it starts its processes.
 *
 * 1. The TypeScript of the three entry points (scripts/start.ts, worker/index.ts, api/server.ts)
 *    and of every file they import, compiled by esbuild file by file into dist/ with the same
 *    layout (dist/worker/index.js ...), ESM for Node 20. The sources import relative paths without
 *    extensions ('../lib/db', '../activities'), which Node's ESM loader does not resolve, so each
 *    one is rewritten to the file it names ('../lib/db.js', '../activities/index.js'). Packages stay
 *    imports, resolved from node_modules at run time; nothing is bundled, so import.meta.url and
 *    "is this the main module" checks keep meaning what they mean in the sources.
 * 2. The workflow bundle (worker/workflow-bundle.ts): dist/workflow-bundle.js and its manifest,
 *    rebuilt only when a file it was made from changed (`--force` rebuilds it anyway).
 *
 *   npm run build [-- --force]
 */
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { CONVERTER_PATHS } from '../lib/codec';
import { DIST_DIR, PROJECT_ROOT } from '../lib/paths';
import {
  buildWorkflowBundle,
  WORKFLOW_BUNDLE_MANIFEST_NAME,
  WORKFLOW_BUNDLE_NAME,
  WORKFLOWS_PATH,
  writeAtomic,
} from '../worker/workflow-bundle';

export const ENTRY_POINTS = ['scripts/start.ts', 'worker/index.ts', 'api/server.ts'];

const isFile = (file: string) => statSync(file, { throwIfNoEntry: false })?.isFile() === true;

/** The source file a relative import names, as TypeScript's bundler resolution finds it. */
function resolveSource(spec: string, resolveDir: string): string {
  const base = path.resolve(resolveDir, spec);
  const candidates = /\.[cm]?js$/.test(base)
    ? [base.replace(/js$/, 'ts'), base]
    : [base, `${base}.ts`, path.join(base, 'index.ts')];
  const found = candidates.find(isFile);
  if (!found)
    throw new Error(`cannot resolve '${spec}' from ${path.relative(PROJECT_ROOT, resolveDir) || '.'}`);
  return found;
}

/** Every import stays an import; a relative one is pointed at the compiled file it becomes. */
function importsAsCompiled(files: Set<string>): Plugin {
  return {
    name: 'imports-as-compiled',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return undefined;
        if (!args.path.startsWith('.')) return { path: args.path, external: true };
        const source = resolveSource(args.path, args.resolveDir);
        files.add(source);
        let spec = path
          .relative(args.resolveDir, source)
          .split(path.sep)
          .join('/')
          .replace(/\.[cm]?ts$/, '.js');
        if (!spec.startsWith('.')) spec = `./${spec}`;
        return { path: spec, external: true };
      });
    },
  };
}

/** Compiles the entry points and what they import into dist/; returns the files written. */
async function compile(): Promise<{ sources: number; outputs: Set<string> }> {
  // Each pass compiles the files known so far and learns the ones they import, until none is new.
  const files = new Set(ENTRY_POINTS.map((e) => path.join(PROJECT_ROOT, e)));
  const outputs = new Map<string, Uint8Array>();
  let compiled = new Set<string>();
  while (compiled.size < files.size) {
    const batch = [...files].filter((f) => !compiled.has(f));
    compiled = new Set(files);
    const result = await build({
      absWorkingDir: PROJECT_ROOT,
      entryPoints: batch,
      outbase: PROJECT_ROOT,
      outdir: DIST_DIR,
      bundle: true, // with every import external: one output per source file, imports rewritten
      plugins: [importsAsCompiled(files)],
      platform: 'node',
      format: 'esm',
      target: 'node20',
      // As tsx runs the sources: names kept, class fields per the tsconfig.
      keepNames: true,
      tsconfig: path.join(PROJECT_ROOT, 'tsconfig.json'),
      sourcemap: 'linked',
      write: false,
      logLevel: 'warning',
    });
    for (const out of result.outputFiles) outputs.set(out.path, out.contents);
  }
  // Unchanged files are left alone (their mtimes too); the others replaced whole, never half-written.
  for (const [file, contents] of outputs) {
    if (!isFile(file) || !readFileSync(file).equals(contents)) writeAtomic(file, Buffer.from(contents));
  }
  return { sources: files.size, outputs: new Set(outputs.keys()) };
}

/** Compiled files of sources that no longer exist, so dist/ holds only what this build made. */
function removeLeftovers(keep: Set<string>): number {
  let removed = 0;
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (!keep.has(file) && /\.js(\.map)?$/.test(file)) {
        rmSync(file, { force: true });
        removed++;
      }
    }
  };
  walk(DIST_DIR);
  return removed;
}

async function main(): Promise<void> {
  const force = process.argv.includes('--force');
  const t0 = performance.now();
  const { sources, outputs } = await compile();
  const removed = removeLeftovers(
    new Set([
      ...outputs,
      ...[WORKFLOW_BUNDLE_NAME, WORKFLOW_BUNDLE_MANIFEST_NAME].map((f) => path.join(DIST_DIR, f)),
    ]),
  );
  const t1 = performance.now();
  // With the converters of killSwitchDataConverter, which the worker checks the bundle against.
  const bundle = await buildWorkflowBundle({
    workflowsPath: WORKFLOWS_PATH,
    converters: CONVERTER_PATHS,
    force,
  });
  const t2 = performance.now();
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  process.stdout.write(
    `build: ${sources} files compiled to ${path.relative(PROJECT_ROOT, DIST_DIR)}/ in ${s(t1 - t0)}${removed ? ` (${removed} stale removed)` : ''}; ` +
      `workflow bundle ${bundle.built ? `built in ${s(t2 - t1)}` : 'up to date'} (dist/${WORKFLOW_BUNDLE_NAME}, ${(bundle.bytes / 2 ** 20).toFixed(1)} MiB)\n`,
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    process.stderr.write(`build failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}

/**
 * The prebuilt workflow bundle. `npm run build` bundles the workflow code once (the SDK's
 * bundleWorkflowCode: webpack, ~1 s and ~200 MiB) into dist/workflow-bundle.js and writes next to it
 * a manifest: every file webpack read (our workflow sources, the failure converter, the SDK's
 * workflow runtime, package.json files) with its SHA-256, and the converter files the bundle embeds.
 * A worker runs that file only while all of it still matches what is on disk and the data converter
 * it runs with; otherwise it bundles at start as before (tests from sources, a workflow edited
 * without a rebuild) and says why. A stale bundle is never run: old workflow code would meet new
 * histories, or the other way round.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DIST_DIR, PROJECT_ROOT } from '../lib/paths';

/** The one bundle entry (workflows/index.ts), bundled by `npm run build` or at worker start. */
export const WORKFLOWS_PATH = path.join(PROJECT_ROOT, 'workflows', 'index.ts');
export const WORKFLOW_BUNDLE_NAME = 'workflow-bundle.js';
export const WORKFLOW_BUNDLE_MANIFEST_NAME = 'workflow-bundle.json';

/** What a bundle is made from besides the workflow code: the data converter's files. */
export interface BundleConverters {
  failureConverterPath?: string;
  payloadConverterPath?: string;
}

export interface BundleLocation {
  workflowsPath: string;
  converters: BundleConverters;
  /** Where the bundle and its manifest are (default dist/). */
  dir?: string;
  /** Input paths are recorded relative to it; files outside it are not recorded (default: the project). */
  root?: string;
}

interface Manifest {
  format: 1;
  /** Root-relative. */
  workflowsPath: string;
  /** SHA-256 of each converter file the bundle embeds (null: the SDK's default). */
  failureConverter: string | null;
  payloadConverter: string | null;
  /** Every file webpack read, root-relative, with its SHA-256. */
  inputs: Record<string, string>;
  /** SHA-256 of the bundle file. */
  bundle: string;
}

export type PrebuiltBundle = { ok: true; codePath: string } | { ok: false; missing: boolean; reason: string };

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

function fileHash(file: string): string | null {
  try {
    return sha256(readFileSync(file));
  } catch {
    return null;
  }
}

function locate(opts: BundleLocation) {
  const root = opts.root ?? PROJECT_ROOT;
  const dir = opts.dir ?? DIST_DIR;
  return {
    root,
    bundleFile: path.join(dir, WORKFLOW_BUNDLE_NAME),
    manifestFile: path.join(dir, WORKFLOW_BUNDLE_MANIFEST_NAME),
    rel: (file: string) => path.relative(root, file).split(path.sep).join('/'),
    abs: (file: string) => path.resolve(root, file),
  };
}

/** Writes through a temporary file and a rename, so a reader (another build, a starting worker) never sees half a file. */
export function writeAtomic(file: string, data: string | Buffer): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * The prebuilt bundle when it was built from exactly the files on disk now and with the same
 * converters; otherwise why not. Hashes the ~250 files it was made from (under 10 ms).
 */
export function prebuiltWorkflowBundle(opts: BundleLocation): PrebuiltBundle {
  const { bundleFile, manifestFile, rel, abs } = locate(opts);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as Manifest;
  } catch {
    return {
      ok: false,
      missing: true,
      reason: `no prebuilt workflow bundle (${rel(manifestFile)}; npm run build makes it)`,
    };
  }
  const stale = (why: string): PrebuiltBundle => ({
    ok: false,
    missing: false,
    reason: `the prebuilt workflow bundle is stale (${why}; npm run build remakes it)`,
  });
  if (manifest.format !== 1 || typeof manifest.inputs !== 'object') return stale('unknown manifest format');
  if (manifest.workflowsPath !== rel(opts.workflowsPath))
    return stale(`built from ${manifest.workflowsPath}, not ${rel(opts.workflowsPath)}`);
  for (const kind of ['failureConverter', 'payloadConverter'] as const) {
    const file = opts.converters[`${kind}Path`];
    if ((file ? fileHash(file) : null) !== manifest[kind]) return stale(`built with another ${kind}`);
  }
  for (const [file, hash] of Object.entries(manifest.inputs)) {
    if (fileHash(abs(file)) !== hash) return stale(`${file} changed since`);
  }
  if (fileHash(bundleFile) !== manifest.bundle)
    return stale(`${rel(bundleFile)} does not match its manifest`);
  return { ok: true, codePath: bundleFile };
}

/**
 * Bundles the workflow code into dist/workflow-bundle.js with its manifest, unless the one there is
 * current (`force` rebuilds it anyway). Give it the converters the worker runs with
 * (killSwitchDataConverter): the bundle embeds them.
 */
export async function buildWorkflowBundle(
  opts: BundleLocation & { force?: boolean },
): Promise<{ built: boolean; bytes: number; reason?: string }> {
  const at = locate(opts);
  const current = prebuiltWorkflowBundle(opts);
  if (current.ok && !opts.force) return { built: false, bytes: statSync(current.codePath).size };
  for (let attempt = 1; ; attempt++) {
    const started = Date.now();
    const made = await bundle(opts);
    // A file saved while webpack ran may not be what it read: bundle again rather than record it.
    const changed = Object.keys(made.manifest.inputs).find(
      (file) => statSync(at.abs(file)).mtimeMs >= started,
    );
    if (changed && attempt < 3) continue;
    if (changed) throw new Error(`${changed} kept changing while the workflow code was bundled`);
    // The bundle first: a worker starting in between finds a manifest that does not match it and bundles itself.
    writeAtomic(at.bundleFile, made.code);
    writeAtomic(at.manifestFile, `${JSON.stringify(made.manifest, null, 1)}\n`);
    return {
      built: true,
      bytes: Buffer.byteLength(made.code),
      ...(current.ok ? {} : { reason: current.reason }),
    };
  }
}

async function bundle(opts: BundleLocation): Promise<{ code: string; manifest: Manifest }> {
  const { root, rel } = locate(opts);
  // Loaded only to bundle (webpack and all: ~0.5 s), so a build with nothing to bundle stays quick.
  const { bundleWorkflowCode, DefaultLogger } = await import('@temporalio/worker');
  let read: string[] = [];
  const { code } = await bundleWorkflowCode({
    workflowsPath: opts.workflowsPath,
    ...(opts.converters.failureConverterPath
      ? { failureConverterPath: opts.converters.failureConverterPath }
      : {}),
    ...(opts.converters.payloadConverterPath
      ? { payloadConverterPath: opts.converters.payloadConverterPath }
      : {}),
    logger: new DefaultLogger('WARN'),
    // Records every file webpack read; the entry point it generates lives in memory only.
    webpackConfigHook: (config) => ({
      ...config,
      plugins: [
        ...(config.plugins ?? []),
        {
          apply(compiler) {
            compiler.hooks.done.tap('killswitch-bundle-inputs', (stats) => {
              read = [...stats.compilation.fileDependencies];
            });
          },
        },
      ],
    }),
  });
  const inputs: Record<string, string> = {};
  for (const file of read.sort()) {
    if (!file.startsWith(root + path.sep) || statSync(file, { throwIfNoEntry: false })?.isFile() !== true)
      continue;
    inputs[rel(file)] = sha256(readFileSync(file));
  }
  if (!(rel(opts.workflowsPath) in inputs))
    throw new Error(`webpack did not report reading ${rel(opts.workflowsPath)}`);
  const converter = (file: string | undefined) => (file ? fileHash(file) : null);
  return {
    code,
    manifest: {
      format: 1,
      workflowsPath: rel(opts.workflowsPath),
      failureConverter: converter(opts.converters.failureConverterPath),
      payloadConverter: converter(opts.converters.payloadConverterPath),
      inputs,
      bundle: sha256(code),
    },
  };
}

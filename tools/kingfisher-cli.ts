/**
 * Finds the `kingfisher` scanner (MongoDB's), for the tests that produce a real report: $KINGFISHER_CLI,
 * then PATH, then the project-local tools folder, else installs the pinned PyPI wheel `kingfisher-bin`
 * (it ships the official binary) there.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './temporal-cli';

export const KINGFISHER_BIN_VERSION = '2.14.0';
const TOOLS = path.join(PROJECT_ROOT, '.tools', `kingfisher-bin-${KINGFISHER_BIN_VERSION}`);
const BINARY = path.join(TOOLS, 'kingfisher', 'bin', 'kingfisher');

const executable = (f: string) => {
  try {
    accessSync(f, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

export function resolveKingfisher(env: Record<string, string | undefined> = process.env): string {
  if (env.KINGFISHER_CLI) {
    if (!executable(env.KINGFISHER_CLI))
      throw new Error(`KINGFISHER_CLI=${env.KINGFISHER_CLI} is not an executable file`);
    return env.KINGFISHER_CLI;
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter))
    if (dir && executable(path.join(dir, 'kingfisher'))) return path.join(dir, 'kingfisher');
  if (executable(BINARY)) return BINARY;
  mkdirSync(TOOLS, { recursive: true });
  const r = spawnSync(
    'python3',
    [
      '-m',
      'pip',
      'install',
      '--quiet',
      '--disable-pip-version-check',
      '--no-input',
      '--target',
      TOOLS,
      `kingfisher-bin==${KINGFISHER_BIN_VERSION}`,
    ],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  if (r.status !== 0 || !executable(BINARY))
    throw new Error(`installing kingfisher-bin==${KINGFISHER_BIN_VERSION} failed (pip exit ${r.status})`);
  return BINARY;
}

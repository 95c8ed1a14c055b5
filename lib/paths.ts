/**
 * Where the project's files are, whether this module runs from its TypeScript source (lib/paths.ts,
 * under tsx or vitest) or compiled (dist/lib/paths.js, `npm run build`): the nearest folder above it
 * that holds a package.json. Paths that name files shipped next to the code (migrations, the
 * failure converter, the workflow sources) or kept beside it (.tools, results) start from here.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function projectRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const PROJECT_ROOT = projectRoot(path.dirname(fileURLToPath(import.meta.url)));
/** What `npm run build` writes: the compiled JavaScript (same layout as the sources) and the workflow bundle. */
export const DIST_DIR = path.join(PROJECT_ROOT, 'dist');

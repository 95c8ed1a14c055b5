/**
 * `npm run inventory:check -- [file] [--env]`: validates an inventory file against the schema and
 * prints every error by path (systems[2].sink.secretId: …). With --env it also checks that every
 * environment variable the file names is set and well-formed, as the worker does at startup.
 * Exit code 0 when valid, 1 when not, 2 on bad usage.
 */
import { existsSync } from 'node:fs';
import { InventoryError, loadInventoryFile, resolveInventoryEnv } from '../lib/inventory';

function main(argv: string[]): number {
  const flags = argv.filter((a) => a.startsWith('--'));
  const files = argv.filter((a) => !a.startsWith('--'));
  const unknown = flags.filter((f) => f !== '--env' && f !== '--help');
  if (flags.includes('--help') || unknown.length || files.length > 1) {
    process.stderr.write(
      `usage: npm run inventory:check -- [file] [--env]\n${unknown.length ? `unknown flag: ${unknown.join(' ')}\n` : ''}`,
    );
    return flags.includes('--help') && !unknown.length ? 0 : 2;
  }
  const file = files[0] ?? process.env.INVENTORY_FILE ?? 'config/inventory.yaml';
  if (!existsSync(file)) {
    process.stderr.write(`${file}: no such file (pass a path, or set INVENTORY_FILE)\n`);
    return 1;
  }
  try {
    const inv = loadInventoryFile(file);
    if (flags.includes('--env')) resolveInventoryEnv(inv, process.env);
    const kinds = inv.systems.map(
      (s) => `${s.name} (${s.kind}, ${s.quarantine ? 'quarantine' : s.mode}, sink ${s.sink.kind})`,
    );
    process.stdout.write(
      `${file}: valid; ${inv.systems.length} system(s)${kinds.length ? `: ${kinds.join(', ')}` : ''}\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof InventoryError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

process.exitCode = main(process.argv.slice(2));

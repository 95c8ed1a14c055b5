/**
 * `npm run temporal:cli -- <args>` runs the project's temporal CLI (installing it if needed);
 * `--ensure` only makes sure it is there and prints its path.
 */
import { spawnSync } from 'node:child_process';
import { resolveTemporalCli } from '../tools/temporal-cli';

function main(): number {
  const cli = resolveTemporalCli();
  const args = process.argv.slice(2);
  if (args[0] === '--ensure') {
    process.stdout.write(`${cli}\n`);
    return 0;
  }
  return spawnSync(cli, args, { stdio: 'inherit' }).status ?? 1;
}

try {
  process.exit(main());
} catch (err) {
  process.stderr.write(`temporal-cli: ${(err as Error).message}\n`);
  process.exit(1);
}

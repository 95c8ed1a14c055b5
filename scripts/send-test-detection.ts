/**
 * Sends one signed detection to the generic webhook, the way a scanner would.
 *
 *   npm run send-test-detection -- [--url http://localhost:3000/webhooks/generic]
 *        [--secret 'postgres://demo_app:leaked-pw@127.0.0.1:5432/postgres'] [--role demo_app] [--type postgres_password]
 *
 * The signing secret comes from GENERIC_WEBHOOK_SECRETS (first one) or the file npm start keeps in
 * the data folder.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { postSigned, resolveSigningSecret } from '../lib/webhook-client';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: 'http://localhost:3000/webhooks/generic' },
      secret: { type: 'string' },
      role: { type: 'string' },
      type: { type: 'string', default: 'postgres_password' },
      repository: { type: 'string', default: 'acme/demo-service' },
      file: { type: 'string', default: 'config/database.yml' },
    },
  });
  const signing = resolveSigningSecret({ env: process.env });
  const detection = {
    scanner: 'send-test-detection',
    findingId: randomUUID(),
    credentialType: values.type,
    secret: values.secret ?? `demo-leaked-${randomBytes(9).toString('base64url')}`,
    ...(values.role || !values.secret ? { credentialRef: { role: values.role ?? 'demo_app' } } : {}),
    location: { repository: values.repository, file: values.file, line: 3 },
    severity: 'high',
  };
  const res = await postSigned(values.url!, detection, signing);
  process.stdout.write(`${res.status} ${res.text}\n`);
  if (res.status < 200 || res.status >= 300) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`send-test-detection: ${(err as Error).message}\n`);
  process.exit(1);
});

/**
 * Sends one signed detection to the generic webhook, the way a scanner would.
 *
 *   npm run send-test-detection
 *       The demo (npm start on embedded defaults): mints a fresh key with live sessions from the
 *       demo service, sends it as leaked, follows the run until it is contained and checks that the
 *       key and its sessions are refused. Exit 0 only then.
 *
 *   npm run send-test-detection -- --secret 'postgres://demo_app:leaked-pw@127.0.0.1:5432/postgres'
 *        [--role demo_app] [--type postgres_password] [--repository R] [--file F]
 *       A detection of your own; prints the ingress's answer.
 *
 * The ingress: --url (the webhook or the ingress's base URL), else KILLSWITCH_URL, else
 * http://localhost:$PORT (3000). The signing secret comes from GENERIC_WEBHOOK_SECRETS (first one)
 * or the file npm start keeps in the data folder (KILLSWITCH_DATA_DIR, default .data); the read API
 * token from KILLSWITCH_API_TOKEN or the data folder.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { sendDemoDetection } from '../lib/demo-client';
import {
  dataDirOf,
  describeFetchError,
  postSigned,
  resolveApiToken,
  resolveSigningSecret,
} from '../lib/webhook-client';

/** The webhook URL and the ingress's base: a base URL gets /webhooks/generic appended. */
function targetOf(
  url: string | undefined,
  env: Record<string, string | undefined>,
): { webhook: string; ingress: string } {
  const given = url ?? env.KILLSWITCH_URL ?? `http://localhost:${env.PORT || '3000'}`;
  let u: URL;
  try {
    u = new URL(given);
  } catch {
    throw new Error(
      `${url ? '--url' : env.KILLSWITCH_URL ? 'KILLSWITCH_URL' : 'PORT'}: not a URL (${given.slice(0, 100)})`,
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new Error(`${url ? '--url' : 'KILLSWITCH_URL'}: expected an http(s) URL`);
  const webhook = u.pathname === '/' ? `${u.origin}/webhooks/generic` : u.toString();
  return { webhook, ingress: u.origin };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      secret: { type: 'string' },
      role: { type: 'string' },
      type: { type: 'string' },
      repository: { type: 'string', default: 'acme/demo-service' },
      file: { type: 'string', default: 'config/database.yml' },
    },
  });
  const { webhook, ingress } = targetOf(values.url, process.env);
  const signing = resolveSigningSecret({ env: process.env });

  if (values.secret === undefined && values.role === undefined && values.type === undefined) {
    const { token } = resolveApiToken(process.env);
    const report = await sendDemoDetection({
      ingress,
      webhookUrl: webhook,
      dataDir: dataDirOf(process.env),
      signingSecret: signing,
      ...(token ? { apiToken: token } : {}),
      out: (s) => process.stdout.write(s),
    });
    if (!report.contained) {
      process.stderr.write(
        `send-test-detection: the run did not end contained (${report.outcome ?? 'no audit row'}; whoami ${report.keyStatus})\n`,
      );
      process.exitCode = 1;
    }
    return;
  }

  const detection = {
    scanner: 'send-test-detection',
    findingId: randomUUID(),
    credentialType: values.type ?? 'postgres_password',
    secret: values.secret ?? `demo-leaked-${randomBytes(9).toString('base64url')}`,
    ...(values.role || !values.secret ? { credentialRef: { role: values.role ?? 'demo_app' } } : {}),
    location: { repository: values.repository, file: values.file, line: 3 },
    severity: 'high',
  };
  let res: Awaited<ReturnType<typeof postSigned>>;
  try {
    res = await postSigned(webhook, detection, signing);
  } catch (err) {
    throw new Error(
      `${describeFetchError(webhook, err)} (is npm start running? set PORT or KILLSWITCH_URL to its port)`,
    );
  }
  process.stdout.write(`${res.status} ${res.text}\n`);
  if (res.status < 200 || res.status >= 300) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`send-test-detection: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

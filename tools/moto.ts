/**
 * moto, the AWS emulator (IAM, STS, Secrets Manager) the tests run real AWS SDK calls against: the
 * pinned PyPI package `moto[server]` installed into the project-local tools folder (no system
 * install), started as `python3 -m moto.server` on a free loopback port.
 *
 * `enforceAuth` turns on moto's IAM authentication: a bootstrap admin user with an allow-all
 * inline policy is created while moto still answers anonymous calls, then `/moto-api/reset-auth`
 * sets the anonymous allowance to 0. From then on every request must be signed by a key that
 * exists in moto's IAM (a deleted key gets InvalidClientTokenId), and IAM policies are evaluated.
 * moto does not check a key's Active/Inactive status (real AWS does).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  CreateAccessKeyCommand,
  CreateUserCommand,
  IAMClient,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import { captureOutput, freePort } from './temporal-dev';
import { PROJECT_ROOT } from './temporal-cli';

export const MOTO_VERSION = '5.2.5';
const TOOLS = path.join(PROJECT_ROOT, '.tools', `moto-${MOTO_VERSION}`);

export interface MotoServer {
  endpoint: string;
  /** The bootstrap admin's key (allow-all), when auth is enforced. */
  admin?: { accessKeyId: string; secretAccessKey: string };
  process: ChildProcess;
  stop(): Promise<void>;
}

/** The folder holding the pinned moto (PYTHONPATH), installed there from PyPI when missing. */
export function resolveMoto(): string {
  if (existsSync(path.join(TOOLS, 'moto', 'server.py')) && existsSync(path.join(TOOLS, 'flask')))
    return TOOLS;
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
      `moto[server]==${MOTO_VERSION}`,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0 || !existsSync(path.join(TOOLS, 'moto', 'server.py'))) {
    throw new Error(`installing moto[server]==${MOTO_VERSION} failed (pip exit ${r.status})`);
  }
  return TOOLS;
}

export interface MotoOptions {
  /** Require signed requests by IAM keys moto knows, and evaluate IAM policies. */
  enforceAuth?: boolean;
  logFile?: string;
  readyTimeoutMs?: number;
}

export async function startMoto(opts: MotoOptions = {}): Promise<MotoServer> {
  const pythonPath = resolveMoto();
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PYTHONPATH: [pythonPath, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
      PYTHONDONTWRITEBYTECODE: '1',
      // No request is free of authentication once reset-auth says so; until then all are.
      INITIAL_NO_AUTH_ACTION_COUNT: 'inf',
    },
  });
  captureOutput(child, opts.logFile);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `moto server exited (code ${code}, signal ${signal})`;
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await done;
    clearTimeout(timer);
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (exited) throw new Error(`${exited}${opts.logFile ? `; see ${opts.logFile}` : ''}`);
    try {
      const res = await fetch(`${endpoint}/moto-api/data.json`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto server not ready at ${endpoint}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  const server: MotoServer = { endpoint, process: child, stop };
  if (opts.enforceAuth) {
    try {
      server.admin = await bootstrapAdmin(endpoint);
    } catch (err) {
      await stop();
      throw err;
    }
  }
  return server;
}

async function bootstrapAdmin(endpoint: string): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  // Anonymous calls still pass here (the allowance is infinite until reset-auth).
  const iam = new IAMClient({
    region: 'us-east-1',
    endpoint,
    credentials: { accessKeyId: 'AKIABOOTSTRAP0000000', secretAccessKey: 'bootstrap' },
  });
  try {
    const UserName = 'moto-admin';
    await iam.send(new CreateUserCommand({ UserName }));
    await iam.send(
      new PutUserPolicyCommand({
        UserName,
        PolicyName: 'allow-all',
        PolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }],
        }),
      }),
    );
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName }))).AccessKey!;
    const res = await fetch(`${endpoint}/moto-api/reset-auth`, { method: 'POST', body: '0' });
    if (!res.ok) throw new Error(`moto reset-auth answered ${res.status}`);
    return { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! };
  } finally {
    iam.destroy();
  }
}

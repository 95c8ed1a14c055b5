/**
 * A real SMTP server for the e-mail transport's tests: the pinned PyPI package aiosmtpd installed
 * into the project-local tools folder (like tools/moto.ts, no system install), run by
 * tools/smtp_server.py on a free loopback port. Optionally with STARTTLS (a self-signed
 * certificate; the server then refuses mail before STARTTLS) and AUTH (a user and password; mail
 * without a login is refused). Every accepted message lands in a temp folder that `messages()`
 * reads: its raw bytes and the server side's view (TLS used, authenticated, headers and bodies as
 * Python's e-mail parser reads them).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { selfSignedCert } from './self-signed-cert';
import { PROJECT_ROOT } from './temporal-cli';
import { captureOutput, freePort } from './temporal-dev';

export const AIOSMTPD_VERSION = '1.4.6';
const TOOLS = path.join(PROJECT_ROOT, '.tools', `aiosmtpd-${AIOSMTPD_VERSION}`);
const SERVER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'smtp_server.py');

/** The folder holding the pinned aiosmtpd (PYTHONPATH), installed there from PyPI when missing. */
export function resolveAiosmtpd(): string {
  if (existsSync(path.join(TOOLS, 'aiosmtpd', 'smtp.py'))) return TOOLS;
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
      `aiosmtpd==${AIOSMTPD_VERSION}`,
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0 || !existsSync(path.join(TOOLS, 'aiosmtpd', 'smtp.py'))) {
    throw new Error(`installing aiosmtpd==${AIOSMTPD_VERSION} failed (pip exit ${r.status})`);
  }
  return TOOLS;
}

/** A message as the server received it. */
export interface ReceivedMail {
  mailFrom: string;
  rcptTos: string[];
  /** Whether the session was inside TLS (STARTTLS) when the message came. */
  tls: boolean;
  authenticated: boolean;
  /** Header name (lower case) -> its values, decoded. */
  headers: Record<string, string[]>;
  contentType: string;
  /** Content types of every MIME part, outermost first. */
  parts: string[];
  text: string | null;
  html: string | null;
  /** The bytes received after DATA. */
  raw: string;
}

export interface SmtpServer {
  host: string;
  port: number;
  /** With STARTTLS: the PEM of the server's self-signed certificate (a client's CA). */
  caPem?: string;
  messages(): ReceivedMail[];
  waitForCount(n: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  stop(): Promise<void>;
}

export interface SmtpOptions {
  /** Offer STARTTLS and require it before MAIL. */
  starttls?: boolean;
  /** Require AUTH with this user and password. */
  auth?: { user: string; password: string };
  logFile?: string;
  readyTimeoutMs?: number;
}

async function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.end();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startSmtp(opts: SmtpOptions = {}): Promise<SmtpServer> {
  const pythonPath = resolveAiosmtpd();
  const host = '127.0.0.1';
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-smtp-'));
  const mailDir = path.join(dir, 'mail');
  const cert = opts.starttls ? selfSignedCert(dir, 'smtp') : undefined;
  const args = [SERVER_SCRIPT, '--host', host, '--port', String(port), '--dir', mailDir];
  if (cert) args.push('--tlscert', cert.certFile, '--tlskey', cert.keyFile);
  if (opts.auth) args.push('--user', opts.auth.user);
  const child: ChildProcess = spawn('python3', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PYTHONPATH: [pythonPath, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
      PYTHONDONTWRITEBYTECODE: '1',
      // Not on the command line, where `ps` would show it.
      SMTP_PASSWORD: opts.auth?.password ?? '',
    },
  });
  captureOutput(child, opts.logFile);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `SMTP server exited (code ${code}, signal ${signal})`;
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const done = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await done;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  while (!(await listening(host, port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(
        `${exited ?? `SMTP server not listening on ${host}:${port}`}${opts.logFile ? `; see ${opts.logFile}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const messages = (): ReceivedMail[] =>
    existsSync(mailDir)
      ? readdirSync(mailDir)
          .filter((f) => f.endsWith('.json'))
          .sort()
          .map((f) => {
            const meta = JSON.parse(readFileSync(path.join(mailDir, f), 'utf8')) as Omit<ReceivedMail, 'raw'>;
            return { ...meta, raw: readFileSync(path.join(mailDir, f.replace(/\.json$/, '.eml')), 'utf8') };
          })
      : [];

  return {
    host,
    port,
    ...(cert ? { caPem: cert.certPem } : {}),
    messages,
    async waitForCount(n, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const all = messages();
        if (all.length >= n) return all;
        if (Date.now() > until)
          throw new Error(`the SMTP server received ${all.length} of ${n} messages in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop,
  };
}

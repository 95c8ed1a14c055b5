/**
 * A throwaway self-signed certificate for the TLS listeners of the test servers (rsyslog, SMTP),
 * made with the `openssl` command line: valid for `localhost` and 127.0.0.1, for two days. The
 * certificate doubles as its own CA, so a client trusts it by passing its PEM as `ca`.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface SelfSignedCert {
  certFile: string;
  keyFile: string;
  /** The certificate's PEM (give it to a client as its only CA). */
  certPem: string;
}

export function selfSignedCert(dir: string, name = 'server'): SelfSignedCert {
  mkdirSync(dir, { recursive: true });
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-sha256',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' },
  );
  if (r.error) throw new Error(`openssl not runnable: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`openssl req failed (exit ${r.status}): ${r.stderr.trim().slice(0, 300)}`);
  return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8') };
}

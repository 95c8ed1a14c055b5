/**
 * Temporal over TLS for real. The dev server serves plain gRPC only, so a TLS terminator stands in
 * front of it (test/helpers/tls-terminator.ts), as a load balancer would in front of a cluster:
 * - a contained run end to end (the real ingress, worker and client) through server TLS with the
 *   CA pinned, and through mutual TLS with a client certificate the terminator verifies;
 * - without a trusted CA or without a client certificate the connection is refused, and the error
 *   says which variable to set;
 * - an API key reaches the server as `authorization: Bearer …` from both the client (grpc-js) and
 *   the worker (Core), observed by an HTTP/2 proxy;
 * - a profile file selects the address, namespace and TLS.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { KillSwitchResult } from '../../contracts/run';
import { loadConfig } from '../../lib/config';
import { explainConnectError, type TemporalConnection } from '../../lib/temporal-connection';
import { capturedLogs, leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';
import {
  makePki,
  startGrpcTlsProxy,
  startTlsTerminator,
  type GrpcTlsProxy,
  type Pki,
  type TlsTerminator,
} from '../helpers/tls-terminator';

let dir: string;
let pki: Pki;
let tlsOnly: TlsTerminator;
let mutual: TlsTerminator;
let proxy: GrpcTlsProxy;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ks-temporal-tls-'));
  pki = makePki(dir);
  const upstream = inject('temporalAddress');
  [tlsOnly, mutual, proxy] = await Promise.all([
    startTlsTerminator({ upstream, pki }),
    startTlsTerminator({ upstream, pki, clientCa: pki.caPem }),
    startGrpcTlsProxy({ upstream, pki }),
  ]);
});
afterAll(async () => {
  await Promise.all([tlsOnly?.close(), mutual?.close(), proxy?.close()]);
});

function connectionFor(env: Record<string, string>): TemporalConnection {
  return loadConfig(env).temporal.connection;
}

/** Connects the client and the worker's native connection; returns each one's error (explained) or null. */
async function tryConnect(conn: TemporalConnection): Promise<{ client: Error | null; worker: Error | null }> {
  const attempt = async (connect: () => Promise<{ close(): Promise<void> }>) => {
    try {
      const c = await connect();
      await c.close();
      return null;
    } catch (err) {
      return explainConnectError(err, conn);
    }
  };
  return {
    client: await attempt(async () => {
      const c = await Connection.connect({ ...conn.connectOptions(), connectTimeout: 5000 });
      await c.workflowService.getSystemInfo({});
      return c;
    }),
    worker: await attempt(async () => {
      const c = await NativeConnection.connect(conn.connectOptions());
      await c.workflowService.getSystemInfo({});
      return c;
    }),
  };
}

describe.each([
  ['server TLS, CA pinned', () => tlsOnly, (): Record<string, string> => ({})],
  [
    'mutual TLS',
    () => mutual,
    (): Record<string, string> => ({
      TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertFile,
      TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyFile,
    }),
  ],
])('a contained run over %s', (mode, terminator, extraEnv) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      temporalAddress: terminator().address,
      env: { TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caFile, ...extraEnv() },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('the real ingress, worker and client reach Temporal only through the terminator', async () => {
    expect(h.config.temporal.address).toBe(terminator().address);
    expect(h.config.temporal.connection.tls).toBe(mode === 'mutual TLS' ? 'mtls' : 'tls');
    const { role, password } = await h.owned.createRole();
    const res = await h.post({
      scanner: 'ci-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
      severity: 'critical',
    });
    expect(res.status).toBe(202);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    const audit = await h.db.query('SELECT outcome FROM killswitch_audit WHERE workflow_id = $1', [
      res.json.workflowId,
    ]);
    expect(audit.rows).toEqual([{ outcome: 'contained' }]);
    if (mode === 'mutual TLS') {
      // The client's and the worker's connections both showed the client certificate.
      expect(mutual.clients.length).toBeGreaterThanOrEqual(2);
      expect(new Set(mutual.clients)).toEqual(new Set(['kill-switch-test-client']));
    }
    const keyBody = readFileSync(pki.clientKeyFile, 'utf8').split('\n')[1]!;
    expect(capturedLogs.join('')).not.toContain(keyBody);
  });
});

describe('refusals say what to set', () => {
  it('TLS without the private CA pinned: the server is not trusted', async () => {
    const conn = connectionFor({ TEMPORAL_ADDRESS: tlsOnly.address, TEMPORAL_TLS: 'true' });
    expect(conn.serverCa).toBe('system');
    const { client, worker } = await tryConnect(conn);
    for (const err of [client, worker]) {
      expect(err?.message).toMatch(
        /^cannot connect to Temporal at 127\.0\.0\.1:\d+ \(namespace default; TLS tls, server CA system/,
      );
      expect(err?.message).toContain('TEMPORAL_TLS_SERVER_CA_CERT_PATH');
    }
  });

  it('mutual TLS: no client certificate, or one of another CA, is refused at the handshake', async () => {
    const before = mutual.refused.length;
    const noCert = connectionFor({
      TEMPORAL_ADDRESS: mutual.address,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caFile,
    });
    const bare = await tryConnect(noCert);
    for (const err of [bare.client, bare.worker]) {
      expect(err).not.toBeNull();
      expect(err!.message).toContain('TEMPORAL_TLS_CLIENT_CERT_PATH');
    }
    const stranger = connectionFor({
      TEMPORAL_ADDRESS: mutual.address,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caFile,
      TEMPORAL_TLS_CLIENT_CERT_PATH: pki.strangerCertFile,
      TEMPORAL_TLS_CLIENT_KEY_PATH: pki.strangerKeyFile,
    });
    const other = await tryConnect(stranger);
    expect(other.client).not.toBeNull();
    expect(other.worker).not.toBeNull();
    expect(mutual.refused.length).toBeGreaterThan(before);
    expect(mutual.clients).not.toContain('kill-switch-test-stranger');
  });
});

describe('API keys (Temporal Cloud)', () => {
  it('travel as authorization: Bearer from the client and from the worker, over TLS only', async () => {
    const apiKey = `ks-test-api-key-${rand()}${rand()}`;
    const conn = connectionFor({
      TEMPORAL_ADDRESS: proxy.address,
      TEMPORAL_API_KEY: apiKey,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caFile,
    });
    expect(conn).toMatchObject({ tls: 'tls', apiKey: 'set' });
    const before = proxy.calls.length;
    const { client, worker } = await tryConnect(conn);
    expect(client).toBeNull();
    expect(worker).toBeNull();
    const calls = proxy.calls.slice(before);
    const agents = [...new Set(calls.map((c) => c.userAgent.split('/')[0]))];
    // grpc-js for the client; the worker's Core (Rust, tonic) for the native connection.
    expect(calls.some((c) => c.userAgent.startsWith('grpc-node-js'))).toBe(true);
    expect(agents.length).toBeGreaterThanOrEqual(2);
    for (const c of calls) expect(c.authorization, `${c.path} by ${c.userAgent}`).toBe(`Bearer ${apiKey}`);
    expect(capturedLogs.join('')).not.toContain(apiKey);
  });
});

describe('profiles', () => {
  it('a profile file selects the address, namespace and TLS; the worker and client connect with it', async () => {
    const file = path.join(dir, 'temporal.toml');
    writeFileSync(
      file,
      [
        '[profile.default]',
        'address = "127.0.0.1:1"',
        '',
        '[profile.behind-tls]',
        `address = "${mutual.address}"`,
        'namespace = "default"',
        '[profile.behind-tls.tls]',
        `server_ca_cert_path = "${pki.caFile}"`,
        `client_cert_path = "${pki.clientCertFile}"`,
        `client_key_path = "${pki.clientKeyFile}"`,
        '',
      ].join('\n'),
    );
    const conn = connectionFor({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'behind-tls' });
    expect(conn).toMatchObject({
      address: mutual.address,
      namespace: 'default',
      tls: 'mtls',
      profile: 'behind-tls',
    });
    const { client, worker } = await tryConnect(conn);
    expect(client).toBeNull();
    expect(worker).toBeNull();
  });
});

/**
 * TLS in front of the Temporal dev server, which serves plain gRPC only: a throwaway PKI (a CA made
 * with tools/self-signed-cert.ts, a server and a client certificate it signs) and two terminators
 * on loopback, as a load balancer or ingress would stand in front of a cluster.
 *
 * - `startTlsTerminator`: a Node `tls` server (ALPN h2) piping each connection to the dev server's
 *   port; with `clientCa` it requires a client certificate and verifies it (mutual TLS).
 * - `startGrpcTlsProxy`: an HTTP/2 server over TLS forwarding each gRPC call to the dev server, so
 *   the request headers (`authorization`, `user-agent`) can be observed.
 *
 * Rustls (the worker's Core) refuses a self-signed certificate that is also a CA as a server
 * certificate, so the server certificate is a leaf signed by the CA, as in any real deployment.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { selfSignedCert } from '../../tools/self-signed-cert';

export interface Pki {
  caFile: string;
  caPem: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** A client certificate of another CA (the terminator must refuse it). */
  strangerCertFile: string;
  strangerKeyFile: string;
}

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.error) throw new Error(`openssl not runnable: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr.trim().slice(0, 300)}`);
}

/** A leaf certificate signed by `ca`, with the given extensions. */
function leaf(dir: string, name: string, ca: { certFile: string; keyFile: string }, ext: string[]) {
  const keyFile = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const certFile = path.join(dir, `${name}.crt`);
  const extFile = path.join(dir, `${name}.ext`);
  writeFileSync(extFile, `${ext.join('\n')}\n`);
  openssl([
    'req',
    '-new',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=kill-switch-test-${name}`,
    '-keyout',
    keyFile,
    '-out',
    csr,
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.certFile,
    '-CAkey',
    ca.keyFile,
    '-CAcreateserial',
    '-days',
    '2',
    '-sha256',
    '-extfile',
    extFile,
    '-out',
    certFile,
  ]);
  return { certFile, keyFile };
}

export function makePki(dir: string): Pki {
  const ca = selfSignedCert(dir, 'ca');
  const server = leaf(dir, 'server', ca, [
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  const client = leaf(dir, 'client', ca, [
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ]);
  const otherCa = selfSignedCert(path.join(dir, 'other'), 'ca');
  const stranger = leaf(path.join(dir, 'other'), 'stranger', otherCa, [
    'basicConstraints=CA:FALSE',
    'keyUsage=digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ]);
  return {
    caFile: ca.certFile,
    caPem: ca.certPem,
    serverCertFile: server.certFile,
    serverKeyFile: server.keyFile,
    clientCertFile: client.certFile,
    clientKeyFile: client.keyFile,
    strangerCertFile: stranger.certFile,
    strangerKeyFile: stranger.keyFile,
  };
}

export interface TlsTerminator {
  /** host:port to give TEMPORAL_ADDRESS. */
  address: string;
  /** Subjects (CN) of the client certificates of the connections let through. */
  clients: string[];
  /** Handshakes refused (e.g. no client certificate, or one of another CA). */
  refused: string[];
  close(): Promise<void>;
}

function splitHostPort(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
}

export async function startTlsTerminator(opts: {
  upstream: string;
  pki: Pki;
  /** Require a client certificate signed by this CA (PEM). */
  clientCa?: string;
}): Promise<TlsTerminator> {
  const up = splitHostPort(opts.upstream);
  const clients: string[] = [];
  const refused: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(
    {
      cert: readFileSync(opts.pki.serverCertFile),
      key: readFileSync(opts.pki.serverKeyFile),
      ALPNProtocols: ['h2'],
      ...(opts.clientCa ? { requestCert: true, rejectUnauthorized: true, ca: opts.clientCa } : {}),
    },
    (socket) => {
      if (opts.clientCa) clients.push(String(socket.getPeerCertificate().subject?.CN));
      const upstream = net.connect(up.port, up.host);
      sockets.add(socket);
      sockets.add(upstream);
      const drop = () => {
        socket.destroy();
        upstream.destroy();
        sockets.delete(socket);
        sockets.delete(upstream);
      };
      socket.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      socket.pipe(upstream).pipe(socket);
    },
  );
  server.on('tlsClientError', (err, socket) => {
    refused.push(err.message);
    socket.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    clients,
    refused,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface ObservedCall {
  path: string;
  userAgent: string;
  authorization: string | undefined;
}

export interface GrpcTlsProxy {
  address: string;
  calls: ObservedCall[];
  close(): Promise<void>;
}

/** An HTTP/2-over-TLS proxy to the dev server that records each gRPC call's headers. */
export async function startGrpcTlsProxy(opts: { upstream: string; pki: Pki }): Promise<GrpcTlsProxy> {
  const calls: ObservedCall[] = [];
  const upstream = http2.connect(`http://${opts.upstream}`);
  upstream.on('error', () => undefined);
  const server = http2.createSecureServer({
    cert: readFileSync(opts.pki.serverCertFile),
    key: readFileSync(opts.pki.serverKeyFile),
  });
  server.on('stream', (stream, headers) => {
    calls.push({
      path: String(headers[':path']),
      userAgent: String(headers['user-agent'] ?? ''),
      authorization: headers.authorization as string | undefined,
    });
    const forward: http2.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(headers))
      if (!k.startsWith(':') || k === ':method' || k === ':path') forward[k] = v;
    const req = upstream.request(forward);
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on('response', (h, flags) => {
      const out: http2.OutgoingHttpHeaders = { ...h };
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) {
        stream.respond(out, { endStream: true });
        return;
      }
      stream.respond(out, { waitForTrailers: true });
      req.pipe(stream);
    });
    req.on('trailers', (t) => (trailers = t));
    stream.on('wantTrailers', () => {
      const t: http2.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(trailers ?? { 'grpc-status': '0' }))
        if (!k.startsWith(':')) t[k] = v;
      stream.sendTrailers(t);
    });
    stream.pipe(req);
    stream.on('close', () => req.close());
    stream.on('error', () => req.close());
    req.on('error', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    calls,
    async close() {
      for (const s of sessions) s.destroy();
      upstream.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

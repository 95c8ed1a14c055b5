/**
 * The payload codec and its HTTP endpoint for the Temporal UI: AES-256-GCM with key ids and
 * rotation, the configuration that selects the keys, and /codec/{encode,decode} over a real
 * listening ingress (token, namespace, CORS for the UI's origin, problem+json for bad input).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLocalUiGateway,
  LOGIN_PATH,
  UI_SESSION_COOKIE,
  uiSessionValue,
  type LocalUiGateway,
} from '../../api/local-ui';
import { createIngressApp } from '../../api/server';
import {
  CodecError,
  codecFromConfig,
  EncryptionCodec,
  ENCRYPTED_ENCODING,
  KEY_ID_METADATA,
} from '../../lib/codec';
import { ConfigError, loadConfig } from '../../lib/config';
import { createEvidenceStore } from '../../store/evidence';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { freePort } from '../../tools/temporal-dev';
import { startHarness, testLogger, type Harness } from '../helpers/harness';

type JoseKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
const key = () => randomBytes(32);
const k1 = { id: 'k1', key: key() };
const k2 = { id: 'k2', key: key() };
const detection = {
  credentialType: 'postgres_password',
  credentialRef: { role: 'app_reporting' },
  location: { repository: 'acme/payments' },
};
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');
/** The error `fn` throws; fails the test when it throws nothing. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw, got none');
}
const wire = (p: Payload) => ({
  metadata: Object.fromEntries(
    Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v!).toString('base64')]),
  ),
  ...(p.data ? { data: Buffer.from(p.data).toString('base64') } : {}),
});

describe('EncryptionCodec', () => {
  it('encrypts the whole payload under the active key and names the key in the metadata', async () => {
    const plain = defaultPayloadConverter.toPayload(detection);
    const [enc] = await new EncryptionCodec([k2, k1]).encode([plain]);
    expect(text(enc!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(text(enc!.metadata![KEY_ID_METADATA])).toBe('k2');
    expect(Object.keys(enc!.metadata!).sort()).toEqual(['encoding', KEY_ID_METADATA]);
    for (const needle of ['app_reporting', 'acme/payments', 'json/plain'])
      expect(text(enc!.data).includes(needle)).toBe(false);
    const [dec] = await new EncryptionCodec([k2, k1]).decode([enc!]);
    expect(defaultPayloadConverter.fromPayload(dec!)).toEqual(detection);
    expect(text(dec!.metadata!.encoding)).toBe('json/plain');
  });

  it('rotates: what k1 sealed decodes once k2 is active, and not without k1', async () => {
    const [old] = await new EncryptionCodec([k1]).encode([defaultPayloadConverter.toPayload(detection)]);
    const rotated = new EncryptionCodec([k2, k1]);
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([old!]))[0]!)).toEqual(detection);
    const [fresh] = await rotated.encode([defaultPayloadConverter.toPayload('new')]);
    expect(text(fresh!.metadata![KEY_ID_METADATA])).toBe('k2');
    const k2Only = new EncryptionCodec([k2]);
    await expect(k2Only.decode([old!])).rejects.toBeInstanceOf(CodecError);
    await expect(k2Only.decode([old!])).rejects.toThrow('key id "k1", which is not configured');
  });

  it('refuses a sealed payload whose key id was swapped or whose bytes were changed', async () => {
    const both = new EncryptionCodec([k1, { id: 'k1b', key: k1.key }]);
    const [enc] = await both.encode([defaultPayloadConverter.toPayload(detection)]);
    const swapped = { ...enc!, metadata: { ...enc!.metadata, [KEY_ID_METADATA]: Buffer.from('k1b') } };
    await expect(both.decode([swapped])).rejects.toThrow('failed authentication');
    const flipped = Buffer.from(enc!.data!);
    flipped[flipped.length - 1]! ^= 1;
    await expect(both.decode([{ ...enc!, data: flipped }])).rejects.toThrow('failed authentication');
  });

  it('passes payloads it did not encrypt through unchanged', async () => {
    const plain = defaultPayloadConverter.toPayload({ a: 1 });
    expect(await new EncryptionCodec([k1]).decode([plain])).toEqual([plain]);
  });
});

describe('codec configuration', () => {
  const b64 = (k: Buffer) => k.toString('base64');

  it('parses KILLSWITCH_CODEC_KEYS: the first key encodes, all decode', () => {
    const config = loadConfig({ KILLSWITCH_CODEC_KEYS: `k2:${b64(k2.key)}, k1:${b64(k1.key)}` });
    expect(config.codec.keys!.map((k) => k.id)).toEqual(['k2', 'k1']);
    expect(codecFromConfig(config, createServerKeys(newServerKey())).activeKeyId).toBe('k2');
  });

  it.each([
    ['k1', /KILLSWITCH_CODEC_KEYS: entry 1: expected <id>:<base64 key>/],
    [`k1:${b64(randomBytes(16))}`, /KILLSWITCH_CODEC_KEYS: key k1: must be 32 bytes/],
    ['k1:not*base64', /KILLSWITCH_CODEC_KEYS: key k1: not base64/],
    [`k1:${b64(k1.key)},k1:${b64(k2.key)}`, /KILLSWITCH_CODEC_KEYS: entry 2: key id k1 appears twice/],
  ])('refuses %s naming the variable', (value, message) => {
    expect(() => loadConfig({ KILLSWITCH_CODEC_KEYS: value })).toThrow(message);
  });

  it('never echoes key material in its errors', () => {
    const secretish = b64(randomBytes(20));
    const err = thrown(() => loadConfig({ KILLSWITCH_CODEC_KEYS: `k1:${secretish}` }));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/KILLSWITCH_CODEC_KEYS: key k1: must be 32 bytes/);
    expect(err.message).not.toContain(secretish);
  });

  it('derives one key from the server key when unset: stable id, same key in every process', async () => {
    const serverKey = newServerKey();
    const a = codecFromConfig(loadConfig({}), createServerKeys(serverKey));
    const b = codecFromConfig(loadConfig({}), createServerKeys(serverKey));
    const other = codecFromConfig(loadConfig({}), createServerKeys(newServerKey()));
    expect(a.activeKeyId).toMatch(/^sk-[0-9a-f]{12}$/);
    expect(b.activeKeyId).toBe(a.activeKeyId);
    expect(other.activeKeyId).not.toBe(a.activeKeyId);
    const [enc] = await a.encode([defaultPayloadConverter.toPayload(detection)]);
    expect(defaultPayloadConverter.fromPayload((await b.decode([enc!]))[0]!)).toEqual(detection);
    await expect(other.decode([enc!])).rejects.toBeInstanceOf(CodecError);
  });

  it('validates TEMPORAL_UI_ORIGIN and CODEC_TOKENS, defaulting the origin to the UI URL', () => {
    // One origin by default: the loopback address npm start's UI gateway listens on.
    expect(loadConfig({}).temporal).toMatchObject({
      uiUrl: 'http://127.0.0.1:8233',
      uiOrigin: 'http://127.0.0.1:8233',
    });
    expect(loadConfig({ TEMPORAL_DEV_UI_PORT: '9233' }).temporal).toMatchObject({
      uiUrl: 'http://127.0.0.1:9233',
      uiOrigin: 'http://127.0.0.1:9233',
    });
    expect(loadConfig({ TEMPORAL_UI_URL: '' }).temporal.uiUrl).toBe('http://127.0.0.1:8233');
    expect(loadConfig({ TEMPORAL_UI_URL: 'https://temporal.acme.io/ui' }).temporal.uiOrigin).toBe(
      'https://temporal.acme.io',
    );
    expect(loadConfig({ TEMPORAL_UI_ORIGIN: 'https://temporal.acme.io' }).temporal.uiOrigin).toBe(
      'https://temporal.acme.io',
    );
    expect(() => loadConfig({ TEMPORAL_UI_ORIGIN: 'https://temporal.acme.io/ui' })).toThrow(
      /TEMPORAL_UI_ORIGIN: must be an origin only/,
    );
    expect(() => loadConfig({ CODEC_TOKENS: 'too-short' })).toThrow(
      /CODEC_TOKENS\[0\]: each codec token must be at least 24 characters/,
    );
  });
});

describe('codec endpoint', () => {
  let h: Harness;
  const UI = 'http://127.0.0.1:8233';
  const samples = [
    defaultPayloadConverter.toPayload(detection),
    defaultPayloadConverter.toPayload('escalated: permission denied'),
  ];

  beforeAll(async () => {
    h = await startHarness({ worker: false });
  });
  afterAll(async () => {
    await h?.close();
  });

  const call = (
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: string } = {},
    base = h.baseUrl,
  ) =>
    fetch(`${base}${path}`, {
      method: init.method ?? 'POST',
      headers: init.headers ?? {},
      ...(init.body !== undefined ? { body: init.body } : {}),
    });
  const authed = (extra: Record<string, string> = {}) => ({
    'content-type': 'application/json',
    authorization: `Bearer ${h.codecToken}`,
    'x-namespace': 'default',
    origin: UI,
    ...extra,
  });

  it('decodes for the UI with a valid token and the right namespace, with CORS for the UI origin', async () => {
    const encoded = await h.codec.encode(samples);
    const res = await call('/codec/decode', {
      headers: authed(),
      body: JSON.stringify({ payloads: encoded.map(wire) }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const body = (await res.json()) as {
      payloads: Array<{ metadata: Record<string, string>; data: string }>;
    };
    expect(body.payloads).toEqual(samples.map(wire));
    expect(Buffer.from(body.payloads[0]!.data, 'base64').toString()).toContain('app_reporting');
  });

  it('encodes with the active key, and what it encodes decodes back', async () => {
    const res = await call('/codec/encode', {
      headers: authed(),
      body: JSON.stringify({ payloads: samples.map(wire) }),
    });
    expect(res.status).toBe(200);
    const { payloads } = (await res.json()) as {
      payloads: Array<{ metadata: Record<string, string>; data: string }>;
    };
    expect(payloads.map((p) => Buffer.from(p.metadata[KEY_ID_METADATA]!, 'base64').toString())).toEqual([
      h.codec.activeKeyId,
      h.codec.activeKeyId,
    ]);
    expect(payloads.map((p) => Buffer.from(p.metadata.encoding!, 'base64').toString())).toEqual([
      ENCRYPTED_ENCODING,
      ENCRYPTED_ENCODING,
    ]);
    const back = await call('/codec/decode', { headers: authed(), body: JSON.stringify({ payloads }) });
    expect(((await back.json()) as { payloads: unknown }).payloads).toEqual(samples.map(wire));
  });

  it('refuses without a valid token: 401 problem+json, nothing decoded', async () => {
    const body = JSON.stringify({ payloads: (await h.codec.encode(samples)).map(wire) });
    for (const authorization of [
      undefined,
      'Bearer wrong-token-wrong-token-wrong',
      `Basic ${h.codecToken}`,
      `Bearer ${h.codecToken}x`,
    ]) {
      const headers = authed();
      if (authorization) headers.authorization = authorization;
      else delete (headers as Record<string, string | undefined>).authorization;
      const res = await call('/codec/decode', { headers, body });
      expect(res.status, authorization).toBe(401);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const text = await res.text();
      expect(text).toContain('urn:secret-kill-switch:problem:unauthorized');
      expect(text).not.toContain('app_reporting');
    }
  });

  it('serves only its namespace: 403 for another or a missing X-Namespace', async () => {
    const body = JSON.stringify({ payloads: (await h.codec.encode(samples)).map(wire) });
    const other = await call('/codec/decode', { headers: authed({ 'x-namespace': 'payments' }), body });
    expect(other.status).toBe(403);
    expect(await other.text()).toContain('wrong-namespace');
    const headers = authed();
    delete (headers as Record<string, string | undefined>)['x-namespace'];
    expect((await call('/codec/decode', { headers, body })).status).toBe(403);
  });

  it('answers the preflight of the UI origin, and not of another origin', async () => {
    const ok = await call('/codec/decode', {
      method: 'OPTIONS',
      headers: {
        origin: UI,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,x-namespace',
      },
    });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe(UI);
    expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
    expect(ok.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = ok.headers.get('access-control-allow-headers')!.toLowerCase().split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(['x-namespace', 'authorization', 'content-type']));
    expect(ok.headers.get('vary')).toMatch(/Origin/);

    const evil = await call('/codec/decode', {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(evil.status).toBe(403);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    // A page of another origin does not get decoded payloads even with a stolen token.
    const stolen = await call('/codec/decode', {
      headers: authed({ origin: 'https://evil.example' }),
      body: JSON.stringify({ payloads: [] }),
    });
    expect(stolen.status).toBe(403);
    expect(stolen.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers malformed bodies with 400 and wrong shapes or undecodable payloads with 422', async () => {
    const malformed = await call('/codec/decode', { headers: authed(), body: '{"payloads": [' });
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    for (const body of [
      {},
      { payloads: 'x' },
      { payloads: [{ metadata: { encoding: 'not base64!' } }] },
      { payloads: [{ data: 42 }] },
    ]) {
      const res = await call('/codec/decode', { headers: authed(), body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(((await res.json()) as { errors: unknown[] }).errors.length).toBeGreaterThan(0);
    }
    const [foreign] = await new EncryptionCodec([{ id: 'retired', key: key() }]).encode(samples.slice(0, 1));
    const unknown = await call('/codec/decode', {
      headers: authed(),
      body: JSON.stringify({ payloads: [wire(foreign!)] }),
    });
    expect(unknown.status).toBe(422);
    expect(((await unknown.json()) as { detail: string }).detail).toContain('key id "retired"');
    expect(
      (await call('/codec/decode', { headers: authed({ 'content-type': 'text/plain' }), body: '{}' })).status,
    ).toBe(415);
  });

  it('without CODEC_TOKENS nobody decodes: the UI origin from loopback is no credential', async () => {
    const config = loadConfig({
      TEMPORAL_ADDRESS: h.config.temporal.address,
      DATABASE_URL: h.config.databaseUrl,
      KILLSWITCH_SERVER_KEY: newServerKey(),
    });
    const keys = createServerKeys(config.serverKey!);
    const codec = codecFromConfig(config, keys);
    const app = createIngressApp(config, {
      logger: testLogger,
      client: h.client,
      keys,
      db: h.db,
      evidence: createEvidenceStore(h.db, keys, 24),
      genericSecrets: h.config.webhook.genericSecrets!,
      inventory: h.inventory,
      env: {},
      codec,
    });
    const server = http.createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const body = JSON.stringify({ payloads: (await codec.encode(samples)).map(wire) });
      for (const origin of [config.temporal.uiOrigin, undefined]) {
        const res = await call(
          '/codec/decode',
          {
            headers: {
              'content-type': 'application/json',
              'x-namespace': 'default',
              ...(origin ? { origin } : {}),
            },
            body,
          },
          base,
        );
        expect(res.status, origin).toBe(401);
        expect(await res.text()).not.toContain('app_reporting');
      }
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe("local UI gateway (npm start's Temporal UI and its codec on one origin)", () => {
  // The Temporal dev server's UI is the upstream; this loopback server stands in for it so the
  // gateway's pass-through can be checked byte for byte (npm-start.e2e drives the real one).
  let upstream: http.Server;
  let gateway: LocalUiGateway;
  let origin: string;
  const seen: Array<{ url: string; cookie: string | undefined; host: string | undefined }> = [];
  const codec = new EncryptionCodec([k1]);
  const token = randomBytes(32).toString('base64url');
  const samples = [defaultPayloadConverter.toPayload(detection)];

  beforeAll(async () => {
    upstream = http.createServer((req, res) => {
      seen.push({ url: req.url!, cookie: req.headers.cookie, host: req.headers.host });
      if (req.url === '/stream') {
        // A server-sent event stream that stays open: the first event must arrive at once.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: first\n\n');
        return;
      }
      res
        .writeHead(200, { 'content-type': 'application/json', 'set-cookie': '_csrf=abc; Path=/' })
        .end(JSON.stringify({ Codec: { Endpoint: `${origin}/codec` } }));
    });
    upstream.on('upgrade', (req, socket) => {
      seen.push({ url: req.url!, cookie: req.headers.cookie, host: req.headers.host });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (d: Buffer) => socket.write(`echo:${d.toString()}`));
      socket.on('end', () => socket.end());
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = await freePort();
    origin = `http://127.0.0.1:${port}`;
    gateway = createLocalUiGateway({
      origin,
      upstream: { host: '127.0.0.1', port: (upstream.address() as AddressInfo).port },
      token,
      codec: { codec, namespace: 'default', tokens: [token] },
      logger: testLogger,
    });
    await gateway.listen(port, '127.0.0.1');
  });
  afterAll(async () => {
    await gateway?.close();
    upstream?.closeAllConnections();
    await new Promise<void>((r) => upstream?.close(() => r()));
  });

  const decode = async (headers: Record<string, string>) =>
    fetch(`${origin}/codec/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
      body: JSON.stringify({ payloads: (await codec.encode(samples)).map(wire) }),
    });
  const login = (t: string) =>
    fetch(`${origin}${LOGIN_PATH}?token=${encodeURIComponent(t)}`, { redirect: 'manual' });
  const sessionCookie = (res: Response) =>
    /^(killswitch_ui=[^;]+)/.exec(res.headers.get('set-cookie') ?? '')?.[1];

  it('refuses the codec without the session cookie or the token, whatever the Origin: 401', async () => {
    for (const origin_ of [origin, undefined]) {
      const res = await decode(origin_ ? { origin: origin_ } : {});
      expect(res.status, origin_).toBe(401);
      expect(await res.text()).not.toContain('app_reporting');
    }
    expect(
      (
        await decode({
          origin,
          cookie: `${UI_SESSION_COOKIE}=${uiSessionValue('another-token-another-token-123')}`,
        })
      ).status,
    ).toBe(401);
    expect((await decode({ origin, cookie: `${UI_SESSION_COOKIE}=${token}` })).status).toBe(401);
    expect((await decode({ origin: 'http://localhost:8233', authorization: `Bearer ${token}` })).status).toBe(
      403,
    );
  });

  it('logs a browser in with a one-time link: an HttpOnly, SameSite=Strict cookie that decodes; the link is then used up', async () => {
    const url = new URL(gateway.loginUrl());
    expect(url.origin).toBe(origin);
    expect(url.pathname).toBe(LOGIN_PATH);
    const code = url.searchParams.get('token')!;
    expect(code).not.toBe(token);

    const first = await login(code);
    expect(first.status).toBe(303);
    expect(first.headers.get('location')).toBe('/');
    expect(first.headers.get('set-cookie')).toBe(
      `${UI_SESSION_COOKIE}=${uiSessionValue(token)}; Path=/; HttpOnly; SameSite=Strict`,
    );
    const cookie = sessionCookie(first)!;

    const res = await decode({ origin, cookie: `_csrf=abc; ${cookie}` });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    const [p] = ((await res.json()) as { payloads: Array<{ data: string }> }).payloads;
    expect(JSON.parse(Buffer.from(p!.data, 'base64').toString())).toEqual(detection);

    const again = await login(code);
    expect(again.status).toBe(401);
    expect(again.headers.get('set-cookie')).toBeNull();
    expect(await again.text()).not.toContain(code);
    expect((await login('wrong')).status).toBe(401);
    expect((await login('')).status).toBe(401);
    // The token kept in the data folder logs in again (another browser, a lost cookie).
    expect(sessionCookie(await login(token))).toBe(cookie);
  });

  it('decodes for the local codec token as a bearer (the temporal CLI)', async () => {
    expect((await decode({ authorization: `Bearer ${token}` })).status).toBe(200);
  });

  it('passes the UI through, keeping its cookies but never handing it the session cookie', async () => {
    const res = await fetch(`${origin}/api/v1/settings?x=1`, {
      headers: { cookie: `_csrf=abc; ${UI_SESSION_COOKIE}=s3ss10n; theme=dark` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('set-cookie')).toBe('_csrf=abc; Path=/');
    expect(await res.json()).toEqual({ Codec: { Endpoint: `${origin}/codec` } });
    expect(seen.at(-1)).toEqual({
      url: '/api/v1/settings?x=1',
      cookie: '_csrf=abc; theme=dark',
      host: new URL(origin).host,
    });
    await fetch(`${origin}/namespaces`, { headers: { cookie: `${UI_SESSION_COOKIE}=s3ss10n` } });
    expect(seen.at(-1)).toEqual({ url: '/namespaces', cookie: undefined, host: new URL(origin).host });
  });

  it('streams an open event stream as it comes', async () => {
    const ac = new AbortController();
    const res = await fetch(`${origin}/stream`, { signal: ac.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const { value } = await res.body!.getReader().read();
    expect(Buffer.from(value!).toString()).toBe('data: first\n\n');
    ac.abort();
  });

  it('passes a WebSocket upgrade through, without the session cookie', async () => {
    const port = Number(new URL(origin).port);
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    const answered = new Promise<void>((resolve) =>
      sock.on('data', (d: Buffer) => {
        got += d.toString();
        if (got.includes('\r\n\r\n') && !got.includes('echo:')) sock.write('ping');
        if (got.includes('echo:ping')) resolve();
      }),
    );
    sock.write(
      `GET /ws HTTP/1.1\r\nHost: ${new URL(origin).host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nCookie: ${UI_SESSION_COOKIE}=s3ss10n; a=b\r\n\r\n`,
    );
    await answered;
    sock.destroy();
    expect(got).toMatch(/^HTTP\/1\.1 101 /);
    expect(seen.at(-1)).toEqual({ url: '/ws', cookie: 'a=b', host: new URL(origin).host });
  });

  it('keeps one origin: another host name is redirected to it (GET) or refused', async () => {
    const port = new URL(origin).port;
    const get = await fetch(`http://localhost:${port}/namespaces/default/workflows?x=1`, {
      redirect: 'manual',
    });
    expect(get.status).toBe(308);
    expect(get.headers.get('location')).toBe(`${origin}/namespaces/default/workflows?x=1`);
    const post = await fetch(`http://localhost:${port}/codec/decode`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'x-namespace': 'default',
      },
      body: '{"payloads":[]}',
    });
    expect(post.status).toBe(421);
  });
});

describe('codec endpoint with the UI forwarding the engineer access token (OIDC JWT)', () => {
  // The identity provider is a third party: a loopback JWKS server stands in for it.
  let idp: http.Server;
  let jwksUrl: string;
  let signingKey: JoseKey;
  let strangerKey: JoseKey;
  let h: Harness;
  const ISSUER = 'https://idp.example.com/';
  const AUDIENCE = 'temporal-ui';

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    signingKey = pair.privateKey;
    strangerKey = (await generateKeyPair('ES256')).privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
    idp = http.createServer((req, res) => {
      if (req.url !== '/.well-known/jwks.json') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
    jwksUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}/.well-known/jwks.json`;
    h = await startHarness({
      worker: false,
      env: { CODEC_JWT_JWKS_URL: jwksUrl, CODEC_JWT_ISSUER: ISSUER, CODEC_JWT_AUDIENCE: AUDIENCE },
    });
  });
  afterAll(async () => {
    await h?.close();
    await new Promise<void>((r) => idp?.close(() => r()));
  });

  const token = (opts: { key?: JoseKey; aud?: string; iss?: string; exp?: string } = {}) =>
    new SignJWT({ email: 'alice@example.com' })
      .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
      .setIssuer(opts.iss ?? ISSUER)
      .setAudience(opts.aud ?? AUDIENCE)
      .setSubject('alice')
      .setIssuedAt()
      .setExpirationTime(opts.exp ?? '5m')
      .sign(opts.key ?? signingKey);

  const decode = async (authorization: string) => {
    const body = JSON.stringify({
      payloads: (await h.codec.encode([defaultPayloadConverter.toPayload(detection)])).map(wire),
    });
    return fetch(`${h.baseUrl}/codec/decode`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-namespace': 'default',
        origin: h.config.temporal.uiOrigin,
        authorization,
      },
      body,
    });
  };

  it('decodes for a valid access token of the configured issuer and audience', async () => {
    const res = await decode(`Bearer ${await token()}`);
    expect(res.status).toBe(200);
    const [p] = ((await res.json()) as { payloads: Array<{ data: string }> }).payloads;
    expect(JSON.parse(Buffer.from(p!.data, 'base64').toString())).toEqual(detection);
  });

  it.each([
    ['another audience', () => token({ aud: 'someone-else' })],
    ['another issuer', () => token({ iss: 'https://evil.example.com/' })],
    ['an expired token', () => token({ exp: '-10m' })],
    ['a key the identity provider never published', () => token({ key: strangerKey })],
  ])('refuses %s with 401', async (_what, make) => {
    expect((await decode(`Bearer ${await make()}`)).status).toBe(401);
  });

  it('still accepts a CODEC_TOKENS bearer, and requires all three CODEC_JWT_* variables together', async () => {
    expect((await decode(`Bearer ${h.codecToken}`)).status).toBe(200);
    expect(() => loadConfig({ CODEC_JWT_JWKS_URL: jwksUrl })).toThrow(
      /CODEC_JWT_ISSUER: required when CODEC_JWT_JWKS_URL is set/,
    );
    expect(() =>
      loadConfig({ CODEC_JWT_JWKS_URL: 'ftp://x', CODEC_JWT_ISSUER: ISSUER, CODEC_JWT_AUDIENCE: AUDIENCE }),
    ).toThrow(/CODEC_JWT_JWKS_URL/);
  });
});

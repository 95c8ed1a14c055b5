/**
 * The payload codec and its HTTP endpoint for the Temporal UI: AES-256-GCM with key ids and
 * rotation, the configuration that selects the keys, and /codec/{encode,decode} over a real
 * listening ingress (token, namespace, CORS for the UI's origin, problem+json for bad input).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIngressApp } from '../../api/server';
import { CodecError, codecFromConfig, EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA } from '../../lib/codec';
import { loadConfig } from '../../lib/config';
import { createEvidenceStore } from '../../lib/evidence';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { startHarness, testLogger, type Harness } from '../helpers/harness';

type JoseKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
const key = () => randomBytes(32);
const k1 = { id: 'k1', key: key() };
const k2 = { id: 'k2', key: key() };
const detection = { credentialType: 'postgres_password', credentialRef: { role: 'app_reporting' }, location: { repository: 'acme/payments' } };
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');
const wire = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
  ...(p.data ? { data: Buffer.from(p.data).toString('base64') } : {}),
});

describe('EncryptionCodec', () => {
  it('encrypts the whole payload under the active key and names the key in the metadata', async () => {
    const plain = defaultPayloadConverter.toPayload(detection);
    const [enc] = await new EncryptionCodec([k2, k1]).encode([plain]);
    expect(text(enc!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(text(enc!.metadata![KEY_ID_METADATA])).toBe('k2');
    expect(Object.keys(enc!.metadata!).sort()).toEqual(['encoding', KEY_ID_METADATA]);
    for (const needle of ['app_reporting', 'acme/payments', 'json/plain']) expect(text(enc!.data).includes(needle)).toBe(false);
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
    try {
      loadConfig({ KILLSWITCH_CODEC_KEYS: `k1:${secretish}` });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain(secretish);
    }
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
    expect(loadConfig({}).temporal.uiOrigin).toBe('http://localhost:8233');
    expect(loadConfig({ TEMPORAL_UI_URL: 'https://temporal.acme.io/ui' }).temporal.uiOrigin).toBe('https://temporal.acme.io');
    expect(loadConfig({ TEMPORAL_UI_ORIGIN: 'https://temporal.acme.io' }).temporal.uiOrigin).toBe('https://temporal.acme.io');
    expect(() => loadConfig({ TEMPORAL_UI_ORIGIN: 'https://temporal.acme.io/ui' })).toThrow(/TEMPORAL_UI_ORIGIN: must be an origin only/);
    expect(() => loadConfig({ CODEC_TOKENS: 'too-short' })).toThrow(/CODEC_TOKENS\[0\]: each codec token must be at least 24 characters/);
  });
});

describe('codec endpoint', () => {
  let h: Harness;
  const UI = 'http://localhost:8233';
  const samples = [defaultPayloadConverter.toPayload(detection), defaultPayloadConverter.toPayload('escalated: permission denied')];

  beforeAll(async () => {
    h = await startHarness({ worker: false });
  });
  afterAll(async () => {
    await h?.close();
  });

  const call = (path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}, base = h.baseUrl) =>
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
    const res = await call('/codec/decode', { headers: authed(), body: JSON.stringify({ payloads: encoded.map(wire) }) });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const body = (await res.json()) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    expect(body.payloads).toEqual(samples.map(wire));
    expect(Buffer.from(body.payloads[0]!.data, 'base64').toString()).toContain('app_reporting');
  });

  it('encodes with the active key, and what it encodes decodes back', async () => {
    const res = await call('/codec/encode', { headers: authed(), body: JSON.stringify({ payloads: samples.map(wire) }) });
    expect(res.status).toBe(200);
    const { payloads } = (await res.json()) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    expect(payloads.map((p) => Buffer.from(p.metadata[KEY_ID_METADATA]!, 'base64').toString())).toEqual([h.codec.activeKeyId, h.codec.activeKeyId]);
    expect(payloads.map((p) => Buffer.from(p.metadata.encoding!, 'base64').toString())).toEqual([ENCRYPTED_ENCODING, ENCRYPTED_ENCODING]);
    const back = await call('/codec/decode', { headers: authed(), body: JSON.stringify({ payloads }) });
    expect(((await back.json()) as { payloads: unknown }).payloads).toEqual(samples.map(wire));
  });

  it('refuses without a valid token: 401 problem+json, nothing decoded', async () => {
    const body = JSON.stringify({ payloads: (await h.codec.encode(samples)).map(wire) });
    for (const authorization of [undefined, 'Bearer wrong-token-wrong-token-wrong', `Basic ${h.codecToken}`, `Bearer ${h.codecToken}x`]) {
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
      headers: { origin: UI, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type,x-namespace' },
    });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe(UI);
    expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
    expect(ok.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = ok.headers.get('access-control-allow-headers')!.toLowerCase().split(/,\s*/);
    expect(allowed).toEqual(expect.arrayContaining(['x-namespace', 'authorization', 'content-type']));
    expect(ok.headers.get('vary')).toMatch(/Origin/);

    const evil = await call('/codec/decode', { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(evil.status).toBe(403);
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    // A page of another origin does not get decoded payloads even with a stolen token.
    const stolen = await call('/codec/decode', { headers: authed({ origin: 'https://evil.example' }), body: JSON.stringify({ payloads: [] }) });
    expect(stolen.status).toBe(403);
    expect(stolen.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers malformed bodies with 400 and wrong shapes or undecodable payloads with 422', async () => {
    const malformed = await call('/codec/decode', { headers: authed(), body: '{"payloads": [' });
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    for (const body of [{}, { payloads: 'x' }, { payloads: [{ metadata: { encoding: 'not base64!' } }] }, { payloads: [{ data: 42 }] }]) {
      const res = await call('/codec/decode', { headers: authed(), body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body)).toBe(422);
      expect(((await res.json()) as { errors: unknown[] }).errors.length).toBeGreaterThan(0);
    }
    const [foreign] = await new EncryptionCodec([{ id: 'retired', key: key() }]).encode(samples.slice(0, 1));
    const unknown = await call('/codec/decode', { headers: authed(), body: JSON.stringify({ payloads: [wire(foreign!)] }) });
    expect(unknown.status).toBe(422);
    expect(((await unknown.json()) as { detail: string }).detail).toContain('key id "retired"');
    expect((await call('/codec/decode', { headers: authed({ 'content-type': 'text/plain' }), body: '{}' })).status).toBe(415);
  });

  it("npm start's local default: without CODEC_TOKENS, only the UI origin on loopback decodes", async () => {
    const config = loadConfig({ TEMPORAL_ADDRESS: h.config.temporal.address, DATABASE_URL: h.config.databaseUrl, KILLSWITCH_SERVER_KEY: newServerKey() });
    const keys = createServerKeys(config.serverKey!);
    const codec = codecFromConfig(config, keys);
    const build = (codecLocalUi: boolean) =>
      createIngressApp(config, {
        logger: testLogger,
        client: h.client,
        keys,
        db: h.db,
        evidence: createEvidenceStore(h.db, keys, 24),
        genericSecrets: h.config.webhook.genericSecrets!,
        inventory: h.inventory,
        env: {},
        codec,
        codecLocalUi,
      });
    const servers: http.Server[] = [];
    const listen = async (codecLocalUi: boolean) => {
      const server = http.createServer(build(codecLocalUi));
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    try {
      const local = await listen(true);
      const body = JSON.stringify({ payloads: (await codec.encode(samples)).map(wire) });
      const fromUi = await call('/codec/decode', { headers: { 'content-type': 'application/json', 'x-namespace': 'default', origin: UI }, body }, local);
      expect(fromUi.status).toBe(200);
      expect(((await fromUi.json()) as { payloads: unknown }).payloads).toEqual(samples.map(wire));
      // Not a browser at the UI (no Origin): a token is required.
      expect((await call('/codec/decode', { headers: { 'content-type': 'application/json', 'x-namespace': 'default' }, body }, local)).status).toBe(401);
      // The split ingress (codecLocalUi off) without tokens decodes for nobody.
      const split = await listen(false);
      expect((await call('/codec/decode', { headers: { 'content-type': 'application/json', 'x-namespace': 'default', origin: UI }, body }, split)).status).toBe(401);
    } finally {
      for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
    }
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
    h = await startHarness({ worker: false, env: { CODEC_JWT_JWKS_URL: jwksUrl, CODEC_JWT_ISSUER: ISSUER, CODEC_JWT_AUDIENCE: AUDIENCE } });
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
    const body = JSON.stringify({ payloads: (await h.codec.encode([defaultPayloadConverter.toPayload(detection)])).map(wire) });
    return fetch(`${h.baseUrl}/codec/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', origin: 'http://localhost:8233', authorization },
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
    expect(() => loadConfig({ CODEC_JWT_JWKS_URL: jwksUrl })).toThrow(/CODEC_JWT_ISSUER: required when CODEC_JWT_JWKS_URL is set/);
    expect(() => loadConfig({ CODEC_JWT_JWKS_URL: 'ftp://x', CODEC_JWT_ISSUER: ISSUER, CODEC_JWT_AUDIENCE: AUDIENCE })).toThrow(/CODEC_JWT_JWKS_URL/);
  });
});

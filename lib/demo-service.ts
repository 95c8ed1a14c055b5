/**
 * acme-demo: the demo owning system `npm start` runs on embedded defaults (no inventory file), so a
 * first run ends contained. A small HTTP service with API keys (`demo_<prefix>_<secret>`), sessions
 * opened with a key, and an admin API; the embedded inventory holds one `kind: http` system whose
 * recipes revoke the key, expire its sessions and prove it dead through this API, exactly as they
 * would for a homegrown service of your own (docs/systems/http.md).
 *
 *   GET    /api/whoami                         Bearer <api key> or Cookie demo_session=<session>:
 *                                              200 for a live key or session, 401 otherwise
 *   POST   /api/sessions                       Bearer <api key>: 201 { session } (a login)
 *   GET    /admin/keys/by-prefix/{prefix}      200 { key: { id, prefix, owner, revoked, sessions } } for a
 *                                              live key, 404 otherwise; ?include=revoked also a revoked one
 *   POST   /admin/keys { owner }               201 { id, prefix, secret }; the same Idempotency-Key, the same key
 *   DELETE /admin/keys/{id}                    204; 404 when no such live key
 *   GET    /admin/keys/{id}/sessions           200 { sessions: [{ id, createdAt }] } (ids only, never the values)
 *   POST   /admin/keys/{id}/sessions/revoke    200 { terminated }
 *
 * Admin calls need `Authorization: Bearer <admin token>`; the token is generated and kept in the
 * data folder like the other local secrets. Revoking a key leaves the sessions opened with it alive,
 * as in most real systems: that is why the kill switch expires them in a step of its own.
 *
 * The service listens on loopback only and keeps its state in memory. It stores no key or session
 * value, only their SHA-256; an issued key's secret is derived from a per-process secret and the
 * Idempotency-Key, so a retried issue returns the same key without keeping it.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from './logger';

/** The system's name in the embedded inventory and the `service` its detections carry. */
export const DEMO_SYSTEM = 'acme-demo';
/** The variable the inventory entry's recipes read the admin token from (set for npm start's process only). */
export const DEMO_ADMIN_TOKEN_ENV = 'KILLSWITCH_DEMO_ADMIN_TOKEN';
/** In the data folder: the admin token (0600) and where the running service answers. */
export const DEMO_ADMIN_TOKEN_FILE = 'demo-admin-token';
export const DEMO_URL_FILE = 'demo-service-url';

/** `demo_<12 hex>_<32 base64url>`: the prefix is public (it names the key), the rest is the secret. */
export const DEMO_KEY_RE = /^demo_([0-9a-f]{12})_([A-Za-z0-9_-]{32})$/;
const SESSION_COOKIE = 'demo_session';
const MAX_KEYS = 10_000;
const MAX_SESSIONS_PER_KEY = 100;
const MAX_BODY_BYTES = 16 * 1024;

export const newDemoAdminToken = () => `demoadm_${randomBytes(24).toString('base64url')}`;

interface KeyRecord {
  id: string;
  prefix: string;
  owner: string;
  hash: Buffer;
  createdAt: string;
  revokedAt?: string;
}

interface SessionRecord {
  id: string;
  keyId: string;
  createdAt: string;
}

export interface DemoService {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly adminToken: string;
  close(): Promise<void>;
}

const sha256 = (v: string) => createHash('sha256').update(v).digest();
const sameBytes = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

class Reply {
  constructor(
    readonly status: number,
    readonly body?: unknown,
  ) {}
}
const error = (status: number, message: string) => new Reply(status, { error: message });

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('end', () =>
      size > MAX_BODY_BYTES
        ? reject(error(413, `body over ${MAX_BODY_BYTES} bytes`))
        : resolve(Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', reject);
  });
}

function cookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

/** Starts the service on loopback (port 0: any free port). */
export async function startDemoService(opts: {
  adminToken: string;
  port?: number;
  logger?: Logger;
}): Promise<DemoService> {
  if (opts.adminToken.length < 24) throw new Error('the demo admin token must be at least 24 characters');
  const adminHash = sha256(opts.adminToken);
  /** Derives issued keys from the Idempotency-Key: a retried issue gets the same key back. */
  const issueSecret = randomBytes(32);
  const keys = new Map<string, KeyRecord>();
  const byPrefix = new Map<string, KeyRecord>();
  /** sha256(session value, hex) → session. */
  const sessions = new Map<string, SessionRecord>();
  const log = opts.logger?.child({ demo: DEMO_SYSTEM });

  const sessionsOf = (keyId: string) => [...sessions.entries()].filter(([, s]) => s.keyId === keyId);

  /** The live or revoked key whose full value is `presented`; undefined for anything else. */
  const keyOfValue = (presented: string): KeyRecord | undefined => {
    const m = DEMO_KEY_RE.exec(presented);
    if (!m) return undefined;
    const k = byPrefix.get(m[1]!);
    return k && sameBytes(k.hash, sha256(presented)) ? k : undefined;
  };
  const bearer = (req: http.IncomingMessage) => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    return m?.[1];
  };

  const create = (owner: string, idempotencyKey: string | undefined): { k: KeyRecord; value: string } => {
    const material = idempotencyKey
      ? createHmac('sha256', issueSecret).update(idempotencyKey).digest()
      : randomBytes(32);
    const prefix = material.subarray(0, 6).toString('hex');
    const value = `demo_${prefix}_${material.subarray(6, 30).toString('base64url')}`;
    const existing = byPrefix.get(prefix);
    if (existing) return { k: existing, value };
    if (keys.size >= MAX_KEYS) throw error(507, `the demo service holds at most ${MAX_KEYS} keys`);
    const k: KeyRecord = {
      id: `key_${randomBytes(6).toString('hex')}`,
      prefix,
      owner,
      hash: sha256(value),
      createdAt: new Date().toISOString(),
    };
    keys.set(k.id, k);
    byPrefix.set(prefix, k);
    return { k, value };
  };

  async function route(req: http.IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://demo.local');
    const p = url.pathname;
    const method = req.method ?? 'GET';

    if (p === '/api/whoami' && method === 'GET') {
      const presented = bearer(req);
      if (presented) {
        const k = keyOfValue(presented);
        return k && !k.revokedAt
          ? new Reply(200, { key: k.id, owner: k.owner, via: 'api_key' })
          : error(401, 'invalid api key');
      }
      const sid = cookie(req.headers.cookie, SESSION_COOKIE);
      const s = sid ? sessions.get(sha256(sid).toString('hex')) : undefined;
      return s
        ? new Reply(200, { key: s.keyId, owner: keys.get(s.keyId)?.owner, via: 'session' })
        : error(401, 'no valid api key or session');
    }
    if (p === '/api/sessions' && method === 'POST') {
      const k = keyOfValue(bearer(req) ?? '');
      if (!k || k.revokedAt) return error(401, 'invalid api key');
      if (sessionsOf(k.id).length >= MAX_SESSIONS_PER_KEY)
        return error(429, `at most ${MAX_SESSIONS_PER_KEY} sessions per key`);
      const value = randomBytes(24).toString('base64url');
      const hash = sha256(value).toString('hex');
      sessions.set(hash, {
        id: `sess_${hash.slice(0, 12)}`,
        keyId: k.id,
        createdAt: new Date().toISOString(),
      });
      return new Reply(201, { session: value, cookie: SESSION_COOKIE });
    }

    if (!p.startsWith('/admin/')) return error(404, 'no such route');
    if (!sameBytes(sha256(bearer(req) ?? ''), adminHash)) return error(401, 'admin token required');

    let m: RegExpExecArray | null;
    if ((m = /^\/admin\/keys\/by-prefix\/([^/]+)$/.exec(p)) && method === 'GET') {
      const k = byPrefix.get(decodeURIComponent(m[1]!));
      if (!k || (k.revokedAt && url.searchParams.get('include') !== 'revoked'))
        return error(404, 'no such key');
      return new Reply(200, {
        key: {
          id: k.id,
          prefix: k.prefix,
          owner: k.owner,
          revoked: !!k.revokedAt,
          sessions: sessionsOf(k.id).length,
        },
      });
    }
    if (p === '/admin/keys' && method === 'POST') {
      let doc: { owner?: unknown };
      try {
        doc = JSON.parse(await readBody(req)) as { owner?: unknown };
      } catch (err) {
        if (err instanceof Reply) return err;
        return error(400, 'a JSON body is required');
      }
      if (typeof doc?.owner !== 'string' || !/^[^\p{Cc}]{1,100}$/u.test(doc.owner))
        return error(422, 'owner: 1 to 100 printable characters');
      const idem = req.headers['idempotency-key'];
      if (idem !== undefined && (typeof idem !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(idem)))
        return error(422, 'Idempotency-Key: 1 to 200 printable ASCII characters');
      const { k, value } = create(doc.owner, idem);
      log?.info({ prefix: k.prefix, owner: k.owner }, 'demo service: API key issued');
      return new Reply(201, { id: k.id, prefix: k.prefix, secret: value });
    }
    if ((m = /^\/admin\/keys\/([^/]+)$/.exec(p)) && method === 'DELETE') {
      const k = keys.get(decodeURIComponent(m[1]!));
      if (!k || k.revokedAt) return error(404, 'no such key');
      k.revokedAt = new Date().toISOString();
      log?.info({ prefix: k.prefix }, 'demo service: API key revoked');
      return new Reply(204);
    }
    if ((m = /^\/admin\/keys\/([^/]+)\/sessions$/.exec(p)) && method === 'GET') {
      const k = keys.get(decodeURIComponent(m[1]!));
      if (!k) return error(404, 'no such key');
      return new Reply(200, {
        sessions: sessionsOf(k.id).map(([, s]) => ({ id: s.id, createdAt: s.createdAt })),
      });
    }
    if ((m = /^\/admin\/keys\/([^/]+)\/sessions\/revoke$/.exec(p)) && method === 'POST') {
      const k = keys.get(decodeURIComponent(m[1]!));
      if (!k) return error(404, 'no such key');
      const own = sessionsOf(k.id);
      for (const [hash] of own) sessions.delete(hash);
      log?.info({ prefix: k.prefix, terminated: own.length }, 'demo service: sessions expired');
      return new Reply(200, { terminated: own.length });
    }
    return error(405, 'method not allowed');
  }

  const server = http.createServer((req, res) => {
    route(req)
      .catch((err: unknown) => (err instanceof Reply ? err : error(500, 'internal error')))
      .then((r) => {
        res.writeHead(r.status, {
          'cache-control': 'no-store',
          ...(r.body !== undefined ? { 'content-type': 'application/json' } : {}),
        });
        res.end(r.body !== undefined ? JSON.stringify(r.body) : undefined);
      })
      .catch(() => res.destroy());
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    adminToken: opts.adminToken,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The embedded inventory's entry for the demo service: a plain `kind: http` system, validated by
 * parseInventory like any other. Detections route to it by `credentialRef.service`.
 */
export function demoSystemEntry(baseUrl: string): Record<string, unknown> {
  const auth = { Authorization: `Bearer {{env.${DEMO_ADMIN_TOKEN_ENV}}}` };
  return {
    name: DEMO_SYSTEM,
    kind: 'http',
    description: 'The demo service npm start runs on embedded defaults (API keys with sessions)',
    credentialTypes: ['generic'],
    match: { service: DEMO_SYSTEM, keyPrefix: '*' },
    secretsEnv: [DEMO_ADMIN_TOKEN_ENV],
    baseUrl,
    timeoutMs: 5000,
    revoke: [
      {
        name: 'lookup',
        method: 'GET',
        url: '/admin/keys/by-prefix/{{ref.keyPrefix}}',
        headers: auth,
        expectStatus: [200],
        alreadyDoneStatus: [404],
        extract: { keyId: '/key/id' },
      },
      {
        name: 'delete',
        method: 'DELETE',
        url: '/admin/keys/{{steps.keyId}}',
        headers: auth,
        expectStatus: [204],
        alreadyDoneStatus: [404],
      },
    ],
    issue: [
      {
        name: 'create',
        method: 'POST',
        url: '/admin/keys',
        headers: { ...auth, 'Idempotency-Key': '{{workflowId}}' },
        body: { owner: 'replacement for {{ref.keyPrefix}}' },
        expectStatus: [201],
        extract: { apiKey: 'secret', keyId: 'id' },
      },
    ],
    expire: [
      {
        name: 'lookup',
        method: 'GET',
        url: '/admin/keys/by-prefix/{{ref.keyPrefix}}?include=revoked',
        headers: auth,
        expectStatus: [200],
        alreadyDoneStatus: [404],
        extract: { keyId: 'key.id' },
      },
      {
        name: 'expire',
        method: 'POST',
        url: '/admin/keys/{{steps.keyId}}/sessions/revoke',
        headers: auth,
        expectStatus: [200],
        extract: { terminated: 'terminated' },
      },
    ],
    verify: [
      {
        name: 'whoami',
        method: 'GET',
        url: '/api/whoami',
        headers: { Authorization: 'Bearer {{leaked}}' },
        expectStatus: [200],
        deadStatus: [401],
      },
    ],
  };
}

/** Where a running demo service is, for the tools that mint a key from it. */
export interface DemoEndpoint {
  url: string;
  adminToken: string;
}

/** Records where the service answers (removed again by the returned function). */
export function publishDemoEndpoint(dataDir: string, url: string): () => void {
  const file = path.resolve(dataDir, DEMO_URL_FILE);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${url}\n`, { mode: 0o600 });
  return () => rmSync(file, { force: true });
}

/** Reads the running demo service's address and admin token from the data folder; throws saying what is missing. */
export function readDemoEndpoint(dataDir: string): DemoEndpoint {
  const read = (name: string) => {
    const file = path.resolve(dataDir, name);
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new Error(
        `no demo service: ${file} is ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable'} (npm start runs the demo service on embedded defaults, without INVENTORY_FILE or config/inventory.yaml; KILLSWITCH_DATA_DIR must name its data folder)`,
      );
    }
  };
  return { url: read(DEMO_URL_FILE), adminToken: read(DEMO_ADMIN_TOKEN_FILE) };
}

/**
 * The codec endpoint the Temporal UI (and `temporal --codec-endpoint`) calls to show encrypted
 * payloads decoded: POST /codec/decode and /codec/encode with the codec-server wire format
 * ({ payloads: [{ metadata: { k: base64 }, data: base64 }] }). Browser calls come from the UI's
 * origin (CORS with credentials), carry the namespace in X-Namespace and are authenticated: a
 * bearer token, an OIDC access token, or the local UI's session cookie. The Origin header is never
 * a credential (any local process can send it).
 */
import { timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';
import { readJsonBody } from './body';
import { HttpProblem } from '../contracts/errors';
import { issuesOf } from './sources/validate';

export interface CodecRouteDeps {
  codec: PayloadCodec;
  /** The only namespace whose payloads this endpoint serves (X-Namespace must name it). */
  namespace: string;
  /** The Temporal UI's browser origin. */
  uiOrigin: string;
  /** Bearer tokens (CODEC_TOKENS). */
  tokens: readonly string[] | undefined;
  /** The signed-in engineer's OIDC access token, as the Temporal UI forwards it (codec.passAccessToken). */
  jwt?: { jwksUrl: string; issuer: string; audience: string };
  /**
   * npm start's local UI gateway (api/local-ui.ts): the HttpOnly cookie its login link sets in the
   * browser, which the UI sends along because the codec is served on the UI's own origin.
   */
  session?: { cookie: string; value: string };
  bodyLimit?: string;
}

const MAX_PAYLOADS = 1000;
const base64 = z
  .string()
  .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'must be base64');
const wirePayload = z.object({ metadata: z.record(z.string(), base64).optional(), data: base64.optional() });
const wireBody = z.object({ payloads: z.array(wirePayload).max(MAX_PAYLOADS) });
type WirePayload = z.infer<typeof wirePayload>;

export const CODEC_ALLOWED_HEADERS = ['X-Namespace', 'Authorization', 'Content-Type'];

function fromWire(p: WirePayload): Payload {
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) metadata[k] = Buffer.from(v, 'base64');
  return p.data === undefined ? { metadata } : { metadata, data: Buffer.from(p.data, 'base64') };
}

function toWire(p: Payload): WirePayload {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {}))
    if (v) metadata[k] = Buffer.from(v).toString('base64');
  return p.data ? { metadata, data: Buffer.from(p.data).toString('base64') } : { metadata };
}

/** Constant-time: whether `given` equals one of `secrets`. */
export function matchesOneOf(given: string, secrets: readonly string[]): boolean {
  const g = Buffer.from(given);
  let ok = false;
  for (const t of secrets) {
    const b = Buffer.from(t);
    if (b.length === g.length && timingSafeEqual(b, g)) ok = true;
  }
  return ok;
}

function bearerMatches(header: string | undefined, tokens: readonly string[]): boolean {
  const m = /^Bearer ([^\s]+)$/.exec(header ?? '');
  return !!m && matchesOneOf(m[1]!, tokens);
}

/** The value of one cookie of a Cookie header (RFC 6265 `name=value; name2=value2`). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function sessionMatches(header: string | undefined, session: CodecRouteDeps['session']): boolean {
  if (!session) return false;
  const given = cookieValue(header, session.cookie);
  return given !== undefined && matchesOneOf(given, [session.value]);
}

/** Verifies a bearer JWT against the identity provider's keys, issuer and audience (signature, exp, nbf). */
function jwtVerifier(
  cfg: NonNullable<CodecRouteDeps['jwt']>,
): (header: string | undefined) => Promise<boolean> {
  const keys = createRemoteJWKSet(new URL(cfg.jwksUrl), { timeoutDuration: 5_000, cooldownDuration: 30_000 });
  return async (header) => {
    const m = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header ?? '');
    if (!m) return false;
    try {
      await jwtVerify(m[1]!, keys, {
        issuer: cfg.issuer,
        audience: cfg.audience,
        algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
        clockTolerance: 30,
      });
      return true;
    } catch {
      return false;
    }
  };
}

export function createCodecRouter(deps: CodecRouteDeps): express.Router {
  const router = express.Router();
  const tokens = deps.tokens ?? [];
  const jwtValid = deps.jwt ? jwtVerifier(deps.jwt) : undefined;
  const needToken =
    'a valid codec bearer token is required (Authorization: Bearer <one of CODEC_TOKENS, or your identity provider access token>)';

  // CORS: only the UI's origin, with credentials (the UI may include cookies or its access token).
  router.use((req: Request, res: Response, next: NextFunction) => {
    res.vary('Origin');
    // Helmet's same-origin resource policy would stop the UI reading answers cross-origin.
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== deps.uiOrigin) {
      return next(
        new HttpProblem(
          403,
          'origin-not-allowed',
          'Origin not allowed',
          `the codec endpoint serves the Temporal UI at ${deps.uiOrigin} only`,
        ),
      );
    }
    if (origin) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
    }
    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', CODEC_ALLOWED_HEADERS.join(', '));
      res.setHeader('Access-Control-Max-Age', '600');
      res.status(204).end();
      return;
    }
    next();
  });

  router.use(async (req: Request, _res: Response, next: NextFunction) => {
    const authorised =
      bearerMatches(req.headers.authorization, tokens) ||
      sessionMatches(req.headers.cookie, deps.session) ||
      (jwtValid !== undefined && (await jwtValid(req.headers.authorization)));
    if (!authorised) {
      return next(
        new HttpProblem(
          401,
          'unauthorized',
          'Unauthorized',
          deps.session ? `${needToken}, or the session cookie of the local UI's login link` : needToken,
          {},
          { 'WWW-Authenticate': 'Bearer realm="codec"' },
        ),
      );
    }
    const ns = req.headers['x-namespace'];
    if (ns !== deps.namespace) {
      return next(
        new HttpProblem(
          403,
          'wrong-namespace',
          'Wrong namespace',
          ns === undefined
            ? `the X-Namespace header is required (this endpoint serves ${deps.namespace})`
            : `this endpoint serves namespace ${deps.namespace} only`,
        ),
      );
    }
    if (!req.is('application/json')) {
      return next(
        new HttpProblem(
          415,
          'unsupported-media-type',
          'Unsupported media type',
          'Content-Type must be application/json',
        ),
      );
    }
    next();
  });

  // The ingress's one body reader: charset, Content-Encoding, strict UTF-8, storable strings.
  const json = readJsonBody({ limit: deps.bodyLimit ?? '4mb', known: wireBody });
  for (const op of ['encode', 'decode'] as const) {
    router.post(`/${op}`, json, async (req: Request, res: Response) => {
      const parsed = wireBody.safeParse(req.body);
      if (!parsed.success) {
        throw new HttpProblem(
          422,
          'invalid-request',
          'Invalid request',
          'expected { payloads: [{ metadata: { key: base64 }, data: base64 }] }',
          {
            errors: issuesOf(parsed.error, { doc: req.body, known: wireBody }),
          },
        );
      }
      const payloads = parsed.data.payloads.map(fromWire);
      let out: Payload[];
      try {
        out = op === 'encode' ? await deps.codec.encode(payloads) : await deps.codec.decode(payloads);
      } catch (err) {
        throw new HttpProblem(422, `cannot-${op}`, `Cannot ${op}`, (err as Error).message);
      }
      req.log?.debug({ codec: op, payloads: out.length }, 'codec request served');
      res.json({ payloads: out.map(toWire) });
    });
  }
  return router;
}

/**
 * How every route with a body reads it: one charset rule, one Content-Encoding rule, one mapping of
 * body-reading errors to problem+json. Every body route (webhooks, GitLab, Slack, codec, admin)
 * reads through here, and the ingress's error middleware maps with `bodyReadProblem` whatever still
 * escapes, so no route can answer 5xx for bytes a client sent.
 */
import express, { type Request, type RequestHandler } from 'express';
import { HttpProblem } from '../contracts/errors';
import { decodeUtf8, parseJsonBody, type KnownKeys } from './sources/validate';

/** Charsets a body may declare: UTF-8, or US-ASCII (a subset). None declared means UTF-8. */
const CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii']);
const CODINGS = 'identity, gzip, deflate, br';

const token = (v: string) => (/^[A-Za-z0-9._:+-]{1,40}$/.test(v) ? v : undefined);

/** 415 when the Content-Type declares a charset other than UTF-8 (bodies are never transcoded). */
export function charsetProblem(req: Request): HttpProblem | undefined {
  const m = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(req.headers['content-type'] ?? '');
  if (!m) return undefined;
  const charset = (m[1] ?? m[2] ?? '').toLowerCase();
  if (CHARSETS.has(charset)) return undefined;
  const named = token(charset);
  return new HttpProblem(
    415,
    'unsupported-charset',
    'Unsupported charset',
    `${named ? `charset ${named}` : 'this charset'} is not supported: send UTF-8 (charset=utf-8, or no charset)`,
  );
}

/**
 * An error of reading a body (body-parser, raw-body, zlib) as a problem, or undefined when `err` is
 * not one. The root of a 500 this replaces: body-parser wraps a decompression failure (a body sent
 * with `Content-Encoding: gzip` that is not gzip) as an http-error with a status but no `type`.
 */
export function bodyReadProblem(err: unknown, req: Request): HttpProblem | undefined {
  if (!err || typeof err !== 'object' || err instanceof HttpProblem) return undefined;
  const e = err as {
    status?: unknown;
    statusCode?: unknown;
    type?: unknown;
    expose?: unknown;
    limit?: unknown;
  };
  const status =
    typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : undefined;
  if (status === undefined || status < 400 || status >= 500) return undefined;
  if (typeof e.type !== 'string' && e.expose !== true) return undefined;
  switch (e.type) {
    case 'entity.too.large':
      return new HttpProblem(
        413,
        'body-too-large',
        'Body too large',
        `the body exceeds the ${typeof e.limit === 'number' ? `${e.limit}-byte ` : ''}limit of this route`,
      );
    case 'encoding.unsupported':
      return new HttpProblem(
        415,
        'unsupported-content-encoding',
        'Unsupported content encoding',
        `Content-Encoding must be one of ${CODINGS}`,
      );
    case 'charset.unsupported':
      return (
        charsetProblem(req) ??
        new HttpProblem(415, 'unsupported-charset', 'Unsupported charset', 'send UTF-8')
      );
    case 'entity.parse.failed':
      return new HttpProblem(400, 'malformed-json', 'Malformed JSON', 'the body is not valid JSON');
    case 'request.size.invalid':
      return new HttpProblem(400, 'bad-request', 'Bad request', 'the body does not match its Content-Length');
    case 'request.aborted':
      return new HttpProblem(
        400,
        'bad-request',
        'Bad request',
        'the request was aborted while its body was read',
      );
  }
  // A decompression failure (zlib, brotli) carries no `type`: the body is not what its encoding says.
  const coding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (typeof e.type !== 'string' && coding !== 'identity') {
    const named = token(coding);
    return new HttpProblem(
      400,
      'undecodable-body',
      'Body cannot be decoded',
      `the body is not valid ${named ? `${named} ` : ''}data, as its Content-Encoding says`,
    );
  }
  return new HttpProblem(status, 'bad-request', 'Bad request', 'the request body could not be read');
}

/**
 * The raw body as a Buffer (`req.body`, empty when none), decompressed per Content-Encoding within
 * `limit` (the limit counts decompressed bytes). `utf8` also refuses a body that is not UTF-8 (400).
 */
export function readRawBody(opts: { limit: number | string; utf8?: boolean }): RequestHandler {
  const parser = express.raw({ type: () => true, limit: opts.limit });
  return (req, res, next) => {
    const charset = charsetProblem(req);
    if (charset) return next(charset);
    parser(req, res, (err?: unknown) => {
      if (err) return next(bodyReadProblem(err, req) ?? err);
      if (!Buffer.isBuffer(req.body)) req.body = Buffer.alloc(0);
      if (opts.utf8) {
        try {
          decodeUtf8(req.body as Buffer);
        } catch (problem) {
          return next(problem);
        }
      }
      next();
    });
  };
}

/**
 * A JSON body (`req.body`; undefined when none), read by the same rules as every source's: strict
 * UTF-8, JSON, no string PostgreSQL or Slack cannot store. `known` names keys in errors.
 */
export function readJsonBody(opts: { limit: number | string; known?: KnownKeys }): RequestHandler {
  const raw = readRawBody({ limit: opts.limit });
  return (req, res, next) => {
    raw(req, res, (err?: unknown) => {
      if (err) return next(err);
      const body = req.body as Buffer;
      if (body.length === 0) {
        req.body = undefined;
        return next();
      }
      if (!req.is(['application/json', 'application/*+json'])) {
        return next(
          new HttpProblem(
            415,
            'unsupported-media-type',
            'Unsupported media type',
            'Content-Type must be application/json',
          ),
        );
      }
      try {
        req.body = parseJsonBody(body, 'the body', opts.known ? { known: opts.known } : {});
      } catch (problem) {
        return next(problem);
      }
      next();
    });
  };
}

/** A 422 naming each bad field (`{ errors: [{ field, message }] }`), the admin API's one shape. */
export function invalid(errors: Array<{ field: string; message: string }>): never {
  throw new HttpProblem(
    422,
    'invalid-request',
    'Invalid request',
    errors.map((e) => `${e.field}: ${e.message}`).join('; '),
    { errors },
  );
}

/** The parsed JSON body as an object (none: `{}`); anything else is a 422 naming `body`. */
export function objectBody(req: Request): Record<string, unknown> {
  const b: unknown = req.body;
  if (b === undefined) return {};
  if (b === null || typeof b !== 'object' || Array.isArray(b))
    return invalid([{ field: 'body', message: 'must be a JSON object' }]);
  return b as Record<string, unknown>;
}

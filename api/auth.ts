/**
 * Bearer tokens with roles for the read API (/api) and the admin API (/admin): `viewer` reads,
 * `admin` reads and changes. Tokens are compared in constant time (SHA-256 of both sides, so the
 * comparison does not even depend on the length), and every configured token is checked.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { ApiRole, ApiToken } from '../lib/config';
import { HttpProblem } from '../contracts/errors';

export interface Principal {
  role: ApiRole;
  /** Names the token (`API_TOKENS[1]`), never its value. */
  label: string;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The configured token equal to `given`, checking all of them in constant time. */
export function matchToken(given: string, tokens: readonly ApiToken[]): ApiToken | undefined {
  const g = digest(given);
  let found: ApiToken | undefined;
  for (const t of tokens) {
    if (timingSafeEqual(digest(t.token), g) && !found) found = t;
  }
  return found;
}

/** 401 unless the request carries a configured bearer token; the principal goes to res.locals. */
export function authenticate(tokens: readonly ApiToken[]): RequestHandler {
  return (req, res, next) => {
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(req.headers.authorization ?? '');
    const t = m ? matchToken(m[1]!, tokens) : undefined;
    if (!t) {
      return next(
        new HttpProblem(
          401,
          'unauthorized',
          'Unauthorized',
          'a valid bearer token is required (API_TOKENS or ADMIN_TOKENS)',
          {},
          { 'WWW-Authenticate': 'Bearer' },
        ),
      );
    }
    const principal: Principal = { role: t.role, label: t.label };
    res.locals.principal = principal;
    next();
  };
}

/** 403 for a viewer token on an admin route. */
export const requireAdmin: RequestHandler = (_req, res, next) => {
  if (principalOf(res).role !== 'admin') {
    return next(
      new HttpProblem(
        403,
        'forbidden',
        'Forbidden',
        'this route needs an admin token; the token given is a viewer token',
      ),
    );
  }
  next();
};

export function principalOf(res: Response): Principal {
  const p = res.locals.principal as Principal | undefined;
  if (!p) throw new Error('no principal: authenticate() must run first');
  return p;
}

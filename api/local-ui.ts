/**
 * `npm start`'s gateway to the Temporal dev server's UI. It listens on loopback at the UI's one
 * origin (TEMPORAL_UI_URL, default http://127.0.0.1:8233), passes everything through to the UI the
 * dev server serves on an internal loopback port, and serves the codec endpoint itself on that same
 * origin. The UI calls `<codec endpoint>/decode` with fetch and credentials 'same-origin', so the
 * browser sends the HttpOnly cookie that the one-time login link printed at startup set; a request
 * without that cookie or a codec bearer token gets 401, whatever its Origin.
 *
 * Why this shape: the dev server's only codec option is `--ui-codec-endpoint`, the UI publishes that
 * URL to anyone at /api/v1/settings (so no secret may sit in it), and it cannot be told to send
 * credentials cross-origin. An Origin header proves nothing (any local process can send one).
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../lib/logger';
import { createCodecRouter, matchesOneOf, type CodecRouteDeps } from './codec';
import { HttpProblem } from '../contracts/errors';
import { sendProblem } from './problem';

export const UI_SESSION_COOKIE = 'killswitch_ui';
export const LOGIN_PATH = '/_killswitch/login';

export interface LocalUiGatewayDeps {
  /** The one origin the UI is opened at (scheme://host:port, no path). */
  origin: string;
  /** Where the dev server's own UI listens (loopback, an internal port). */
  upstream: { host: string; port: number };
  /** The local codec token (`<data dir>/codec-token`): a bearer of /codec, and it logs a browser in. */
  token: string;
  /** The codec endpoint's deps but its origin and session, which the gateway sets. */
  codec: Omit<CodecRouteDeps, 'uiOrigin' | 'session'>;
  logger: Logger;
}

export interface LocalUiGateway {
  /** A one-time login link: the browser that opens it gets the session cookie, then the UI. */
  loginUrl(): string;
  listen(port: number, host: string): Promise<void>;
  close(): Promise<void>;
}

/** The session cookie's value: derived from the codec token, so it survives restarts and dies with the token. */
export function uiSessionValue(token: string): string {
  return createHmac('sha256', token).update('secret-kill-switch/local-ui-session/v1').digest('base64url');
}

/** `Cookie` without the gateway's own session cookie: the dev server never sees it. */
function withoutSession(cookie: string | string[] | undefined): string | undefined {
  const kept = [cookie ?? []]
    .flat()
    .flatMap((c) => c.split(';'))
    .map((c) => c.trim())
    .filter((c) => c !== '' && c.slice(0, c.indexOf('=')).trim() !== UI_SESSION_COOKIE);
  return kept.length ? kept.join('; ') : undefined;
}

const isGatewayPath = (url: string) => /^\/(codec|_killswitch)(\/|\?|$)/.test(url);

export function createLocalUiGateway(deps: LocalUiGatewayDeps): LocalUiGateway {
  const origin = new URL(deps.origin);
  const session = uiSessionValue(deps.token);
  const loginCodes = new Set<string>();
  const log = deps.logger.child({ component: 'local-ui' });
  let warnedUnauthorized = false;

  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use((req: Request, res: Response, next: NextFunction) => {
    req.log = log;
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Referrer-Policy', 'no-referrer');
    next();
  });
  app.get(LOGIN_PATH, (req: Request, res: Response) => {
    const given = typeof req.query.token === 'string' ? req.query.token : '';
    const code = given ? [...loginCodes].find((c) => matchesOneOf(given, [c])) : undefined;
    if (code) loginCodes.delete(code);
    if (!code && !(given && matchesOneOf(given, [deps.token]))) {
      throw new HttpProblem(
        401,
        'login-failed',
        'Login failed',
        'this login link is used up or wrong: open the one printed at the latest start, or pass the token kept in the data folder (codec-token)',
      );
    }
    const attrs = [
      'Path=/',
      'HttpOnly',
      'SameSite=Strict',
      ...(origin.protocol === 'https:' ? ['Secure'] : []),
    ];
    res.setHeader('Set-Cookie', `${UI_SESSION_COOKIE}=${session}; ${attrs.join('; ')}`);
    warnedUnauthorized = false;
    log.info('local Temporal UI: a browser logged in');
    res.redirect(303, '/');
  });
  app.use(
    '/codec',
    createCodecRouter({
      ...deps.codec,
      uiOrigin: origin.origin,
      session: { cookie: UI_SESSION_COOKIE, value: session },
    }),
  );
  app.use((_req, _res, next) => next(new HttpProblem(404, 'not-found', 'Not found', 'no such route')));
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = (err as { status?: unknown })?.status;
    let problem: HttpProblem;
    if (err instanceof HttpProblem) problem = err;
    else if (typeof status === 'number' && status >= 400 && status < 500) {
      // A body parser's own error: its message may quote the body, so it is not passed on.
      problem =
        status === 413
          ? new HttpProblem(
              413,
              'body-too-large',
              'Body too large',
              'the body exceeds the limit of the codec endpoint',
            )
          : new HttpProblem(status, 'bad-request', 'Bad request', 'the request body could not be read');
    } else {
      log.error({ err }, 'local UI gateway: unhandled error');
      problem = new HttpProblem(500, 'internal', 'Internal error', 'the request failed; see the log');
    }
    // The UI calls /codec for every batch of payloads it shows: a browser that is not logged in would
    // log a refusal per call. The first one is a warning with the way out, the rest are debug.
    if (problem.status < 500) {
      const repeated = problem.slug === 'unauthorized' && warnedUnauthorized;
      if (problem.slug === 'unauthorized') warnedUnauthorized = true;
      log[repeated ? 'debug' : 'warn'](
        { problem: problem.slug, status: problem.status },
        problem.slug === 'unauthorized'
          ? `${problem.detail} (open the login link printed at start to see payloads decoded)`
          : problem.detail,
      );
    }
    sendProblem(res, problem);
  });

  /** Passes a request through to the dev server's UI, streaming both ways (SSE included). */
  const proxy = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const headers = { ...req.headers, cookie: withoutSession(req.headers.cookie) };
    if (headers.cookie === undefined) delete headers.cookie;
    const up = http.request(
      { host: deps.upstream.host, port: deps.upstream.port, method: req.method, path: req.url, headers },
      (upRes) => {
        const out = { ...upRes.headers };
        delete out.connection;
        delete out['keep-alive'];
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, out);
        upRes.pipe(res);
      },
    );
    let browserGone = false;
    up.on('error', (err) => {
      if (res.headersSent || browserGone) return void res.destroy();
      log.warn({ err: err.message }, 'local UI gateway: the dev server UI did not answer');
      res
        .writeHead(502, { 'content-type': 'text/plain; charset=utf-8' })
        .end('The Temporal dev server UI is not reachable.\n');
    });
    res.on('close', () => {
      if (res.writableFinished) return;
      browserGone = true;
      up.destroy();
    });
    req.pipe(up);
  };

  const server = http.createServer((req, res) => {
    // One origin: a request that names another host (localhost for 127.0.0.1, a rebound DNS name)
    // is sent to the origin whose cookie and codec work, or refused.
    if (req.headers.host !== origin.host) {
      if (req.method === 'GET' || req.method === 'HEAD')
        res.writeHead(308, { location: `${origin.origin}${req.url ?? '/'}` }).end();
      else
        res
          .writeHead(421, { 'content-type': 'text/plain; charset=utf-8' })
          .end(`Open the Temporal UI at ${origin.origin}\n`);
      return;
    }
    if (isGatewayPath(req.url ?? '/')) app(req, res);
    else proxy(req, res);
  });
  server.requestTimeout = 0; // long-lived UI streams pass through
  server.headersTimeout = 10_000;

  // WebSocket (or any Upgrade) to the dev server's UI: the handshake is replayed, then bytes flow.
  // The server no longer tracks an upgraded socket, so the tunnels are kept here to close them.
  const tunnels = new Set<net.Socket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (req.headers.host !== origin.host || isGatewayPath(req.url ?? '/')) return void socket.destroy();
    const up = net.connect(deps.upstream.port, deps.upstream.host, () => {
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (req.rawHeaders[i]!.toLowerCase() === 'cookie') continue;
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      const cookie = withoutSession(req.headers.cookie);
      if (cookie) lines.push(`Cookie: ${cookie}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) up.write(head);
      up.pipe(socket).pipe(up);
    });
    for (const [a, b] of [
      [socket, up],
      [up, socket],
    ] as const) {
      tunnels.add(a);
      a.on('end', () => b.end());
      a.on('error', () => b.destroy());
      a.on('close', () => {
        tunnels.delete(a);
        b.destroy();
      });
    }
  });

  return {
    loginUrl() {
      const code = randomBytes(32).toString('base64url');
      loginCodes.add(code);
      return `${origin.origin}${LOGIN_PATH}?token=${code}`;
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of tunnels) s.destroy();
      });
    },
  };
}

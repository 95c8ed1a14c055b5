/**
 * The ingress, built by a factory and never listening itself (server.ts does that). One route per
 * scanner source, all through one pipeline: runtime on/off switch, rate limit, content type and
 * body limit, authentication on the raw body, parsing, delivery-id dedupe, reduction of findings
 * (the secret stops there), and dispatch to the killSwitch run of each credential.
 */
import { createHash, randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { ApiToken } from '../lib/config';
import type { Db } from '../lib/db';
import { isTemporalUnavailable, type IngressDispatcher, type TemporalTarget } from '../lib/dispatch';
import type { ServerKeys } from '../contracts/keys';
import type { Logger } from '../lib/logger';
import { ingressReadiness } from '../lib/health';
import { deliveriesTotal, METRICS_CONTENT_TYPE, metricsAuthorized, metricsText } from '../lib/metrics';
import type { EnrichInput } from '../contracts/enrichment';
import type { Dispatched } from '../contracts/run';
import type { DeliveryLedger, SourceSwitches } from './deliveries';
import { authenticate } from './auth';
import { bodyReadProblem, readRawBody } from './body';
import { createCodecRouter, type CodecRouteDeps } from './codec';
import { HttpProblem } from '../contracts/errors';
import { sendProblem } from './problem';
import {
  createAdminRouter,
  type AdminDeps,
  type OutboundControl,
  type SubscriptionRouteOptions,
} from './admin';
import { createReadRouter } from './read';
import { reduceFinding, type Sighting } from '../contracts/finding';
import type { AcceptFn, Delivery, ParseResult, SourceHandler } from './sources/types';

export interface RegisteredSource {
  handler: SourceHandler;
  /** Enabled in the config file; the runtime switch can override it. */
  enabled: boolean;
  perMinute: number;
  /** Content types accepted besides application/json. */
  contentTypes?: string[];
}

export interface AppDeps {
  logger: Logger;
  keys: ServerKeys;
  /** Temporal, for the read API's live state of the runs (every start goes through `dispatcher`). */
  temporal: TemporalTarget;
  /** The dispatcher with the ingress's one-round-trip path (prepare, start, discard) and the enrichment start. */
  dispatcher: IngressDispatcher;
  deliveries: DeliveryLedger;
  switches: SourceSwitches;
  sources: RegisteredSource[];
  /** Sources with routes of their own (GitLab's token revocation API), mounted at /<name>. */
  routers?: Array<{
    name: string;
    enabled: boolean;
    perMinute: number;
    build: (accept: AcceptFn) => express.Router;
  }>;
  /** The mass-leak breakers, for the admin API. */
  breakers?: AdminDeps['breakers'];
  /** Bearer tokens for /admin (admin role; ADMIN_TOKENS, kept for compatibility). */
  adminTokens?: readonly string[];
  /** Slack's interactions (buttons, /killswitch) at POST /slack/events; off when undefined (api/slack.ts). */
  slackEvents?: RequestHandler[];
  /** Bearer tokens with roles for /api (viewer, admin) and /admin (admin); both APIs are off when none. */
  apiTokens?: readonly ApiToken[];
  /** The kill switch's database: the read API, the admin audit and the runtime dry-run switches need it. */
  db?: Db;
  /** The config file's dry-run value of a scope (`global` or a source), for /admin/dry-run. */
  configuredDryRun?: (scope: string) => boolean;
  /** The codec endpoint for the Temporal UI (POST /codec/encode, /codec/decode); off when undefined. */
  codec?: CodecRouteDeps;
  /** /admin/subscriptions: the destination allow-list and the inventory file config subscriptions come from. */
  subscriptions?: SubscriptionRouteOptions;
  /** Sends delivery.test for POST /admin/subscriptions/:id/test (503 when undefined). */
  outbound?: OutboundControl;
  /**
   * GET /metrics on the ingress port, for a Prometheus scraper with this bearer token (METRICS_TOKEN);
   * undefined: no /metrics here (docs/observability.md).
   */
  metricsToken?: string;
  now?: () => Date;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const DISPATCH_CONCURRENCY = 8;

type Accepted = { status: number; body: Record<string, unknown> };

async function mapLimited<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The intake pipeline shared by every source, routers included: from a parsed delivery through the
 * ledger's claim to dispatched runs and the answer (`settle`), and the answer stored after it was
 * sent (`storeAnswer`).
 */
function createIntake(deps: AppDeps) {
  /** Every finding reduced (the secret stops here) before anything is written: one bad finding refuses the whole delivery. */
  const reduceAll = (result: ParseResult, receivedAt: Date): Sighting[] =>
    result.kind === 'findings'
      ? result.findings.map((f, i) =>
          reduceFinding(f, deps.keys, receivedAt, result.findings.length > 1 ? `[${i}]` : ''),
        )
      : [];

  /**
   * Starts (or joins) the run of each sighting, at most DISPATCH_CONCURRENCY at a time. Throws the
   * first failure once all have settled, marked with whether any run was dispatched, and with the
   * workflow ids that were.
   */
  const dispatchAll = async (
    sightings: Sighting[],
    dispatch: (s: Sighting) => Promise<Dispatched>,
  ): Promise<Accepted> => {
    const started = new Set<string>();
    let failed: unknown;
    const runs = await mapLimited(
      sightings,
      DISPATCH_CONCURRENCY,
      async (s): Promise<(Dispatched & { detectionId: string }) | undefined> => {
        try {
          const r = { ...(await dispatch(s)), detectionId: s.detection.id };
          started.add(r.workflowId);
          return r;
        } catch (err) {
          failed ??= err;
          return undefined;
        }
      },
    );
    if (failed !== undefined)
      throw Object.assign(failed as object, { dispatchedSome: started.size > 0, started });
    const done = runs as Array<Dispatched & { detectionId: string }>;
    const body =
      done.length === 1
        ? { status: 'accepted', ...done[0]!, runs: done }
        : { status: 'accepted', runs: done };
    return { status: 202, body };
  };

  /**
   * From parsed findings to dispatched runs; shared by every source, including routers. Idempotent:
   * a `redelivery` (a delivery id claimed before and never answered) joins the runs its first
   * attempt may have started instead of starting others. `writtenWithClaim`: these sightings'
   * writes (sealed values, sighting rows) were committed with the delivery's claim, so only their
   * runs are left to signal.
   */
  const accept = async (
    source: string,
    result: ParseResult,
    delivery: Delivery,
    mode: { redelivery: boolean; writtenWithClaim?: Sighting[] },
  ): Promise<Accepted> => {
    if (result.kind === 'recorded') {
      return { status: 202, body: { status: 'recorded', reason: result.reason } };
    }
    if (result.kind === 'enrich')
      return { ...(await startEnrichment(source, result, delivery)), status: 202 };
    if (result.findings.length === 0) return { status: 202, body: { status: 'no_findings', runs: [] } };
    if (mode.writtenWithClaim)
      return dispatchAll(mode.writtenWithClaim, (s) => deps.dispatcher.start(s, delivery.receivedAt));
    return dispatchAll(reduceAll(result, delivery.receivedAt), (s) =>
      deps.dispatcher.dispatch(s, delivery.receivedAt, { redelivery: mode.redelivery }),
    );
  };

  /**
   * A delivery that names a finding without its value: one enrichment run per delivery id, started
   * or answered by the dispatcher (lib/dispatch.ts, enrichStart).
   */
  const startEnrichment = async (
    source: string,
    result: Extract<ParseResult, { kind: 'enrich' }>,
    delivery: Delivery,
  ) => {
    const input: EnrichInput = {
      source,
      deliveryId: result.deliveryId,
      request: result.request,
      receivedAt: delivery.receivedAt.toISOString(),
      ...(result.escalateAfter ? { escalateAfter: result.escalateAfter } : {}),
    };
    const run = await deps.dispatcher.enrich(input);
    return {
      body: {
        status: 'enriching',
        workflowId: run.workflowId,
        runId: run.runId,
        temporalUiUrl: run.temporalUiUrl,
      },
    };
  };

  /**
   * Stores a delivery's answer in the ledger once it has been sent. Never awaited by a request: a
   * failure is logged and leaves the claim unfinished, which a re-send processes again, idempotently.
   */
  const storeAnswer = (store: (() => Promise<void>) | undefined, log: Logger) => {
    if (!store) return;
    Promise.resolve()
      .then(store)
      .catch((err: unknown) => {
        try {
          log.warn(
            { err },
            'delivery answered but its answer was not stored; a re-send will be processed again, idempotently',
          );
        } catch {
          // Logging must never take the process down either.
        }
      });
  };

  /**
   * Runs a parsed delivery through the ledger and accept. No crash window: the ledger row is
   * claimed, with the sightings' evidence and rows, in one statement before anything is dispatched;
   * the runs are signalled; the caller answers, then calls `store` (the ledger's answer) without
   * waiting for it. A row left unanswered (its request still running, its process killed, or its
   * answer sent and not stored) is processed again by the sender's re-send, with its first receipt
   * time, idempotently. A 2xx therefore always names runs that exist, and a run that exists was
   * signalled: the detection is durable in Temporal before the sender hears of it.
   */
  const settle = async (
    source: string,
    result: ParseResult,
    delivery: Delivery,
    acceptedStatus?: number,
  ): Promise<Accepted & { store?: () => Promise<void> }> => {
    // A sender with no delivery id of its own (GitLab's revocation API) re-sends the same bytes.
    const deliveryId =
      result.deliveryId ?? `body-sha256:${createHash('sha256').update(delivery.rawBody).digest('hex')}`;
    const sightings = reduceAll(result, delivery.receivedAt);
    const claim = await deps.deliveries.claim(
      source,
      deliveryId,
      deps.dispatcher.prepare(sightings, delivery.receivedAt),
    );
    if (claim.kind === 'answered') {
      const body = claim.response && typeof claim.response === 'object' ? claim.response : {};
      return { status: claim.status, body: { ...body, duplicate: true } };
    }
    const redelivery = claim.kind === 'unfinished';
    if (claim.kind === 'unfinished') delivery = { ...delivery, receivedAt: claim.receivedAt };
    try {
      const answer = await accept(
        source,
        result,
        delivery,
        claim.kind === 'new' ? { redelivery, writtenWithClaim: sightings } : { redelivery },
      );
      const status = acceptedStatus && answer.status === 202 ? acceptedStatus : answer.status;
      return {
        status,
        body: redelivery ? { ...answer.body, duplicate: true } : answer.body,
        store: () => deps.deliveries.complete(source, deliveryId, status, answer.body),
      };
    } catch (err) {
      const e = err as { dispatchedSome?: boolean; started?: Set<string> } | null;
      if (claim.kind === 'new') {
        // Nothing half-started: values this claim sealed for runs that never started are removed.
        const orphans = claim.sealed.filter((id) => !e?.started?.has(id));
        if (orphans.length > 0) await deps.dispatcher.discard(orphans).catch(() => undefined);
        // Freed only when nothing was dispatched: otherwise the sender's retry must join those runs.
        if (e?.dispatchedSome !== true)
          await deps.deliveries.release(source, deliveryId).catch(() => undefined);
      }
      throw err;
    }
  };

  return { settle, storeAnswer };
}

export function createApp(deps: AppDeps): express.Express {
  const now = deps.now ?? (() => new Date());
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(
    helmet({ contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } } }),
  );

  app.use(requestLogger(deps.logger));
  app.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });

  // Liveness (the process answers; /healthz is its older name) and readiness (store, Temporal, a
  // worker polling): lib/health.ts. Neither needs a credential nor shows one.
  app.get(['/livez', '/healthz'], (_req, res) => {
    res.json({ status: 'ok' });
  });
  const readiness = ingressReadiness({ ...(deps.db ? { db: deps.db } : {}), temporal: deps.temporal });
  app.get('/readyz', async (_req, res) => {
    const r = await readiness();
    res.status(r.status === 'ready' ? 200 : 503).json(r);
  });
  const metricsToken = deps.metricsToken;
  if (metricsToken !== undefined) {
    app.get('/metrics', async (req, res) => {
      if (!metricsAuthorized(req.headers.authorization, metricsToken)) {
        throw new HttpProblem(
          401,
          'unauthorized',
          'Unauthorized',
          'the metrics need Authorization: Bearer <METRICS_TOKEN>',
          {},
          { 'WWW-Authenticate': 'Bearer realm="metrics"' },
        );
      }
      res.type(METRICS_CONTENT_TYPE).send(await metricsText(deps.db ? { db: deps.db } : {}));
    });
  }

  if (deps.slackEvents) app.post('/slack/events', ...deps.slackEvents);
  if (deps.codec) app.use('/codec', createCodecRouter(deps.codec));

  const { settle, storeAnswer } = createIntake(deps);

  for (const src of deps.sources) {
    const h = src.handler;
    const types = ['application/json', 'application/*+json', ...(src.contentTypes ?? [])];
    const limiter = rateLimited(h.name, src.perMinute);
    const gate: RequestHandler = async (req, _res, next) => {
      if (!(await deps.switches.enabled(h.name, src.enabled))) {
        return next(
          new HttpProblem(403, 'source-disabled', 'Source disabled', `the ${h.name} source is disabled`),
        );
      }
      if (!req.is(types)) {
        return next(
          new HttpProblem(
            415,
            'unsupported-media-type',
            'Unsupported media type',
            `Content-Type must be one of ${types.join(', ')}; got ${mediaTypeShown(req.headers['content-type'])}`,
          ),
        );
      }
      next();
    };
    // Charset (415), Content-Encoding (415/400), size (413) and UTF-8 (400) before authentication:
    // the signature libraries sign the decoded string, so a non-UTF-8 body could only fail as a
    // misleading 401 (the sender would chase its secret); and telling an unauthenticated caller
    // "not UTF-8" reveals nothing.
    const rawBody = readRawBody({ limit: h.bodyLimitBytes, utf8: true });
    const counted = countDeliveries(h.name);
    app.post(`/webhooks/${h.name}`, counted, gate, limiter, rawBody, async (req: Request, res: Response) => {
      const delivery: Delivery = {
        rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
        headers: req.headers,
        receivedAt: now(),
      };
      await h.authenticate(delivery);
      const result = await h.parse(delivery);
      const answer = await settle(h.name, result, delivery, h.acceptedStatus);
      req.log.info(
        { source: h.name, status: answer.status, result: result.kind, deliveryId: result.deliveryId },
        'delivery accepted',
      );
      const url = (answer.body as { temporalUiUrl?: string }).temporalUiUrl;
      if (url) res.location(url);
      if (answer.status === 204) res.status(204).end();
      else res.status(answer.status).json(answer.body);
      // The detection is durable in Temporal already: the ledger's answer is stored after the sender has it.
      storeAnswer(answer.store, req.log);
    });
  }

  for (const r of deps.routers ?? []) {
    const router = r.build(async (source, result, delivery) => {
      if (!(await deps.switches.enabled(r.name, r.enabled)))
        throw new HttpProblem(403, 'source-disabled', 'Source disabled', `the ${r.name} source is disabled`);
      const { store, ...answer } = await settle(source, result, delivery);
      // The router answers as soon as this resolves (same tick); the ledger's answer is stored after.
      setImmediate(() => storeAnswer(store, deps.logger));
      return answer;
    });
    app.use(`/${r.name}`, countDeliveries(r.name), rateLimited(r.name, r.perMinute), router);
  }

  const tokens: ApiToken[] = [
    ...(deps.apiTokens ?? []),
    ...(deps.adminTokens ?? [])
      .map((token, i) => ({ role: 'admin' as const, token, label: `ADMIN_TOKENS[${i}]` }))
      .filter((t) => !(deps.apiTokens ?? []).some((a) => a.token === t.token)),
  ];
  const db = deps.db;
  if (tokens.length > 0 && db)
    app.use('/api', authenticate(tokens), createReadRouter({ db, temporal: deps.temporal }));
  if (tokens.length > 0) {
    const sources = new Map([
      ...deps.sources.map((s) => [s.handler.name, s.enabled] as const),
      ...(deps.routers ?? []).map((r) => [r.name, r.enabled] as const),
    ]);
    app.use(
      '/admin',
      createAdminRouter({
        tokens,
        switches: deps.switches,
        sources,
        ...(deps.breakers ? { breakers: deps.breakers } : {}),
        ...(db ? { db } : {}),
        ...(deps.configuredDryRun ? { configuredDryRun: deps.configuredDryRun } : {}),
        keys: deps.keys,
        ...(deps.subscriptions ? { subscriptions: deps.subscriptions } : {}),
        ...(deps.outbound ? { outbound: deps.outbound } : {}),
      }),
    );
  }
  // An API that is off says so (and how to turn it on), rather than a misleading "no such route".
  const off = (detail: string) => (_req: Request, _res: Response, next: NextFunction) =>
    next(new HttpProblem(503, 'api-off', 'API is off', detail));
  if (tokens.length === 0) {
    app.use('/api', off('the read API is off: set API_TOKENS (viewer:<token> or admin:<token>)'));
    app.use('/admin', off('the admin API is off: set API_TOKENS (admin:<token>) or ADMIN_TOKENS'));
  } else if (!db) app.use('/api', off('the read API is off: it needs the database (DATABASE_URL)'));

  app.use((_req, _res, next) => next(new HttpProblem(404, 'not-found', 'Not found', 'no such route')));

  // One error middleware maps everything to problem+json; no stack traces leave the process.
  app.use(problemHandler);

  return app;
}

/** Media types worth naming back to a sender; anything else is the sender's own text (it may be anything). */
const COMMON_TYPES = new Set([
  'application/json',
  'text/plain',
  'text/html',
  'text/xml',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'application/octet-stream',
  'application/x-ndjson',
  'application/jsonl',
]);

/** A Content-Type as it may be repeated back: a common media type by name, never the sender's raw text. */
function mediaTypeShown(header: string | undefined): string {
  if (header === undefined) return 'none';
  const type = header.split(';')[0]!.trim().toLowerCase();
  return COMMON_TYPES.has(type) ? type : 'another media type';
}

/** The access log: request ids, the path only, one level by outcome. */
function requestLogger(logger: Logger) {
  return pinoHttp({
    logger,
    // One info line per accepted delivery ('delivery accepted', below); the access line of a
    // request that went well is debug. Refusals are warn, failures error.
    customLogLevel: (_req, res, err) =>
      err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'debug',
    genReqId: (req, res) => {
      const given = req.headers['x-request-id'];
      const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    serializers: {
      req: (req: { id: unknown; method: string; url: string; headers: Record<string, unknown> }) => ({
        id: req.id,
        method: req.method,
        // The path only: a query string is the sender's and may carry anything, a secret included.
        url: req.url.split('?')[0],
        webhookId: req.headers['webhook-id'],
        githubDelivery: req.headers['x-github-delivery'],
        userAgent: req.headers['user-agent'],
      }),
      // The status is what matters; the response headers (CSP and all) are the same every time.
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
  });
}

/** Counts every answer of a source's route by its HTTP status (killswitch_deliveries_total). */
function countDeliveries(source: string): RequestHandler {
  return (_req, res, next) => {
    res.once('finish', () => deliveriesTotal.inc({ source, status: String(res.statusCode) }));
    next();
  };
}

/** A source's rate limit, answered as problem+json. */
function rateLimited(name: string, perMinute: number): RequestHandler {
  return rateLimit({
    windowMs: 60_000,
    limit: perMinute,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    handler: (_req, _res, next) =>
      next(
        new HttpProblem(
          429,
          'rate-limited',
          'Too many requests',
          `more than ${perMinute} requests a minute to ${name}`,
          {},
          { 'Retry-After': '60' },
        ),
      ),
  });
}

/** Maps every error to problem+json: a client's bytes never make a 5xx, Temporal unreachable is a 503. */
function problemHandler(err: unknown, req: Request, res: Response, _next: NextFunction): void {
  let problem: HttpProblem;
  const bodyProblem = bodyReadProblem(err, req);
  if (err instanceof HttpProblem) problem = err;
  // Any body parser's error (a route's own, a router's): a client's bytes never make a 5xx.
  else if (bodyProblem) problem = bodyProblem;
  else if (isTemporalUnavailable(err)) {
    problem = new HttpProblem(
      503,
      'temporal-unavailable',
      'Workflow engine unavailable',
      'the delivery was not accepted because Temporal could not be reached; retry later',
      {},
      { 'Retry-After': '5' },
    );
  } else {
    req.log?.error({ err }, 'unhandled error');
    problem = new HttpProblem(
      500,
      'internal',
      'Internal error',
      'the request failed; see the server log with this request id',
    );
  }
  if (problem.status >= 400 && problem.status < 500)
    req.log?.warn({ problem: problem.slug, status: problem.status }, problem.detail);
  if (problem.status === 503) req.log?.error({ problem: problem.slug }, problem.detail);
  sendProblem(res, problem, typeof req.id === 'string' ? `urn:request:${req.id}` : undefined);
}

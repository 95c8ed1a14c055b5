/**
 * The admin API (/admin, admin token): the runtime source switches, the mass-leak breakers, the
 * runtime dry-run switches, the outbound event subscriptions and rules (api/rules.ts) and the admin
 * audit, with every change written to the append-only admin audit (store/admin-audit.ts) when the
 * kill switch's database is there.
 */
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import type { ApiToken } from '../lib/config';
import type { Db } from '../lib/db';
import { GLOBAL_SCOPE } from '../lib/dry-run';
import { HttpProblem } from '../contracts/errors';
import { insertAdminAudit, listAdminAudit } from '../store/admin-audit';
import type { BreakerState } from '../store/breaker';
import { listDryRun, setDryRun } from '../store/dry-run';
import type { ServerKeys } from '../contracts/keys';
import {
  checkDestination,
  createAllowList,
  editableOf,
  publicView,
  redactedUrl,
  mergePatch,
  SECRET_REQUIRED,
  SUBSCRIPTION_KEYS,
  subscriptionSchema,
  type DestinationPolicy,
  type HostLookup,
  type OutboundControl,
  type SubscriptionInput,
  type SubscriptionView,
} from '../lib/subscriptions';
import {
  createSubscription,
  deleteSubscription,
  listSubscriptions,
  SubscriptionNameTakenError,
  updateSubscription,
  type SubscriptionFields,
} from '../store/subscriptions';
import { authenticate, principalOf, requireAdmin } from './auth';
import { invalid, objectBody, readJsonBody } from './body';
import type { SourceSwitches } from './deliveries';
import { limitSchema, parseOr422, printable, subscriptionOr404 } from './read';
import { createRuleAdminRouter, refuseIfRulesName } from './rules';
import { issuesOf } from './sources/validate';

export type { OutboundControl } from '../lib/subscriptions';

/** How the subscription routes check destinations, and where config subscriptions come from. */
export interface SubscriptionRouteOptions {
  /** `outbound.allowHosts` of the inventory file plus OUTBOUND_ALLOW_HOSTS: may be http, private, loopback. */
  allowHosts?: readonly string[];
  /** The inventory file config subscriptions are declared in (named by the 409 of a change). */
  inventoryFile?: string;
  /** Resolves a host name to its addresses (node:dns by default). */
  lookup?: HostLookup;
  /** Subscription name -> the owning systems whose `routing.subscriptions` name it (the inventory file). */
  routedBy?: ReadonlyMap<string, readonly string[]>;
}

export interface AdminChange {
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  /** Who the caller says acted (`by`); the token's label otherwise. */
  by?: string;
}

/** Appends one admin change to the admin audit. */
export async function recordAdminChange(
  db: Pick<Db, 'query'>,
  req: Request,
  res: Response,
  c: AdminChange,
): Promise<void> {
  const p = principalOf(res);
  await insertAdminAudit(db, {
    actor: c.by ?? p.label,
    role: p.role,
    token: p.label,
    action: c.action,
    target: c.target,
    before: c.before,
    after: c.after,
    requestId: typeof req.id === 'string' ? req.id : null,
  });
}

/** The `by` field of an admin request: who acted, recorded in the admin audit. */
export const bySchema = printable(200).optional();

const dryRunBody = z
  .object({
    enabled: z.boolean({ message: 'must be true or false' }),
    scope: z.string().min(1).max(64),
    by: bySchema,
  })
  .strict();

const auditQuery = z
  .object({
    limit: limitSchema,
    cursor: z
      .string()
      .regex(/^\d{1,19}$/, 'not a cursor returned by this API')
      .optional(),
  })
  .strict();

export interface AdminDeps {
  /** Bearer tokens; only admin ones pass. */
  tokens: readonly ApiToken[];
  switches: SourceSwitches;
  /** Every configured source (webhook routes and routers) by name, with its config file's enabled value. */
  sources: ReadonlyMap<string, boolean>;
  /** The mass-leak breakers; no /admin/breakers when undefined. */
  breakers?: { list(): Promise<BreakerState[]>; reset(system: string, by: string): Promise<boolean> };
  /** The kill switch's database: the admin audit, /admin/dry-run and /admin/audit need it. */
  db?: Db;
  /** The config file's dry-run value of a scope (`global` or a source). */
  configuredDryRun?: (scope: string) => boolean;
  /** Seals subscription secrets; /admin/subscriptions needs it and the database. */
  keys?: ServerKeys;
  subscriptions?: SubscriptionRouteOptions;
  /** Sends delivery.test; POST /admin/subscriptions/:id/test answers 503 without it. */
  outbound?: OutboundControl;
}

/** Every /admin route, behind an admin token. */
export function createAdminRouter(deps: AdminDeps): express.Router {
  const admin = express.Router();
  admin.use(authenticate(deps.tokens), requireAdmin);
  const db = deps.db;
  const known = deps.sources;
  const audited = async (req: Request, res: Response, change: AdminChange) => {
    if (db) await recordAdminChange(db, req, res, change);
  };
  const byOf = (res: Response, given: unknown) => {
    const b = bySchema.safeParse(given ?? undefined);
    if (!b.success)
      throw new HttpProblem(
        422,
        'invalid-request',
        'Invalid request',
        'by: at most 200 printable characters',
        { errors: [{ field: 'by', message: 'at most 200 printable characters' }] },
      );
    return b.data ?? (res.locals.principal as { label: string }).label;
  };

  admin.get('/sources', async (_req, res) => {
    const overrides = new Map((await deps.switches.list()).map((o) => [o.source, o]));
    res.json({
      sources: await Promise.all(
        [...known].map(async ([name, configured]) => ({
          name,
          configured,
          enabled: await deps.switches.enabled(name, configured),
          ...(overrides.has(name)
            ? { changedBy: overrides.get(name)!.changedBy, changedAt: overrides.get(name)!.changedAt }
            : {}),
        })),
      ),
    });
  });

  admin.put('/sources/:name', readJsonBody({ limit: '4kb', known: ['enabled', 'by'] }), async (req, res) => {
    const name = String(req.params.name);
    if (!known.has(name))
      throw new HttpProblem(404, 'unknown-source', 'Unknown source', 'no configured source has this name');
    const body = req.body as { enabled?: unknown; by?: unknown };
    if (typeof body?.enabled !== 'boolean') {
      throw new HttpProblem(422, 'invalid-request', 'Invalid request', 'enabled: must be true or false', {
        errors: [{ field: 'enabled', message: 'must be a boolean' }],
      });
    }
    const by = byOf(res, body.by);
    const before = await deps.switches.enabled(name, known.get(name)!);
    await deps.switches.set(name, body.enabled, by);
    await audited(req, res, {
      action: 'source.set',
      target: name,
      before: { enabled: before },
      after: { enabled: body.enabled },
      by,
    });
    req.log.warn({ source: name, enabled: body.enabled, by }, 'source switched');
    res.json({ name, enabled: body.enabled, changedBy: by });
  });

  const breakers = deps.breakers;
  if (breakers) {
    admin.get('/breakers', async (_req, res) => {
      res.json({ breakers: await breakers.list() });
    });
    admin.post('/breakers/:system/reset', readJsonBody({ limit: '4kb', known: ['by'] }), async (req, res) => {
      const system = String(req.params.system);
      const body = (req.body ?? {}) as { by?: unknown };
      const by = byOf(res, body.by);
      const reset = await breakers.reset(system, by);
      if (!reset)
        throw new HttpProblem(
          404,
          'breaker-not-tripped',
          'Breaker not tripped',
          `the breaker of ${system} is not tripped`,
        );
      await audited(req, res, {
        action: 'breaker.reset',
        target: system,
        before: { tripped: true },
        after: { tripped: false },
        by,
      });
      req.log.warn({ system, by }, 'mass-leak breaker reset');
      res.json({ system, reset: true, by });
    });
  }

  if (db) admin.use(dryRunAndAuditRoutes(db, [...known.keys()], deps.configuredDryRun ?? (() => false)));
  if (db && deps.keys) admin.use('/subscriptions', subscriptionRoutes(db, deps.keys, deps, byOf));
  if (db) {
    const inventoryFile = deps.subscriptions?.inventoryFile;
    const record = (req: Request, res: Response, c: AdminChange) => recordAdminChange(db, req, res, c);
    admin.use(
      '/rules',
      createRuleAdminRouter({ db, byOf, record, ...(inventoryFile ? { inventoryFile } : {}) }),
    );
  }
  return admin;
}

/**
 * A subscription body checked as a whole: the schema (422 naming each field), the secret a format
 * needs (`hasSecret`: one is stored or sent), and the destination (https, no private address).
 */
async function validSubscription(
  doc: unknown,
  policy: DestinationPolicy,
  hasSecret: boolean,
): Promise<SubscriptionInput> {
  const r = subscriptionSchema.safeParse(doc ?? {});
  if (!r.success)
    return invalid(
      issuesOf(r.error, { doc: doc ?? {}, known: SUBSCRIPTION_KEYS }).map((e) => ({
        field: e.field === '(body)' ? 'body' : e.field,
        message: e.message,
      })),
    );
  const errors: Array<{ field: string; message: string }> = [];
  if (SECRET_REQUIRED.has(r.data.format) && !hasSecret)
    errors.push({ field: 'secret', message: `required by the ${r.data.format} format (its token)` });
  errors.push(...(await checkDestination(r.data, policy)));
  if (errors.length > 0) invalid(errors);
  return r.data;
}

/** The columns a validated body writes; url and connection always present (undefined clears). */
function fieldsOf(s: SubscriptionInput): SubscriptionFields {
  return {
    name: s.name,
    format: s.format,
    url: s.url,
    connection: s.connection,
    eventTypes: s.eventTypes,
    filters: s.filters,
    options: s.options,
    retryCount: s.retryCount,
    timeoutMs: s.timeoutMs,
    failureThreshold: s.failureThreshold,
    isActive: s.isActive,
    routedOnly: s.routedOnly,
  };
}

/**
 * /admin/subscriptions: create, read, PATCH (RFC 7396 merge into the stored subscription), PUT
 * (full replacement: a field left out takes its default, a secret left out is removed), DELETE,
 * and POST /:id/test. Config subscriptions (origin config) are read-only here: 409.
 */
function subscriptionRoutes(
  db: Db,
  keys: ServerKeys,
  deps: Pick<AdminDeps, 'subscriptions' | 'outbound'>,
  byOf: (res: Response, given: unknown) => string,
): express.Router {
  const router = express.Router();
  const opts = deps.subscriptions ?? {};
  const policy: DestinationPolicy = {
    allow: createAllowList(opts.allowHosts ?? []),
    unresolvable: 'refuse',
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
  };
  const body = readJsonBody({ limit: '64kb', known: SUBSCRIPTION_KEYS });
  const writable = async (id: string) => {
    const s = await subscriptionOr404(db, id);
    if (s.origin === 'config')
      throw new HttpProblem(
        409,
        'subscription-from-config',
        'Subscription from config',
        `subscription ${s.name} is declared in the inventory file ${opts.inventoryFile ?? ''}`.trimEnd() +
          '; change it there (config subscriptions are replaced at every start)',
      );
    return s;
  };
  /** 409 when an owning system's routing names the subscription (the inventory file would point at nothing). */
  const refuseIfRouted = (name: string, change: 'deleted' | 'renamed') => {
    const systems = opts.routedBy?.get(name) ?? [];
    if (systems.length === 0) return;
    throw new HttpProblem(
      409,
      'subscription-in-use',
      'Subscription in use',
      `subscription ${name} cannot be ${change}: the routing of the owning system${systems.length > 1 ? 's' : ''} ${systems.join(', ')} names it in the inventory file ${opts.inventoryFile ?? ''}`.trimEnd() +
        '; change it there first',
      { systems: [...systems] },
    );
  };
  const nameTaken = (err: unknown): never => {
    if (err instanceof SubscriptionNameTakenError)
      throw new HttpProblem(409, 'subscription-exists', 'Subscription exists', err.message, {
        errors: [{ field: 'name', message: 'another subscription has this name' }],
      });
    throw err;
  };
  const audit = (
    req: Request,
    res: Response,
    action: string,
    target: string,
    before: SubscriptionView | null,
    after: unknown,
    by: string,
  ) => recordAdminChange(db, req, res, { action, target, before, after, by });
  const secretNote = (change: string | null | undefined, had: boolean) =>
    change === undefined
      ? {}
      : change === null
        ? had
          ? { secretChange: 'removed' }
          : {}
        : { secretChange: 'set' };

  router.get('/', async (_req, res) => {
    res.json({ subscriptions: (await listSubscriptions(db)).map(publicView) });
  });

  router.post('/', body, async (req, res) => {
    const { by: byGiven, ...doc } = objectBody(req);
    const by = byOf(res, byGiven);
    const s = await validSubscription(doc, policy, typeof doc.secret === 'string');
    const created = await createSubscription(db, keys, {
      ...fieldsOf(s),
      ...(s.secret ? { secret: s.secret } : {}),
    }).catch(nameTaken);
    await audit(
      req,
      res,
      'subscription.create',
      created.id,
      null,
      { ...publicView(created), ...secretNote(s.secret, false) },
      by,
    );
    req.log.warn({ subscription: created.id, name: created.name, by }, 'subscription created');
    res.status(201).location(`${req.baseUrl}/${created.id}`).json(publicView(created));
  });

  router.get('/:id', async (req, res) => {
    res.json(publicView(await subscriptionOr404(db, String(req.params.id))));
  });

  /** PATCH merges into the stored subscription, PUT replaces it; both then validate the whole. */
  const change = (mode: 'patch' | 'put') =>
    async function (req: Request, res: Response) {
      const before = await writable(String(req.params.id));
      const { by: byGiven, secret, ...changes } = objectBody(req);
      const by = byOf(res, byGiven);
      const doc = (mode === 'patch' ? mergePatch(editableOf(before), changes) : changes) as Record<
        string,
        unknown
      >;
      if (secret !== undefined && secret !== null) doc.secret = secret;
      // A PUT of what a GET answered: url or connection null means "none" (the other one is used).
      for (const k of ['url', 'connection'] as const) if (doc[k] === null) delete doc[k];
      // The URL as the API showed it (redacted) sent back means "keep it" (a GET, edit, PUT).
      if (before.url !== null && doc.url === redactedUrl(before.format, before.url)) doc.url = before.url;
      // PATCH: absent keeps the secret, null removes it; PUT: absent or null removes it.
      const secretChange: string | null | undefined =
        typeof secret === 'string' ? secret : mode === 'put' || secret === null ? null : undefined;
      const hasSecret = secretChange === undefined ? before.hasSecret : secretChange !== null;
      const s = await validSubscription(doc, policy, hasSecret);
      // A rule's action names the subscription: renaming it would leave the rule pointing at nothing.
      if (s.name !== before.name) {
        refuseIfRouted(before.name, 'renamed');
        await refuseIfRulesName(db, before.name, 'renamed');
      }
      const { isActive, ...fields } = fieldsOf(s);
      const after = await updateSubscription(db, keys, before.id, {
        ...fields,
        ...(isActive !== before.isActive ? { isActive } : {}),
        ...(secretChange !== undefined ? { secret: secretChange } : {}),
      }).catch(nameTaken);
      if (!after)
        throw new HttpProblem(
          404,
          'unknown-subscription',
          'Unknown subscription',
          'no subscription has this id',
        );
      await audit(
        req,
        res,
        'subscription.update',
        after.id,
        publicView(before),
        { ...publicView(after), ...secretNote(secretChange, before.hasSecret) },
        by,
      );
      req.log.warn({ subscription: after.id, name: after.name, by, mode }, 'subscription changed');
      res.json(publicView(after));
    };
  router.patch('/:id', body, change('patch'));
  router.put('/:id', body, change('put'));

  router.delete('/:id', body, async (req, res) => {
    const before = await writable(String(req.params.id));
    const by = byOf(res, objectBody(req).by);
    refuseIfRouted(before.name, 'deleted');
    await refuseIfRulesName(db, before.name, 'deleted');
    await deleteSubscription(db, before.id);
    await audit(req, res, 'subscription.delete', before.id, publicView(before), null, by);
    req.log.warn({ subscription: before.id, name: before.name, by }, 'subscription deleted');
    res.status(204).end();
  });

  router.post('/:id/test', readJsonBody({ limit: '4kb', known: ['by'] }), async (req, res) => {
    const s = await subscriptionOr404(db, String(req.params.id));
    const by = byOf(res, objectBody(req).by);
    if (!deps.outbound)
      throw new HttpProblem(
        503,
        'outbound-unavailable',
        'Outbound delivery unavailable',
        'outbound delivery is not configured',
      );
    const result = await deps.outbound.sendTest(s.id, by);
    await audit(req, res, 'subscription.test', s.id, null, { name: s.name, ...result }, by);
    req.log.info({ subscription: s.id, delivered: result.delivered, by }, 'subscription tested');
    res.json({ subscriptionId: s.id, ...result });
  });

  return router;
}

/** /admin/dry-run and /admin/audit: they need the database. */
function dryRunAndAuditRoutes(
  db: Db,
  sources: readonly string[],
  configuredDryRun: (scope: string) => boolean,
): express.Router {
  const router = express.Router();
  const scopes = () => [GLOBAL_SCOPE, ...sources];

  const state = async () => {
    const overrides = new Map((await listDryRun(db)).map((e) => [e.scope, e]));
    return scopes().map((scope) => {
      const o = overrides.get(scope);
      const configured = configuredDryRun(scope);
      return {
        scope,
        configured,
        enabled: o ? o.enabled : configured,
        ...(o ? { changedBy: o.changedBy, changedAt: o.changedAt } : {}),
      };
    });
  };

  router.get('/dry-run', async (_req, res) => {
    res.json({ scopes: await state() });
  });

  router.put('/dry-run', readJsonBody({ limit: '4kb', known: dryRunBody }), async (req, res) => {
    const body = parseOr422(dryRunBody, req.body, 'body');
    if (!scopes().includes(body.scope)) {
      throw new HttpProblem(
        422,
        'invalid-request',
        'Invalid request',
        `scope: must be global or a configured source (${sources.join(', ')})`,
        {
          errors: [{ field: 'scope', message: 'must be global or a configured source' }],
        },
      );
    }
    const before = (await state()).find((s) => s.scope === body.scope)!;
    const by = body.by ?? principalOf(res).label;
    await setDryRun(db, body.scope, body.enabled, by);
    await recordAdminChange(db, req, res, {
      action: 'dry_run.set',
      target: body.scope,
      before: { enabled: before.enabled, configured: before.configured },
      after: { enabled: body.enabled },
      by,
    });
    req.log.warn({ scope: body.scope, enabled: body.enabled, by }, 'dry run switched');
    res.json({ scope: body.scope, enabled: body.enabled, configured: before.configured, changedBy: by });
  });

  router.get('/audit', async (req, res) => {
    const q = parseOr422(auditQuery, req.query, 'query');
    // One more row than asked: its presence says a next page exists.
    const all = await listAdminAudit(db, q.limit + 1, q.cursor);
    const rows = all.slice(0, q.limit);
    res.json({
      entries: rows.map((e) => ({
        id: String(e.id),
        at: e.at instanceof Date ? e.at.toISOString() : e.at,
        actor: e.actor,
        role: e.role,
        token: e.token,
        action: e.action,
        target: e.target,
        before: e.before,
        after: e.after,
        requestId: e.request_id ?? null,
      })),
      nextCursor: all.length > q.limit ? String(rows[rows.length - 1]!.id) : null,
    });
  });

  return router;
}

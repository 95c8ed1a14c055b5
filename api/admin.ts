/**
 * The admin API (/admin, admin token): the runtime source switches, the mass-leak breakers, the
 * runtime dry-run switches and the admin audit, with every change written to the append-only
 * admin audit (store/admin-audit.ts) when the kill switch's database is there.
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
import { authenticate, principalOf, requireAdmin } from './auth';
import { readJsonBody } from './body';
import type { SourceSwitches } from './deliveries';
import { limitSchema, parseOr422, printable } from './read';

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
  return admin;
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

/**
 * The read API (/api, viewer or admin token) over the audit table, the sightings and the live state
 * of the runs; and the admin controls that came with it (/admin/dry-run, /admin/audit), with every
 * admin change written to the append-only killswitch_admin_audit table. Nothing here returns a
 * secret: the audit holds none, and the columns are listed one by one so evidence never leaks in.
 */
import { WorkflowNotFoundError } from '@temporalio/common';
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import { temporalUiRunUrl } from '../lib/config';
import type { Db } from '../lib/db';
import { isTemporalUnavailable, type TemporalTarget } from '../lib/dispatch';
import { GLOBAL_SCOPE, listDryRun, setDryRun } from '../lib/dry-run';
import { currentStepQuery, OUTCOMES } from '../contracts/run';
import { principalOf, requireAdmin } from './auth';
import { readJsonBody } from './body';
import { HttpProblem } from '../contracts/errors';
import { issuesOf } from './sources/validate';


/** Non-secret columns of killswitch_audit the API returns (fingerprints and evidence stay inside). */
const AUDIT_COLUMNS = [
  'id',
  'workflow_id',
  'run_id',
  'detection_id',
  'source',
  'scanner',
  'credential_type',
  'credential_ref',
  'owning_system',
  'outcome',
  'failure_step',
  'failure_type',
  'failure_message',
  'kill_mode',
  'policy_action',
  'policy_rule',
  'dry_run',
  'held_by_breaker',
  'new_value_delivered',
  'sink_ref',
  'sessions_terminated',
  'user_sessions_expired',
  'verification_method',
  'pagerduty_status',
  'decided_by',
  'acknowledged_by',
  'retried_by',
  'false_positive_by',
  'incident_resolved',
  'validity',
  'location',
  'received_at',
  'revoked_at',
  'rotated_at',
  'sessions_expired_at',
  'verified_dead_at',
  'recorded_at',
] as const;

const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

function toApi(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of AUDIT_COLUMNS) {
    const v = row[c];
    out[camel(c)] = v instanceof Date ? v.toISOString() : c === 'id' && v !== null ? String(v) : (v ?? null);
  }
  return out;
}

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'lower-case letters, digits, - and _ (at most 64)');
const printable = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .regex(/^[^\p{Cc}]+$/u, 'must not contain control characters');

/** Keyset position: the exact recorded_at (PostgreSQL text, microseconds kept) and the row id. */
const cursorSchema = z
  .string()
  .max(200)
  .transform((v, ctx) => {
    try {
      const parsed = z
        .object({
          t: z.string().regex(/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}(:\d{2})?|Z)$/),
          i: z.string().regex(/^\d{1,19}$/),
        })
        .strict()
        .parse(JSON.parse(Buffer.from(v, 'base64url').toString('utf8')));
      return parsed;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a cursor returned by this API' });
      return z.NEVER;
    }
  });

const encodeCursor = (t: string, i: string) => Buffer.from(JSON.stringify({ t, i })).toString('base64url');

const limitSchema = z
  .string()
  .regex(/^\d{1,3}$/, 'an integer from 1 to 200')
  .transform(Number)
  .pipe(z.number().int().min(1, 'an integer from 1 to 200').max(200, 'an integer from 1 to 200'))
  .default(50);

const listQuery = z
  .object({
    outcome: z.enum(OUTCOMES).optional(),
    system: name.optional(),
    source: name.optional(),
    since: z.iso
      .datetime({
        offset: true,
        message: 'an ISO 8601 date-time with a time zone, e.g. 2025-11-27T10:00:00Z',
      })
      .optional(),
    limit: limitSchema,
    cursor: cursorSchema.optional(),
  })
  .strict();

/** Parses or throws 422 naming every bad field; an unknown one by position, never echoed. */
function parseOr422<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const doc = value ?? {};
  const r = schema.safeParse(doc);
  if (r.success) return r.data;
  const errors = issuesOf(r.error, { doc, known: schema }).map((e) => ({ field: e.field === '(body)' ? what : e.field, message: e.message }));
  throw new HttpProblem(
    422,
    'invalid-request',
    'Invalid request',
    errors.map((e) => `${e.field}: ${e.message}`).join('; '),
    { errors },
  );
}

export interface ReadApiDeps {
  db: Db;
  temporal: TemporalTarget;
}

export interface LiveStatus {
  /** Temporal's execution status (RUNNING, COMPLETED, FAILED, TERMINATED, ...) or `unknown`. */
  status: string;
  runId?: string;
  startTime?: string;
  closeTime?: string;
  temporalUiUrl?: string;
  /** The currentStep query, for a run still open. */
  step?: string;
  outcome?: string;
  failure?: { step: string; type: string; message: string };
  owningSystem?: string | null;
  policy?: { action: string; rule: string; dryRun: boolean };
  timeline?: Record<string, string | undefined>;
  sightings?: number;
  error?: string;
}

async function liveStatus(t: TemporalTarget, workflowId: string): Promise<LiveStatus | null> {
  const within = <R>(fn: () => Promise<R>) => t.client.connection.withDeadline(Date.now() + t.deadlineMs, fn);
  const handle = t.client.workflow.getHandle(workflowId);
  try {
    const d = await within(() => handle.describe());
    const live: LiveStatus = {
      status: d.status.name,
      runId: d.runId,
      startTime: d.startTime.toISOString(),
      ...(d.closeTime ? { closeTime: d.closeTime.toISOString() } : {}),
      temporalUiUrl: temporalUiRunUrl(t.uiUrl, t.namespace, workflowId, d.runId),
    };
    if (d.status.name === 'RUNNING') {
      try {
        const s = await within(() => handle.query(currentStepQuery));
        Object.assign(live, {
          step: s.step,
          ...(s.outcome ? { outcome: s.outcome } : {}),
          ...(s.failure ? { failure: s.failure } : {}),
          owningSystem: s.owner?.system ?? null,
          ...(s.policy
            ? { policy: { action: s.policy.action, rule: s.policy.rule, dryRun: s.policy.dryRun } }
            : {}),
          timeline: s.timeline,
          sightings: s.sightings.length,
        });
      } catch (err) {
        live.error = `currentStep query failed: ${(err as Error).message}`;
      }
    }
    return live;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    if (isTemporalUnavailable(err)) return { status: 'unknown', error: 'Temporal could not be reached' };
    throw err;
  }
}

/** GET /api/detections and /api/detections/:id. */
export function createReadRouter(deps: ReadApiDeps): express.Router {
  const router = express.Router();
  const cols = AUDIT_COLUMNS.join(', ');

  router.get('/detections', async (req, res) => {
    const q = parseOr422(listQuery, req.query, 'query');
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.outcome) where.push(`outcome = ${p(q.outcome)}`);
    if (q.system === 'none') where.push('owning_system IS NULL');
    else if (q.system) where.push(`owning_system = ${p(q.system)}`);
    if (q.source) where.push(`source = ${p(q.source)}`);
    if (q.since) where.push(`recorded_at >= ${p(q.since)}::timestamptz`);
    if (q.cursor) where.push(`(recorded_at, id) < (${p(q.cursor.t)}::timestamptz, ${p(q.cursor.i)}::bigint)`);
    const r = await deps.db.query<Record<string, unknown>>(
      `SELECT ${cols}, recorded_at::text AS recorded_key FROM killswitch_audit
        ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY recorded_at DESC, id DESC LIMIT ${p(q.limit + 1)}`,
      params,
    );
    const rows = r.rows.slice(0, q.limit);
    const last = rows[rows.length - 1];
    const nextCursor =
      r.rows.length > q.limit && last ? encodeCursor(String(last.recorded_key), String(last.id)) : null;
    res.json({
      detections: rows.map((row) => ({
        ...toApi(row),
        temporalUiUrl: temporalUiRunUrl(
          deps.temporal.uiUrl,
          deps.temporal.namespace,
          String(row.workflow_id),
          String(row.run_id),
        ),
      })),
      nextCursor,
    });
  });

  router.get('/detections/:id', async (req, res) => {
    const id = parseOr422(printable(512), req.params.id, 'id');
    const found = await deps.db.query<{ workflow_id: string; last: Date | string }>(
      `SELECT workflow_id, max(at) AS last FROM (
         SELECT workflow_id, recorded_at AS at FROM killswitch_audit WHERE workflow_id = $1 OR detection_id = $1
         UNION ALL
         SELECT workflow_id, received_at AS at FROM killswitch_sightings WHERE workflow_id = $1 OR detection_id = $1
       ) x GROUP BY workflow_id ORDER BY last DESC`,
      [id],
    );
    const workflowId = found.rows[0]?.workflow_id;
    if (!workflowId)
      throw new HttpProblem(
        404,
        'unknown-detection',
        'Unknown detection',
        `no detection or workflow with id ${id}`,
      );
    const [audit, sightings, live] = await Promise.all([
      deps.db.query<Record<string, unknown>>(
        `SELECT ${cols} FROM killswitch_audit WHERE workflow_id = $1 ORDER BY recorded_at, id`,
        [workflowId],
      ),
      deps.db.query<Record<string, unknown>>(
        'SELECT detection_id, source, scanner, location, validity, received_at FROM killswitch_sightings WHERE workflow_id = $1 ORDER BY received_at',
        [workflowId],
      ),
      liveStatus(deps.temporal, workflowId),
    ]);
    res.json({
      id,
      workflowId,
      ...(found.rows.length > 1 ? { otherWorkflowIds: found.rows.slice(1).map((r) => r.workflow_id) } : {}),
      live,
      audit: audit.rows.map(toApi),
      sightings: sightings.rows.map((s) => ({
        detectionId: s.detection_id,
        source: s.source,
        scanner: s.scanner ?? null,
        location: s.location,
        validity: s.validity ?? null,
        receivedAt: s.received_at instanceof Date ? s.received_at.toISOString() : s.received_at,
      })),
    });
  });

  return router;
}

export interface AdminChange {
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  /** Who the caller says acted (`by`); the token's label otherwise. */
  by?: string;
}

/** Appends one admin change to killswitch_admin_audit. */
export async function recordAdminChange(
  db: Pick<Db, 'query'>,
  req: Request,
  res: Response,
  c: AdminChange,
): Promise<void> {
  const p = principalOf(res);
  await db.query(
    `INSERT INTO killswitch_admin_audit (actor, role, token, action, target, before, after, request_id)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)`,
    [
      c.by ?? p.label,
      p.role,
      p.label,
      c.action,
      c.target,
      JSON.stringify(c.before ?? null),
      JSON.stringify(c.after ?? null),
      typeof req.id === 'string' ? req.id : null,
    ],
  );
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

export interface AdminControlDeps {
  db: Db;
  /** Every source name a dry-run scope may name. */
  sources: readonly string[];
  /** The config file's dry-run value of a scope (`global` or a source). */
  configuredDryRun: (scope: string) => boolean;
}

/** /admin/dry-run and /admin/audit; mounted inside the admin router (token checked, admin only). */
export function createAdminControlRouter(deps: AdminControlDeps): express.Router {
  const router = express.Router();
  router.use(requireAdmin);
  const scopes = () => [GLOBAL_SCOPE, ...deps.sources];

  const state = async () => {
    const overrides = new Map((await listDryRun(deps.db)).map((e) => [e.scope, e]));
    return scopes().map((scope) => {
      const o = overrides.get(scope);
      const configured = deps.configuredDryRun(scope);
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
        `scope: must be global or a configured source (${deps.sources.join(', ')})`,
        {
          errors: [{ field: 'scope', message: 'must be global or a configured source' }],
        },
      );
    }
    const before = (await state()).find((s) => s.scope === body.scope)!;
    const by = body.by ?? principalOf(res).label;
    await setDryRun(deps.db, body.scope, body.enabled, by);
    await recordAdminChange(deps.db, req, res, {
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
    const r = await deps.db.query<Record<string, unknown>>(
      `SELECT id, at, actor, role, token, action, target, before, after, request_id FROM killswitch_admin_audit
        ${q.cursor ? 'WHERE id < $2::bigint' : ''} ORDER BY id DESC LIMIT $1`,
      q.cursor ? [q.limit + 1, q.cursor] : [q.limit + 1],
    );
    const rows = r.rows.slice(0, q.limit);
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
      nextCursor: r.rows.length > q.limit ? String(rows[rows.length - 1]!.id) : null,
    });
  });

  return router;
}

/**
 * The read API (/api, viewer or admin token) over the audit, the sightings, the live state of
 * the runs, the outbound event catalogue and the subscriptions with their delivery history. Nothing here returns a secret: the audit holds none, and the store returns its columns
 * listed one by one (store/audit.ts), so evidence never leaks in. The admin routes are api/admin.ts.
 */
import { WorkflowNotFoundError } from '@temporalio/common';
import express from 'express';
import { z } from 'zod';
import { temporalUiRunUrl } from '../lib/config';
import type { Db } from '../lib/db';
import { isTemporalUnavailable, type TemporalTarget } from '../lib/dispatch';
import { currentStepQuery, OUTCOMES } from '../contracts/run';
import { HttpProblem } from '../contracts/errors';
import {
  EVENT_LEVELS,
  EVENT_TYPE_NAMES,
  EVENT_TYPES,
  EVENT_VERSION,
  eventJsonSchema,
} from '../contracts/events';
import { AUDIT_API_COLUMNS as AUDIT_COLUMNS, auditRowsOf, listAuditRows } from '../store/audit';
import { sightingsOf, workflowIdsNamed } from '../store/sightings';
import { getSubscription, listDeliveryAttempts, listSubscriptions } from '../store/subscriptions';
import { publicView } from '../lib/subscriptions';
import { createRuleReadRouter } from './rules';
import { issuesOf } from './sources/validate';

const camel = (s: string) => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

function toApi(row: Partial<Record<string, unknown>>): Record<string, unknown> {
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
export const printable = (max: number) =>
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

export const limitSchema = z
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
export function parseOr422<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const doc = value ?? {};
  const r = schema.safeParse(doc);
  if (r.success) return r.data;
  const errors = issuesOf(r.error, { doc, known: schema }).map((e) => ({
    field: e.field === '(body)' ? what : e.field,
    message: e.message,
  }));
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

const deliveriesQuery = z
  .object({
    limit: limitSchema,
    cursor: z
      .string()
      .regex(/^\d{1,19}$/, 'not a cursor returned by this API')
      .optional(),
  })
  .strict();

/** The subscription of `:id`, or 404 (an id of another shape is never looked up nor echoed). */
export async function subscriptionOr404(db: Db, id: string) {
  const found = /^[A-Za-z0-9_-]{1,64}$/.test(id) ? await getSubscription(db, id) : null;
  if (!found)
    throw new HttpProblem(404, 'unknown-subscription', 'Unknown subscription', 'no subscription has this id');
  return found;
}

/**
 * GET /api/detections, /api/detections/:id, /api/events/types, /api/subscriptions[/:id[/deliveries]]
 * and /api/rules[/:id] (api/rules.ts).
 */
export function createReadRouter(deps: ReadApiDeps): express.Router {
  const router = express.Router();

  router.get('/events/types', (_req, res) => {
    res.json({
      version: EVENT_VERSION,
      types: EVENT_TYPE_NAMES.map((type) => ({
        type,
        description: EVENT_TYPES[type],
        level: EVENT_LEVELS[type],
      })),
      schema: eventJsonSchema(),
    });
  });

  router.get('/subscriptions', async (_req, res) => {
    res.json({ subscriptions: (await listSubscriptions(deps.db)).map(publicView) });
  });

  router.get('/subscriptions/:id', async (req, res) => {
    res.json(publicView(await subscriptionOr404(deps.db, String(req.params.id))));
  });

  router.get('/subscriptions/:id/deliveries', async (req, res) => {
    const q = parseOr422(deliveriesQuery, req.query, 'query');
    const s = await subscriptionOr404(deps.db, String(req.params.id));
    // One more row than asked: its presence says a next page exists.
    const all = await listDeliveryAttempts(deps.db, s.id, {
      limit: q.limit + 1,
      ...(q.cursor ? { before: q.cursor } : {}),
    });
    const rows = all.slice(0, q.limit);
    res.json({
      deliveries: rows.map(({ id: _id, ...d }) => d),
      nextCursor: all.length > q.limit ? rows[rows.length - 1]!.id : null,
    });
  });

  router.use('/rules', createRuleReadRouter(deps.db));

  router.get('/detections', async (req, res) => {
    const q = parseOr422(listQuery, req.query, 'query');
    // One more row than asked: its presence says a next page exists.
    const all = await listAuditRows(deps.db, { ...q, limit: q.limit + 1 });
    const rows = all.slice(0, q.limit);
    const last = rows[rows.length - 1];
    const nextCursor =
      all.length > q.limit && last ? encodeCursor(String(last.recorded_key), String(last.id)) : null;
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
    const found = await workflowIdsNamed(deps.db, id);
    const workflowId = found[0]?.workflow_id;
    if (!workflowId)
      throw new HttpProblem(
        404,
        'unknown-detection',
        'Unknown detection',
        `no detection or workflow with id ${id}`,
      );
    const [audit, sightings, live] = await Promise.all([
      auditRowsOf(deps.db, workflowId),
      sightingsOf(deps.db, workflowId),
      liveStatus(deps.temporal, workflowId),
    ]);
    res.json({
      id,
      workflowId,
      ...(found.length > 1 ? { otherWorkflowIds: found.slice(1).map((r) => r.workflow_id) } : {}),
      live,
      audit: audit.map(toApi),
      sightings: sightings.map((s) => ({
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

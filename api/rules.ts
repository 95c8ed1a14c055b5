/**
 * Outbound rules over HTTP (docs/events.md#rules): /admin/rules (admin: create, PATCH as an RFC 7396
 * merge, PUT as a replacement, DELETE, enable and disable, every change in the admin audit) and
 * /api/rules (viewer: read, with the execution counts). A config rule (origin config, the inventory
 * file's) is read-only here except for its runtime switch: enabling and disabling.
 */
import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import { HttpProblem } from '../contracts/errors';
import type { Db } from '../lib/db';
import { editableRule, ruleSchema, type RuleSpec, type RuleView } from '../lib/rules';
import { mergePatch } from '../lib/subscriptions';
import {
  createRule,
  deleteRule,
  getRule,
  listRules,
  RuleNameTakenError,
  rulesReferencing,
  setRuleEnabled,
  unknownActionSubscriptions,
  updateRule,
} from '../store/rules';
import { invalid, objectBody, readJsonBody } from './body';
import { issuesOf, schemaKeys } from './sources/validate';

/** Every field name of a rule body: the words a 422 may echo. */
const RULE_KEYS: ReadonlySet<string> = new Set([...schemaKeys(ruleSchema), 'by']);

/** One admin change, as api/admin.ts's recordAdminChange writes it. */
interface RuleChange {
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  by: string;
}

export interface RuleAdminDeps {
  db: Db;
  /** The inventory file config rules are declared in (named by the 409 of a change). */
  inventoryFile?: string;
  /** The `by` of a body (422 when bad), or the token's label. */
  byOf: (res: Response, given: unknown) => string;
  /** Appends one change to the admin audit. */
  record: (req: Request, res: Response, change: RuleChange) => Promise<void>;
}

/** The rule of `:id`, or 404 (an id of another shape is never looked up nor echoed). */
export async function ruleOr404(db: Db, id: string): Promise<RuleView> {
  const found = /^[A-Za-z0-9_-]{1,64}$/.test(id) ? await getRule(db, id) : null;
  if (!found) throw new HttpProblem(404, 'unknown-rule', 'Unknown rule', 'no rule has this id');
  return found;
}

/**
 * 409 when a rule's action names the subscription: deleting or renaming it would leave the rule
 * pointing at nothing. The answer names the rules (`rules: [{ id, name }]`).
 */
export async function refuseIfRulesName(
  db: Db,
  subscriptionName: string,
  change: 'deleted' | 'renamed',
): Promise<void> {
  const rules = await rulesReferencing(db, subscriptionName);
  if (rules.length === 0) return;
  throw new HttpProblem(
    409,
    'subscription-in-use',
    'Subscription in use',
    `subscription ${subscriptionName} cannot be ${change}: it is an action of the rule${rules.length > 1 ? 's' : ''} ${rules
      .map((r) => r.name)
      .join(', ')}; change or delete ${rules.length > 1 ? 'them' : 'it'} first`,
    { rules: rules.map((r) => ({ id: r.id, name: r.name })) },
  );
}

/** A rule body checked as a whole: the schema (422 naming each field), then each action's subscription. */
async function validRule(db: Db, doc: unknown): Promise<RuleSpec> {
  const r = ruleSchema.safeParse(doc ?? {});
  if (!r.success)
    return invalid(
      issuesOf(r.error, { doc: doc ?? {}, known: RULE_KEYS }).map((e) => ({
        field: e.field === '(body)' ? 'body' : e.field,
        message: e.message,
      })),
    );
  const unknown = await unknownActionSubscriptions(db, r.data.actions);
  if (unknown.length > 0) invalid(unknown);
  return r.data;
}

const switchBody = z.object({ by: z.unknown() }).partial().strict();

/** GET /api/rules and /api/rules/:id (viewer). */
export function createRuleReadRouter(db: Db): express.Router {
  const router = express.Router();
  router.get('/', async (_req, res) => {
    res.json({ rules: await listRules(db) });
  });
  router.get('/:id', async (req, res) => {
    res.json(await ruleOr404(db, String(req.params.id)));
  });
  return router;
}

/**
 * /admin/rules: create, read, PATCH (RFC 7396 merge into the stored rule), PUT (full replacement: a
 * field left out takes its default), DELETE, POST /:id/enable and /:id/disable. Config rules: 409
 * for every change but the switch (the enable and disable routes, or a PATCH of `enabled` alone).
 */
export function createRuleAdminRouter(deps: RuleAdminDeps): express.Router {
  const { db, byOf } = deps;
  const router = express.Router();
  const body = readJsonBody({ limit: '64kb', known: RULE_KEYS });
  const writable = (r: RuleView) => {
    if (r.origin === 'config')
      throw new HttpProblem(
        409,
        'rule-from-config',
        'Rule from config',
        `rule ${r.name} is declared in the inventory file ${deps.inventoryFile ?? ''}`.trimEnd() +
          '; change it there (config rules are replaced at every start). Enabling and disabling it is allowed here: POST /admin/rules/:id/enable or /disable',
      );
    return r;
  };
  const nameTaken = (err: unknown): never => {
    if (err instanceof RuleNameTakenError)
      throw new HttpProblem(409, 'rule-exists', 'Rule exists', err.message, {
        errors: [{ field: 'name', message: 'another rule has this name' }],
      });
    throw err;
  };
  const gone = (): never => {
    throw new HttpProblem(404, 'unknown-rule', 'Unknown rule', 'no rule has this id');
  };

  /** The runtime switch of any rule, config ones included. */
  const setEnabled = async (req: Request, res: Response, before: RuleView, enabled: boolean, by: string) => {
    const after = (await setRuleEnabled(db, before.id, enabled)) ?? gone();
    await deps.record(req, res, {
      action: enabled ? 'rule.enable' : 'rule.disable',
      target: after.id,
      before,
      after,
      by,
    });
    req.log.warn({ rule: after.id, name: after.name, enabled, by }, 'rule switched');
    res.json(after);
  };

  router.get('/', async (_req, res) => {
    res.json({ rules: await listRules(db) });
  });

  router.post('/', body, async (req, res) => {
    const { by: byGiven, ...doc } = objectBody(req);
    const by = byOf(res, byGiven);
    const spec = await validRule(db, doc);
    const created = await createRule(db, spec).catch(nameTaken);
    await deps.record(req, res, {
      action: 'rule.create',
      target: created.id,
      before: null,
      after: created,
      by,
    });
    req.log.warn({ rule: created.id, name: created.name, by }, 'rule created');
    res.status(201).location(`${req.baseUrl}/${created.id}`).json(created);
  });

  router.get('/:id', async (req, res) => {
    res.json(await ruleOr404(db, String(req.params.id)));
  });

  /** PATCH merges into the stored rule, PUT replaces it; both then validate the whole. */
  const change = (mode: 'patch' | 'put') =>
    async function (req: Request, res: Response) {
      const before = await ruleOr404(db, String(req.params.id));
      const { by: byGiven, ...changes } = objectBody(req);
      const by = byOf(res, byGiven);
      const keys = Object.keys(changes);
      if (mode === 'patch' && keys.length === 1 && keys[0] === 'enabled') {
        if (typeof changes.enabled !== 'boolean')
          return invalid([{ field: 'enabled', message: 'must be true or false' }]);
        return setEnabled(req, res, before, changes.enabled, by);
      }
      writable(before);
      const spec = await validRule(
        db,
        mode === 'patch' ? mergePatch(editableRule(before), changes) : changes,
      );
      const after = (await updateRule(db, before.id, spec).catch(nameTaken)) ?? gone();
      await deps.record(req, res, { action: 'rule.update', target: after.id, before, after, by });
      req.log.warn({ rule: after.id, name: after.name, by, mode }, 'rule changed');
      res.json(after);
    };
  router.patch('/:id', body, change('patch'));
  router.put('/:id', body, change('put'));

  router.delete('/:id', body, async (req, res) => {
    const before = writable(await ruleOr404(db, String(req.params.id)));
    const by = byOf(res, objectBody(req).by);
    if (!(await deleteRule(db, before.id))) gone();
    await deps.record(req, res, { action: 'rule.delete', target: before.id, before, after: null, by });
    req.log.warn({ rule: before.id, name: before.name, by }, 'rule deleted');
    res.status(204).end();
  });

  for (const [path, enabled] of [
    ['/:id/enable', true],
    ['/:id/disable', false],
  ] as const)
    router.post(path, readJsonBody({ limit: '4kb', known: ['by'] }), async (req, res) => {
      const before = await ruleOr404(db, String(req.params.id));
      const doc = objectBody(req);
      const r = switchBody.safeParse(doc);
      if (!r.success) invalid(issuesOf(r.error, { doc, known: ['by'] }));
      await setEnabled(req, res, before, enabled, byOf(res, doc.by));
    });

  return router;
}

/**
 * killswitch_rules: the outbound rules the admin API and the inventory file manage (the schema and
 * the matching are lib/rules.ts; counting executions is the emission's, store/outbound.ts). An
 * action is stored as the subscription's name; a rule only ever names subscriptions that existed
 * when it was written (the API and the config sync check), and a subscription some rule names is
 * not deleted nor renamed through the API (api/admin.ts asks rulesReferencing).
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../lib/db';
import type { RuleConditions, RuleSpec, RuleView } from '../lib/rules';

/** Thrown when another rule has the name already. */
export class RuleNameTakenError extends Error {
  override name = 'RuleNameTakenError';
  constructor(readonly ruleName: string) {
    super(`a rule named ${ruleName} exists already`);
  }
}

interface Row {
  id: string;
  name: string;
  description: string | null;
  enabled: boolean;
  trigger: string[];
  conditions: RuleConditions | null;
  actions: string[];
  origin: 'api' | 'config';
  execution_count: string | number;
  last_executed_at: Date | string | null;
  last_event_type: string | null;
  created_at: Date | string;
  updated_at: Date | string;
}

const COLUMNS = `id, name, description, enabled, trigger, conditions, actions, origin, execution_count,
  last_executed_at, last_event_type, created_at, updated_at`;

const iso = (v: Date | string) => (v instanceof Date ? v.toISOString() : new Date(v).toISOString());

function viewOf(r: Row): RuleView {
  return {
    id: r.id,
    name: r.name,
    ...(r.description !== null ? { description: r.description } : {}),
    enabled: r.enabled,
    trigger: r.trigger,
    conditions: r.conditions ?? {},
    actions: r.actions.map((subscription) => ({ subscription })),
    origin: r.origin,
    executionCount: Number(r.execution_count),
    lastExecutedAt: r.last_executed_at === null ? null : iso(r.last_executed_at),
    lastEventType: r.last_event_type,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

const isUniqueViolation = (err: unknown) => (err as { code?: unknown } | null)?.code === '23505';

/** The columns a rule writes, in the order of the INSERTs below ($2 to $7). */
const fieldParams = (f: RuleSpec) => [
  f.name,
  f.description ?? null,
  f.enabled,
  f.trigger,
  JSON.stringify(f.conditions),
  f.actions.map((a) => a.subscription),
];

export async function createRule(
  db: Pick<Db, 'query'>,
  f: RuleSpec & { origin?: 'api' | 'config'; id?: string },
): Promise<RuleView> {
  try {
    const r = await db.query<Row>(
      `INSERT INTO killswitch_rules (id, name, description, enabled, trigger, conditions, actions, origin)
       VALUES ($1, $2, $3, $4, $5::text[], $6::jsonb, $7::text[], $8)
       RETURNING ${COLUMNS}`,
      [f.id ?? randomUUID(), ...fieldParams(f), f.origin ?? 'api'],
    );
    return viewOf(r.rows[0]!);
  } catch (err) {
    if (isUniqueViolation(err)) throw new RuleNameTakenError(f.name);
    throw err;
  }
}

export async function getRule(db: Pick<Db, 'query'>, id: string): Promise<RuleView | null> {
  const r = await db.query<Row>(`SELECT ${COLUMNS} FROM killswitch_rules WHERE id = $1`, [id]);
  return r.rows[0] ? viewOf(r.rows[0]) : null;
}

export async function getRuleByName(db: Pick<Db, 'query'>, name: string): Promise<RuleView | null> {
  const r = await db.query<Row>(`SELECT ${COLUMNS} FROM killswitch_rules WHERE name = $1`, [name]);
  return r.rows[0] ? viewOf(r.rows[0]) : null;
}

/** Every rule, by name. */
export async function listRules(
  db: Pick<Db, 'query'>,
  opts: { origin?: 'api' | 'config' } = {},
): Promise<RuleView[]> {
  const r = await db.query<Row>(
    `SELECT ${COLUMNS} FROM killswitch_rules ${opts.origin ? 'WHERE origin = $1' : ''} ORDER BY name`,
    opts.origin ? [opts.origin] : [],
  );
  return r.rows.map(viewOf);
}

/**
 * Replaces every field a request may send (PATCH merges before, PUT sends them all); the execution
 * count and the last execution stay. Returns the rule after, or null when there is none with this id.
 */
export async function updateRule(db: Pick<Db, 'query'>, id: string, f: RuleSpec): Promise<RuleView | null> {
  try {
    const r = await db.query<Row>(
      `UPDATE killswitch_rules
          SET name = $2, description = $3, enabled = $4, trigger = $5::text[], conditions = $6::jsonb,
              actions = $7::text[], updated_at = now()
        WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, ...fieldParams(f)],
    );
    return r.rows[0] ? viewOf(r.rows[0]) : null;
  } catch (err) {
    if (isUniqueViolation(err)) throw new RuleNameTakenError(f.name);
    throw err;
  }
}

/** Switches a rule on or off (any origin: the runtime switch). */
export async function setRuleEnabled(
  db: Pick<Db, 'query'>,
  id: string,
  enabled: boolean,
): Promise<RuleView | null> {
  const r = await db.query<Row>(
    `UPDATE killswitch_rules SET enabled = $2, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
    [id, enabled],
  );
  return r.rows[0] ? viewOf(r.rows[0]) : null;
}

export async function deleteRule(db: Pick<Db, 'query'>, id: string): Promise<boolean> {
  const r = await db.query<{ id: string }>('DELETE FROM killswitch_rules WHERE id = $1 RETURNING id', [id]);
  return r.rows.length > 0;
}

/** The rules (any origin) one of whose actions names this subscription, by name. */
export async function rulesReferencing(
  db: Pick<Db, 'query'>,
  subscriptionName: string,
): Promise<Array<{ id: string; name: string; origin: 'api' | 'config' }>> {
  const r = await db.query<{ id: string; name: string; origin: 'api' | 'config' }>(
    'SELECT id, name, origin FROM killswitch_rules WHERE $1 = ANY(actions) ORDER BY name',
    [subscriptionName],
  );
  return r.rows;
}

/**
 * `{ field, message }` for every action naming no subscription (any origin), the field as
 * `${prefix}actions[j].subscription`.
 */
export async function unknownActionSubscriptions(
  db: Pick<Db, 'query'>,
  actions: RuleSpec['actions'],
  prefix = '',
): Promise<Array<{ field: string; message: string }>> {
  const names = actions.map((a) => a.subscription);
  const r = await db.query<{ name: string }>(
    'SELECT name FROM killswitch_subscriptions WHERE name = ANY($1::text[])',
    [names],
  );
  const found = new Set(r.rows.map((x) => x.name));
  return names.flatMap((name, j) =>
    found.has(name)
      ? []
      : [{ field: `${prefix}actions[${j}].subscription`, message: `no subscription named ${name}` }],
  );
}

/**
 * Makes the origin='config' rows exactly `rules`, by name, in one transaction: a row keeps its id
 * and its execution count while its name stays in the file; a name gone from the file is deleted;
 * every field (enabled included: a runtime switch lasts until the next start) is the file's. A name
 * an API-created rule holds is refused: the file never takes over a row the API owns.
 */
export async function replaceConfigRules(
  db: Pick<Db, 'withSession'>,
  rules: readonly RuleSpec[],
): Promise<{ created: string[]; updated: string[]; removed: string[] }> {
  return db.withSession(async (s) => {
    await s.query('BEGIN');
    try {
      // Two ingress processes starting at once replace in turn.
      await s.query(`SELECT pg_advisory_xact_lock(hashtext('killswitch_rules:config'))`);
      const existing = await s.query<{ id: string; name: string; origin: string }>(
        'SELECT id, name, origin FROM killswitch_rules WHERE origin = $1 OR name = ANY($2::text[])',
        ['config', rules.map((x) => x.name)],
      );
      const taken = existing.rows.filter((r) => r.origin !== 'config').map((r) => r.name);
      if (taken.length > 0)
        throw new Error(
          `rules ${taken.join(', ')} of the inventory file have the name of a rule created through the API; rename one or delete the API's (DELETE /admin/rules/:id)`,
        );
      const byName = new Map(existing.rows.map((r) => [r.name, r.id]));
      const keep = new Set(rules.map((x) => x.name));
      const gone = existing.rows.filter((r) => !keep.has(r.name));
      if (gone.length > 0)
        await s.query('DELETE FROM killswitch_rules WHERE id = ANY($1::text[])', [gone.map((r) => r.id)]);
      const created: string[] = [];
      const updated: string[] = [];
      for (const f of rules) {
        const id = byName.get(f.name) ?? randomUUID();
        (byName.has(f.name) ? updated : created).push(f.name);
        await s.query(
          `INSERT INTO killswitch_rules (id, name, description, enabled, trigger, conditions, actions, origin)
           VALUES ($1, $2, $3, $4, $5::text[], $6::jsonb, $7::text[], 'config')
           ON CONFLICT (id) DO UPDATE SET
             description = EXCLUDED.description, enabled = EXCLUDED.enabled, trigger = EXCLUDED.trigger,
             conditions = EXCLUDED.conditions, actions = EXCLUDED.actions, updated_at = now()`,
          [id, ...fieldParams(f)],
        );
      }
      await s.query('COMMIT');
      return { created, updated, removed: gone.map((r) => r.name) };
    } catch (err) {
      await s.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

/**
 * The inventory's `rules:` written as the origin='config' rows, after checking that every action
 * names a subscription (any origin; call it after syncConfigSubscriptions). Called once at the
 * ingress's start; a problem stops the start with every bad field named.
 */
export async function syncConfigRules(
  db: Pick<Db, 'query' | 'withSession'>,
  inventory: { rules: readonly RuleSpec[] },
): Promise<{ created: string[]; updated: string[]; removed: string[] }> {
  const problems: string[] = [];
  for (const [i, rule] of inventory.rules.entries())
    for (const p of await unknownActionSubscriptions(db, rule.actions, `rules[${i}].`))
      problems.push(`  ${p.field}: ${p.message}`);
  if (problems.length > 0) throw new Error(`inventory rules are invalid:\n${problems.join('\n')}`);
  return replaceConfigRules(db, inventory.rules);
}

/**
 * Body decoding, parsing and schema validation shared by every source and every JSON route: one way
 * to read bytes and one way to say what is wrong.
 *
 * Rules (docs/sources.md, "Hostile bytes"):
 * - a body is UTF-8 (strictly: an invalid byte sequence is 400, never replaced by U+FFFD);
 * - no string of a JSON body, key or value, may hold U+0000 or a lone UTF-16 surrogate: PostgreSQL's
 *   text, json and jsonb cannot store them and Slack mangles them, so such a delivery would be
 *   accepted and then stick. Refused at the ingress with 422 naming the field, secret fields included
 *   (no real credential holds either, and one rule everywhere is the simplest to trust);
 * - an error never echoes a value, nor a key the schema does not know: unknown keys are named by
 *   position (`credentialRef.<key#2>`), since a sender may paste a secret where a key belongs.
 */
import type { z } from 'zod';
import { HttpProblem } from '../../contracts/errors';

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The body as a string; 400 when it is not UTF-8. */
export function decodeUtf8(raw: Uint8Array, what = 'the body'): string {
  try {
    return UTF8.decode(raw);
  } catch {
    throw new HttpProblem(400, 'invalid-utf8', 'Body is not UTF-8', `${what} is not valid UTF-8`);
  }
}

// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why PostgreSQL or Slack cannot hold this string, or undefined when they can. */
export function unstorable(s: string): string | undefined {
  const m = UNSTORABLE.exec(s);
  if (!m) return undefined;
  return m[0] === '\u0000'
    ? 'contains U+0000, which cannot be stored'
    : 'contains a lone UTF-16 surrogate, which cannot be stored';
}

/** Key names a schema declares (every object shape, at any depth): the words an error may echo. */
export function schemaKeys(schema: z.ZodType | undefined): ReadonlySet<string> {
  const out = new Set<string>();
  const seen = new Set<unknown>();
  const walk = (t: unknown) => {
    const def = (t as { _zod?: { def?: Record<string, unknown> } } | undefined)?._zod?.def;
    if (!def || seen.has(t)) return;
    seen.add(t);
    if (def.shape && typeof def.shape === 'object') {
      for (const [k, v] of Object.entries(def.shape as Record<string, unknown>)) {
        out.add(k);
        walk(v);
      }
    }
    for (const k of ['innerType', 'element', 'valueType', 'in', 'out', 'left', 'right', 'catchall'])
      walk(def[k]);
    if (Array.isArray(def.options)) def.options.forEach(walk);
    if (Array.isArray(def.items)) def.items.forEach(walk);
  };
  walk(schema);
  return out;
}

export type KnownKeys = z.ZodType | Iterable<string>;

const keysOfSchema = new WeakMap<object, ReadonlySet<string>>();

function knownSet(known: KnownKeys | undefined): ReadonlySet<string> {
  if (!known) return new Set();
  if (typeof (known as { safeParse?: unknown }).safeParse === 'function') {
    const schema = known as z.ZodType;
    let keys = keysOfSchema.get(schema);
    if (!keys) keysOfSchema.set(schema, (keys = schemaKeys(schema)));
    return keys;
  }
  return new Set(known as Iterable<string>);
}

/** `<key#n>`: the n-th key (1-based) of its object, when the key itself may not be echoed. */
function keyByPosition(parent: unknown, key: string): string {
  if (parent && typeof parent === 'object' && !Array.isArray(parent)) {
    const i = Object.keys(parent).indexOf(key);
    if (i >= 0) return `<key#${i + 1}>`;
  }
  return '<key>';
}

/**
 * `a.b[0].c`, under an optional prefix such as `line[3]` or `[2]`. A key is written as it is only
 * when `known` names it (the schema's own words); any other key by its position in `doc`.
 */
export function fieldPath(
  path: ReadonlyArray<PropertyKey>,
  prefix = '',
  doc?: unknown,
  known: ReadonlySet<string> = new Set(),
): string {
  let cur: unknown = doc;
  let tail = '';
  for (const p of path) {
    if (typeof p === 'number') tail += `[${p}]`;
    else {
      const key = String(p);
      tail += `.${known.has(key) ? key : keyByPosition(cur, key)}`;
    }
    cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[p as string] : undefined;
  }
  const joined = `${prefix}${tail}`.replace(/^\./, '');
  return joined || '(body)';
}

/**
 * Issues as `{ field, message }`, never echoing a value or an unknown key. zod's own messages name
 * only types, bounds and the schema's options, except `unrecognized_keys`, which quotes the keys.
 */
export function issuesOf(
  error: z.ZodError,
  opts: { doc: unknown; known?: KnownKeys; prefix?: string },
): Array<{ field: string; message: string }> {
  const known = knownSet(opts.known);
  const prefix = opts.prefix ?? '';
  const out: Array<{ field: string; message: string }> = [];
  for (const i of error.issues) {
    if (i.code === 'unrecognized_keys') {
      const base = fieldPath(i.path, prefix, opts.doc, known);
      let parent: unknown = opts.doc;
      for (const p of i.path)
        parent =
          parent && typeof parent === 'object' ? (parent as Record<PropertyKey, unknown>)[p] : undefined;
      for (const k of i.keys) {
        const name = keyByPosition(parent, k);
        out.push({ field: base === '(body)' ? name : `${base}.${name}`, message: 'unknown field' });
      }
      continue;
    }
    const message =
      i.code === 'invalid_key'
        ? `invalid key${i.issues[0]?.message ? `: ${i.issues[0].message}` : ''}`
        : i.message;
    out.push({ field: fieldPath(i.path, prefix, opts.doc, known), message });
  }
  return out;
}

export function validateWith<S extends z.ZodType>(
  schema: S,
  doc: unknown,
  problem: { slug: string; title: string; status?: number; prefix?: string },
): z.infer<S> {
  const r = schema.safeParse(doc);
  if (r.success) return r.data;
  const errors = issuesOf(r.error, { doc, known: schema, prefix: problem.prefix });
  throw new HttpProblem(
    problem.status ?? 422,
    problem.slug,
    problem.title,
    errors.map((e) => `${e.field}: ${e.message}`).join('; '),
    { errors },
  );
}

/**
 * 422 naming every string (key or value) of a parsed document that PostgreSQL or Slack cannot
 * store. Keys the caller does not know are named by position.
 */
export function assertStorable(
  doc: unknown,
  opts: { known?: KnownKeys; prefix?: string; status?: number } = {},
): void {
  const known = knownSet(opts.known);
  const errors: Array<{ field: string; message: string }> = [];
  // Iterative, in document order, at any depth: a string nested deeper than any schema looks is
  // still a string of the body.
  const stack: Array<[unknown, string]> = [[doc, opts.prefix ?? '']];
  while (stack.length > 0 && errors.length < 20) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      const why = unstorable(v);
      if (why) errors.push({ field: path || '(body)', message: why });
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (v && typeof v === 'object') {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, x] = entries[i]!;
        const keyWhy = unstorable(k);
        const name = !keyWhy && known.has(k) ? k : `<key#${i + 1}>`;
        const child = path ? `${path}.${name}` : name;
        if (keyWhy) errors.push({ field: child, message: `key ${keyWhy}` });
        stack.push([x, child]);
      }
    }
  }
  if (errors.length === 0) return;
  throw new HttpProblem(
    opts.status ?? 422,
    'unstorable-string',
    'String cannot be stored',
    errors.map((e) => `${e.field}: ${e.message}`).join('; '),
    { errors },
  );
}

/** JSON.parse without echoing the text: V8 quotes the text around a parse error, which may be a secret. */
export function parseJsonText(
  text: string,
  what = 'the body',
  opts: { known?: KnownKeys; prefix?: string; status?: number } = {},
): unknown {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    const pos = /at position (\d+)/.exec((err as Error).message);
    throw new HttpProblem(
      400,
      'malformed-json',
      'Malformed JSON',
      `${what} is not valid JSON${pos ? ` (error at character ${pos[1]})` : ''}`,
    );
  }
  assertStorable(doc, opts);
  return doc;
}

/**
 * The one way a JSON body is read: strict UTF-8 (400), JSON (400), storable strings (422, or
 * `status`). `known` (a schema or key names) lets errors name keys instead of positions.
 */
export function parseJsonBody(
  raw: Uint8Array,
  what = 'the body',
  opts: { known?: KnownKeys; prefix?: string; status?: number } = {},
): unknown {
  return parseJsonText(decodeUtf8(raw, what), what, opts);
}

/** parseJsonBody then validateWith, with the schema's keys named in both. */
export function validateJsonBody<S extends z.ZodType>(
  schema: S,
  raw: Uint8Array,
  problem: { slug: string; title: string; status?: number; prefix?: string },
): z.infer<S> {
  const doc = parseJsonBody(raw, 'the body', {
    known: schema,
    ...(problem.status ? { status: problem.status } : {}),
    ...(problem.prefix ? { prefix: problem.prefix } : {}),
  });
  return validateWith(schema, doc, problem);
}

/**
 * A header used as an id (webhook-id, X-GitHub-Delivery): printable ASCII only, so it can be
 * stored and logged as it is. 400 naming the header, never its value.
 */
export function headerId(
  headers: Record<string, string | string[] | undefined>,
  name: string,
  max = 256,
): string | undefined {
  const v = headers[name.toLowerCase()];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !new RegExp(`^[\\x21-\\x7e]{1,${max}}$`).test(v)) {
    throw new HttpProblem(
      400,
      'invalid-header',
      'Invalid header',
      `${name} must be 1 to ${max} printable ASCII characters`,
    );
  }
  return v;
}

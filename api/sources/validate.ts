/** Body parsing and schema validation shared by every source: one way to say what is wrong. */
import type { z } from 'zod';
import { HttpProblem } from '../problem';

/** JSON.parse without echoing the body: V8 quotes the text around a parse error, which may be a secret. */
export function parseJsonBody(raw: Buffer, what = 'the body'): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (err) {
    const at = /at position (\d+)/.exec((err as Error).message);
    throw new HttpProblem(400, 'malformed-json', 'Malformed JSON', `${what} is not valid JSON${at ? ` (error at byte ${at[1]})` : ''}`);
  }
}

/** `a.b[0].c`, under an optional prefix such as `line[3]` or `[2]`. */
export function fieldPath(path: ReadonlyArray<PropertyKey>, prefix = ''): string {
  const tail = path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  const joined = `${prefix}${tail}`.replace(/^\./, '');
  return joined || '(body)';
}

export function validateWith<S extends z.ZodType>(
  schema: S,
  doc: unknown,
  problem: { slug: string; title: string; status?: number; prefix?: string },
): z.infer<S> {
  const r = schema.safeParse(doc);
  if (r.success) return r.data;
  const errors = r.error.issues.map((i) => ({ field: fieldPath(i.path, problem.prefix), message: i.message }));
  throw new HttpProblem(problem.status ?? 422, problem.slug, problem.title, errors.map((e) => `${e.field}: ${e.message}`).join('; '), { errors });
}

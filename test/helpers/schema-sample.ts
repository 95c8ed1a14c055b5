/**
 * The smallest instance a JSON schema accepts: required properties only, first enum value, first
 * oneOf/anyOf branch, formats honoured. Used to build webhook payloads from GitHub's published
 * schemas, so tests send what the schema says GitHub sends, then override the fields that matter.
 */
type Schema = Record<string, any>;

export function sampleOf(schema: Schema, root: Schema, depth = 0): unknown {
  if (depth > 40) return null;
  if (schema.$ref) {
    const name = String(schema.$ref).replace('#/definitions/', '');
    return sampleOf(root.definitions[name], root, depth + 1);
  }
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return schema.enum[0];
  if (schema.allOf) {
    return schema.allOf.reduce((acc: Record<string, unknown>, s: Schema) => {
      const v = sampleOf(s, root, depth + 1);
      return v && typeof v === 'object' && !Array.isArray(v) ? { ...acc, ...(v as object) } : acc;
    }, {});
  }
  if (schema.oneOf) return sampleOf(schema.oneOf[0], root, depth + 1);
  if (schema.anyOf) return sampleOf(schema.anyOf[0], root, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const key of schema.required ?? [])
        out[key] = sampleOf(schema.properties?.[key] ?? {}, root, depth + 1);
      return out;
    }
    case 'array':
      return [];
    case 'integer':
    case 'number':
      return schema.minimum ?? 1;
    case 'boolean':
      return false;
    case 'null':
      return null;
    case 'string':
      if (schema.format === 'date-time') return '2026-11-20T10:00:00Z';
      if (schema.format === 'uri' || schema.format === 'uri-template') return 'https://api.github.com/x';
      if (schema.format === 'email') return 'dev@example.com';
      if (schema.pattern) return '';
      return 'x';
    default:
      return null;
  }
}

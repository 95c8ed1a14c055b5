/**
 * The inventory: which system owns which credential. A YAML or JSON file validated at startup;
 * connection secrets are never in the file, only the names of the env vars that hold them.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Detection } from './detection';
import { knownSecretsSchema } from './known-secrets';
import { policySchema, sourcesSchema } from './sources-config';

const systemName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, - and _, at most 63 characters');

const envVarName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name (A-Z, 0-9, _)');

/** Role names or glob patterns (`*` any run of characters, `?` one character). */
const rolePattern = z.string().min(1).max(63).regex(/^[^\s]+$/, 'must not contain whitespace');

export const postgresSystemSchema = z
  .object({
    name: systemName,
    kind: z.literal('postgres'),
    description: z.string().max(500).optional(),
    /** Env var holding the admin connection string (a role with CREATEROLE and pg_signal_backend). */
    adminUrlEnv: envVarName,
    /** Roles this system owns. */
    roles: z.array(rolePattern).min(1),
    /** Host names detections may name for this system; when set, a detection naming another host does not match. */
    hosts: z.array(z.string().min(1).max(255)).optional(),
  })
  .strict();

export const systemSchema = z.discriminatedUnion('kind', [postgresSystemSchema]);

export const inventorySchema = z
  .object({
    version: z.literal(1).default(1),
    systems: z.array(systemSchema).default([]),
    sources: sourcesSchema.default(sourcesSchema.parse({})),
    policy: policySchema.default(policySchema.parse({})),
    knownSecrets: knownSecretsSchema,
  })
  .strict()
  .superRefine((inv, ctx) => {
    const seen = new Set<string>();
    inv.systems.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: ['systems', i, 'name'], message: `duplicate system name "${s.name}"` });
      seen.add(s.name);
    });
  });

export type PostgresSystem = z.infer<typeof postgresSystemSchema>;
export type OwningSystem = z.infer<typeof systemSchema>;
export type Inventory = z.infer<typeof inventorySchema>;

export class InventoryError extends Error {
  override name = 'InventoryError';
}

function formatPath(p: ReadonlyArray<PropertyKey>): string {
  return p.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '');
}

/** Validates an already-parsed document; errors name the file and every bad field by path. */
export function parseInventory(doc: unknown, origin = 'inventory'): Inventory {
  const r = inventorySchema.safeParse(doc ?? {});
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${formatPath(i.path) || '(root)'}: ${i.message}`);
    throw new InventoryError(`${origin} is invalid:\n${lines.join('\n')}`);
  }
  return r.data;
}

export function loadInventoryFile(file: string): Inventory {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InventoryError(`cannot read inventory ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new InventoryError(`${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  return parseInventory(doc, file);
}

/**
 * Checks what the file cannot: every env var the inventory names is set and well-formed.
 * Returns the resolved connection strings by system name.
 */
export function resolveInventoryEnv(inv: Inventory, env: Record<string, string | undefined>): Map<string, string> {
  const out = new Map<string, string>();
  const problems: string[] = [];
  inv.systems.forEach((s, i) => {
    const value = env[s.adminUrlEnv];
    if (!value) problems.push(`  systems[${i}].adminUrlEnv: environment variable ${s.adminUrlEnv} is not set`);
    else if (!/^postgres(ql)?:\/\//.test(value))
      problems.push(`  systems[${i}].adminUrlEnv: ${s.adminUrlEnv} must be a postgres:// connection string`);
    else out.set(s.name, value);
  });
  if (problems.length) throw new InventoryError(`inventory is incomplete:\n${problems.join('\n')}`);
  return out;
}

export function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

export type OwnerMatch =
  | { kind: 'owned'; system: OwningSystem }
  | { kind: 'unowned'; reason: string };

/** Finds the one system that owns the credential a detection names. Ambiguity is not ownership. */
export function matchOwner(inv: Inventory, detection: Pick<Detection, 'credentialType' | 'credentialRef'>): OwnerMatch {
  if (detection.credentialType !== 'postgres_password') {
    return { kind: 'unowned', reason: `no system in the inventory handles ${detection.credentialType}` };
  }
  const role = detection.credentialRef.role;
  if (!role) return { kind: 'unowned', reason: 'the detection names no PostgreSQL role' };
  const host = detection.credentialRef.host?.toLowerCase();
  const candidates = inv.systems.filter(
    (s) =>
      s.kind === 'postgres' &&
      s.roles.some((p) => globToRegExp(p).test(role)) &&
      (!host || !s.hosts || s.hosts.some((h) => h.toLowerCase() === host)),
  );
  if (candidates.length === 1) return { kind: 'owned', system: candidates[0]! };
  if (candidates.length === 0) return { kind: 'unowned', reason: `no postgres system owns role "${role}"${host ? ` on ${host}` : ''}` };
  return {
    kind: 'unowned',
    reason: `role "${role}" matches ${candidates.length} systems (${candidates.map((c) => c.name).join(', ')}); name the host`,
  };
}

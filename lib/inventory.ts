/**
 * The inventory: which system owns which credential. A YAML or JSON file validated at startup;
 * connection secrets are never in the file, only the names of the env vars that hold them.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Detection } from '../contracts/detection';
import { knownSecretsSchema } from './known-secrets';
import { ruleSchema } from './rules';
import { policySchema, sourcesSchema } from './sources-config';
import { configSubscriptionSchema, outboundConfigSchema } from './subscriptions';
import { handles, kindOf, systemSchema, type OwningSystem } from './systems';

export { systemSchema, type OwningSystem, type PostgresSystem } from './systems';

export const inventorySchema = z
  .object({
    version: z.literal(1).default(1),
    systems: z.array(systemSchema).default([]),
    sources: sourcesSchema.default(sourcesSchema.parse({})),
    policy: policySchema.default(policySchema.parse({})),
    knownSecrets: knownSecretsSchema,
    /** Outbound event subscriptions kept as code: replaced at every start of the ingress (docs/events.md). */
    subscriptions: z.array(configSubscriptionSchema).max(200).default([]),
    outbound: outboundConfigSchema.default(outboundConfigSchema.parse({})),
    /** Outbound rules kept as code: replaced at every start of the ingress (docs/events.md#rules). */
    rules: z.array(ruleSchema).max(200).default([]),
  })
  .strict()
  .superRefine((inv, ctx) => {
    const names = new Set<string>();
    inv.subscriptions.forEach((s, i) => {
      if (names.has(s.name))
        ctx.addIssue({
          code: 'custom',
          path: ['subscriptions', i, 'name'],
          message: `duplicate subscription name "${s.name}"`,
        });
      names.add(s.name);
    });
    const rules = new Set<string>();
    inv.rules.forEach((r, i) => {
      if (rules.has(r.name))
        ctx.addIssue({
          code: 'custom',
          path: ['rules', i, 'name'],
          message: `duplicate rule name "${r.name}"`,
        });
      rules.add(r.name);
    });
    // Actions naming a subscription are checked at the ingress's start (syncConfigRules).
    // Destinations are checked at the ingress's start, with OUTBOUND_ALLOW_HOSTS and DNS (syncConfigSubscriptions).
    const seen = new Set<string>();
    inv.systems.forEach((s, i) => {
      if (seen.has(s.name))
        ctx.addIssue({
          code: 'custom',
          path: ['systems', i, 'name'],
          message: `duplicate system name "${s.name}"`,
        });
      seen.add(s.name);
      const can = kindOf(s).supports;
      if (s.mode === 'graceful' && !can.graceful)
        ctx.addIssue({
          code: 'custom',
          path: ['systems', i, 'mode'],
          message: `${s.kind} systems cannot keep two valid values; use emergency`,
        });
      if (s.mode === 'graceful' && s.sink.kind === 'none')
        ctx.addIssue({
          code: 'custom',
          path: ['systems', i, 'sink'],
          message: 'graceful mode needs a sink to deliver the replacement to',
        });
      if (s.quarantine && !can.quarantine)
        ctx.addIssue({
          code: 'custom',
          path: ['systems', i, 'quarantine'],
          message: `${s.kind} systems have no reversible quarantine`,
        });
    });
  });

export type Inventory = z.infer<typeof inventorySchema>;

export class InventoryError extends Error {
  override name = 'InventoryError';
}

function formatPath(p: ReadonlyArray<PropertyKey>): string {
  return p.reduce<string>(
    (acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)),
    '',
  );
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
    throw new InventoryError(
      `${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  return parseInventory(doc, file);
}

/**
 * Checks what the file cannot: every env var the inventory names (admin connections, sink and
 * session-store credentials) is set and well-formed. Returns the environment, checked; providers
 * read their secrets from it.
 */
export function resolveInventoryEnv(
  inv: Inventory,
  env: Record<string, string | undefined>,
): Readonly<Record<string, string | undefined>> {
  const problems: string[] = [];
  inv.systems.forEach((s, i) => {
    for (const req of kindOf(s).env(s, `systems[${i}]`)) {
      const value = env[req.name];
      if (!value) problems.push(`  ${req.path}: environment variable ${req.name} is not set`);
      else {
        const problem = req.check?.(value);
        if (problem) problems.push(`  ${req.path}: ${req.name} ${problem}`);
      }
    }
  });
  if (problems.length) throw new InventoryError(`inventory is incomplete:\n${problems.join('\n')}`);
  return Object.freeze({ ...env });
}

export type OwnerMatch = { kind: 'owned'; system: OwningSystem } | { kind: 'unowned'; reason: string };

/** Finds the one system that owns the credential a detection names. Ambiguity is not ownership. */
export function matchOwner(
  inv: Inventory,
  detection: Pick<Detection, 'credentialType' | 'credentialRef'>,
): OwnerMatch {
  const able = inv.systems.filter((s) => handles(s, detection.credentialType));
  if (able.length === 0)
    return { kind: 'unowned', reason: `no system in the inventory handles ${detection.credentialType}` };
  const candidates = able.filter((s) => kindOf(s).owns(s, detection.credentialRef, detection.credentialType));
  if (candidates.length === 1) return { kind: 'owned', system: candidates[0]! };
  const what = kindOf(able[0]!).describe(detection.credentialRef);
  if (candidates.length === 0)
    return {
      kind: 'unowned',
      reason: `no ${able
        .map((s) => s.kind)
        .filter((k, i, a) => a.indexOf(k) === i)
        .join('/')} system owns ${what}`,
    };
  return {
    kind: 'unowned',
    reason: `${what} matches ${candidates.length} systems (${candidates.map((c) => c.name).join(', ')}); name the host`,
  };
}

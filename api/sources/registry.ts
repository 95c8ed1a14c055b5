/**
 * The ingress's sources, as a table. A new scanner is one file in api/sources/ exporting a
 * SourceDefinition plus one line in SOURCES; a new sender of its own JSON is configuration only
 * (`sources.custom`). The `sources:` schema, the names a policy rule may use, the names a custom
 * sender may not take and the startup environment checks all derive from the list.
 */
import { z } from 'zod';
import type { Config } from '../../lib/config';
import { InventoryError, type Inventory } from '../../lib/inventory';
import { envProblems, policySourceProblems, type EnvRequirement } from '../../lib/sources-config';
import type { ServerKeys } from '../../contracts/keys';
import type { AppDeps, RegisteredSource } from '../app';
import { gitleaksSource, kingfisherSource, truffleHogSource } from './ci-reports';
import { customSource } from './custom';
import type { SourceBuildContext, SourceDefinition } from './definition';
import { genericSource } from './generic';
import { githubSource } from './github';
import { githubPartnerSource } from './github-partner';
import { gitguardianSource } from './gitguardian';
import { gitlabSource } from './gitlab';
import { noseyParkerSource } from './noseyparker';

/** Every source, in the order their startup problems are listed. */
export const SOURCES: readonly SourceDefinition[] = [
  genericSource,
  truffleHogSource,
  gitleaksSource,
  kingfisherSource,
  noseyParkerSource,
  githubSource,
  githubPartnerSource,
  gitguardianSource,
  gitlabSource,
  customSource,
];

/** The `sources:` section as the ingress validates it: each key is one definition's schema. */
export const sourcesConfigSchema = z
  .object(Object.fromEntries(SOURCES.map((d) => [d.name, d.schema])))
  .strict();

/** The built-in sources, by the name their detections carry (and their route): no custom sender may take one. */
export const BUILTIN_SOURCES: readonly string[] = SOURCES.filter((d) => !d.list).map((d) => d.name);

export interface SourceBuildInput {
  config: Config;
  inventory: Inventory;
  keys: ServerKeys;
  env: Record<string, string | undefined>;
  /**
   * Generic secrets resolved at boot (GENERIC_WEBHOOK_SECRETS, or the embedded default's generated
   * file). Used only while `sources.generic.secretsEnv` is that default; another name is read here.
   */
  genericSecrets: readonly string[];
}

function formatPath(p: ReadonlyArray<PropertyKey>): string {
  return p.reduce<string>(
    (acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)),
    '',
  );
}

/**
 * Each section through its source's schema, with its defaults. lib/inventory.ts checked only what
 * every section shares; here a field a source does not take, or a bad value, is refused the way the
 * inventory refuses one: `<file> is invalid:` and a line per field.
 */
export function parseSources(inventory: Inventory, origin = 'inventory'): Record<string, unknown> {
  const r = sourcesConfigSchema.safeParse(inventory.sources);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${formatPath(['sources', ...i.path])}: ${i.message}`);
    throw new InventoryError(`${origin} is invalid:\n${lines.join('\n')}`);
  }
  return r.data;
}

/**
 * Every field of `sources:` takes effect here or is refused: each environment variable the section
 * names must be set (and well-formed), and each source a policy rule names must exist, before the
 * ingress takes a request.
 */
function checkSources(
  parsed: Record<string, unknown>,
  inventory: Inventory,
  env: Record<string, string | undefined>,
): void {
  const required: EnvRequirement[] = SOURCES.flatMap((d) => d.env(parsed[d.name], `sources.${d.name}`));
  const known = new Set<string>([
    ...BUILTIN_SOURCES,
    ...SOURCES.flatMap((d) => (d.list && d.names ? d.names(parsed[d.name]) : [])),
  ]);
  const problems = [...envProblems(required, env), ...policySourceProblems(inventory.policy, known)];
  if (problems.length) throw new InventoryError(`sources are incomplete:\n${problems.join('\n')}`);
}

export function checkSourcesEnv(inventory: Inventory, env: Record<string, string | undefined>): void {
  checkSources(parseSources(inventory), inventory, env);
}

export function buildSources(input: SourceBuildInput): {
  sources: RegisteredSource[];
  routers: NonNullable<AppDeps['routers']>;
} {
  const { config, inventory } = input;
  const parsed = parseSources(inventory, config.inventoryFile ?? 'inventory');
  checkSources(parsed, inventory, input.env);
  const ctx: SourceBuildContext = {
    keys: input.keys,
    env: input.env,
    defaultBodyLimit: config.webhook.bodyLimitBytes,
    knownSecrets: inventory.knownSecrets,
    genericSecrets: input.genericSecrets,
  };
  const reserved = new Set<string>(BUILTIN_SOURCES);
  const taken = new Set<string>();
  const sources: RegisteredSource[] = [];
  const routers: NonNullable<AppDeps['routers']> = [];
  for (const def of SOURCES) {
    const built = def.build(parsed[def.name], ctx);
    for (const name of [
      ...(built.sources ?? []).map((s) => s.handler.name),
      ...(built.routers ?? []).map((r) => r.name),
    ]) {
      if (taken.has(name) || (def.list && reserved.has(name)))
        throw new Error(`sources.${def.name}: "${name}" is already the name of a source`);
      taken.add(name);
    }
    sources.push(...(built.sources ?? []));
    routers.push(...(built.routers ?? []));
  }
  return { sources, routers };
}

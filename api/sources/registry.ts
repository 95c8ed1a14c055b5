/**
 * Builds the ingress's sources from the config file. A new scanner is one file in api/sources/
 * plus one entry here; a new sender of its own JSON is configuration only (`sources.custom`).
 */
import type { Config } from '../../lib/config';
import { InventoryError, type Inventory } from '../../lib/inventory';
import { BUILTIN_SOURCES, DEFAULT_GENERIC_SECRETS_ENV, policySourceProblems, secretList, sourcesEnvProblems } from '../../lib/sources-config';
import type { ServerKeys } from '../../contracts/keys';
import type { AppDeps, RegisteredSource } from '../app';
import { createGitleaksSource, createKingfisherSource, createTruffleHogSource } from './ci-reports';
import { createCustomSource } from './custom';
import { createGenericSource } from './generic';
import { createGitHubSource } from './github';
import { createGitHubPartnerSource } from './github-partner';
import { createGitGuardianSource } from './gitguardian';
import { createGitLabRouter } from './gitlab';

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

/**
 * Every field of `sources:` takes effect here or is refused: each environment variable the section
 * names must be set (and well-formed) before the ingress takes a request.
 */
export function checkSourcesEnv(inventory: Inventory, env: Record<string, string | undefined>): void {
  const problems = [...sourcesEnvProblems(inventory.sources, env), ...policySourceProblems(inventory.sources, inventory.policy)];
  if (problems.length) throw new InventoryError(`sources are incomplete:\n${problems.join('\n')}`);
}

export function buildSources(input: SourceBuildInput): { sources: RegisteredSource[]; routers: NonNullable<AppDeps['routers']> } {
  const { config, inventory, keys } = input;
  checkSourcesEnv(inventory, input.env);
  const s = inventory.sources;
  const limit = (v: number | undefined) => v ?? config.webhook.bodyLimitBytes;
  const genericSecrets = s.generic.secretsEnv === DEFAULT_GENERIC_SECRETS_ENV ? input.genericSecrets : secretList(input.env[s.generic.secretsEnv]);
  const sources: RegisteredSource[] = [
    {
      handler: createGenericSource({ secrets: genericSecrets, bodyLimitBytes: limit(s.generic.bodyLimit), keys }),
      enabled: s.generic.enabled,
      perMinute: s.generic.rateLimit.perMinute,
    },
  ];
  const ctx = { keys, env: input.env };
  if (s.trufflehog) {
    const h = createTruffleHogSource(s.trufflehog, ctx, config.webhook.bodyLimitBytes);
    sources.push({ handler: h, enabled: s.trufflehog.enabled, perMinute: s.trufflehog.rateLimit.perMinute, contentTypes: h.contentTypes });
  }
  if (s.gitleaks) {
    const h = createGitleaksSource(s.gitleaks, ctx, config.webhook.bodyLimitBytes);
    sources.push({ handler: h, enabled: s.gitleaks.enabled, perMinute: s.gitleaks.rateLimit.perMinute, contentTypes: h.contentTypes });
  }
  if (s.kingfisher) {
    const h = createKingfisherSource(s.kingfisher, ctx, config.webhook.bodyLimitBytes);
    sources.push({ handler: h, enabled: s.kingfisher.enabled, perMinute: s.kingfisher.rateLimit.perMinute, contentTypes: h.contentTypes });
  }
  if (s.github) {
    sources.push({ handler: createGitHubSource(s.github, ctx, config.webhook.bodyLimitBytes), enabled: s.github.enabled, perMinute: s.github.rateLimit.perMinute });
  }
  if (s.gitguardian) {
    const h = createGitGuardianSource(s.gitguardian, { ...ctx, knownSecrets: inventory.knownSecrets }, config.webhook.bodyLimitBytes);
    sources.push({ handler: h, enabled: s.gitguardian.enabled, perMinute: s.gitguardian.rateLimit.perMinute });
  }
  if (s.github_partner) {
    sources.push({ handler: createGitHubPartnerSource(s.github_partner, ctx, config.webhook.bodyLimitBytes), enabled: s.github_partner.enabled, perMinute: s.github_partner.rateLimit.perMinute });
  }
  const reserved = new Set<string>(BUILTIN_SOURCES);
  for (const c of s.custom) {
    if (reserved.has(c.name) || sources.some((x) => x.handler.name === c.name)) throw new Error(`sources.custom: "${c.name}" is already the name of a source`);
    sources.push({ handler: createCustomSource(c, ctx, config.webhook.bodyLimitBytes), enabled: c.enabled, perMinute: c.rateLimit.perMinute });
  }
  const routers: NonNullable<AppDeps['routers']> = [];
  if (s.gitlab) {
    const gl = s.gitlab;
    routers.push({ name: 'gitlab', enabled: gl.enabled, perMinute: gl.rateLimit.perMinute, build: (accept) => createGitLabRouter(gl, ctx, accept, config.webhook.bodyLimitBytes) });
  }
  return { sources, routers };
}

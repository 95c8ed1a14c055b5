/**
 * Clients of the scanners' own APIs, chosen by the config file: fetch the finding a GitHub alert
 * webhook only names; resolve the GitHub alert or GitGuardian incident after a kill. The clients
 * live beside this file (activities/scanners/); the ingress only authenticates and parses webhooks.
 */
import type { z } from 'zod';
import type { CloseLoopRef } from '../contracts/detection';
import type { EnrichmentRequest } from '../contracts/enrichment';
import type { RawFinding } from '../contracts/finding';
import { InventoryError } from '../lib/inventory';
import { gitguardianApiConfigSchema, githubApiConfigSchema, type SourcesConfig } from '../lib/sources-config';
import { fetchGitHubAlertFinding, resolveGitHubAlert } from './scanners/github';
import { resolveGitGuardianIncident } from './scanners/gitguardian';

export interface UpstreamClients {
  /** Returns the finding with its secret; only the enrichment activity calls it, and reduces it at once. */
  enrich(request: EnrichmentRequest): Promise<RawFinding>;
  /** `false` when that scanner's API is not configured for loop closing. */
  closeLoop(ref: CloseLoopRef, runUrl: string): Promise<boolean>;
}

function permanent(message: string): Error {
  return Object.assign(new Error(message), { permanent: true });
}

/**
 * The API part of a source's section, with its defaults (lib/inventory.ts checked only what every
 * section shares; the ingress checks the rest). A bad value is refused at startup, naming the field.
 */
function apiConfig<S extends z.ZodType>(schema: S, section: unknown, path: string): z.output<S> | undefined {
  if (section === undefined) return undefined;
  const r = schema.safeParse(section);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => `  ${[path, ...i.path.map(String)].join('.')}: ${i.message}`);
  throw new InventoryError(`inventory is invalid:\n${lines.join('\n')}`);
}

export function createUpstreamClients(
  sources: SourcesConfig,
  env: Record<string, string | undefined>,
  fetchImpl: typeof fetch = fetch,
): UpstreamClients {
  const github = apiConfig(githubApiConfigSchema, sources.github, 'sources.github');
  const gitguardian = apiConfig(gitguardianApiConfigSchema, sources.gitguardian, 'sources.gitguardian');
  const githubToken = () => {
    if (!github) throw permanent('the github source is not configured');
    const token = env[github.apiTokenEnv];
    if (!token) throw permanent(`${github.apiTokenEnv} is not set`);
    return { gh: github, token };
  };
  return {
    async enrich(request) {
      switch (request.kind) {
        case 'github_alert': {
          const { gh, token } = githubToken();
          return fetchGitHubAlertFinding(request, { apiUrl: gh.apiUrl, token, fetch: fetchImpl });
        }
      }
    },
    async closeLoop(ref, runUrl) {
      switch (ref.kind) {
        case 'github_alert': {
          if (!github?.resolveAlerts) return false;
          const { gh, token } = githubToken();
          await resolveGitHubAlert({ url: ref.url, apiUrl: gh.apiUrl, token, runUrl, fetch: fetchImpl });
          return true;
        }
        case 'gitguardian_incident': {
          const token = gitguardian?.apiTokenEnv ? env[gitguardian.apiTokenEnv] : undefined;
          if (!gitguardian || !token) return false;
          await resolveGitGuardianIncident({
            apiUrl: gitguardian.apiUrl,
            token,
            incidentId: ref.incidentId,
            fetch: fetchImpl,
          });
          return true;
        }
      }
    },
  };
}

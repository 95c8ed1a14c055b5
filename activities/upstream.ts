/**
 * Clients of the scanners' own APIs, chosen by the config file: fetch the finding a GitHub alert
 * webhook only names; resolve the GitHub alert or GitGuardian incident after a kill.
 */
import type { CloseLoopRef } from '../contracts/detection';
import type { SourcesConfig } from '../lib/sources-config';
import type { RawFinding } from '../contracts/finding';
import type { EnrichmentRequest } from '../contracts/enrichment';

export interface UpstreamClients {
  /** Returns the finding with its secret; only the enrichment activity calls it, and reduces it at once. */
  enrich(request: EnrichmentRequest): Promise<RawFinding>;
  /** `false` when that scanner's API is not configured for loop closing. */
  closeLoop(ref: CloseLoopRef, runUrl: string): Promise<boolean>;
}

function permanent(message: string): Error {
  return Object.assign(new Error(message), { permanent: true });
}

export function createUpstreamClients(sources: SourcesConfig, env: Record<string, string | undefined>, fetchImpl: typeof fetch = fetch): UpstreamClients {
  const githubToken = () => {
    const gh = sources.github;
    if (!gh) throw permanent('the github source is not configured');
    const token = env[gh.apiTokenEnv];
    if (!token) throw permanent(`${gh.apiTokenEnv} is not set`);
    return { gh, token };
  };
  return {
    async enrich(request) {
      switch (request.kind) {
        case 'github_alert': {
          const { gh, token } = githubToken();
          const { fetchGitHubAlertFinding } = await import('../api/sources/github');
          return fetchGitHubAlertFinding(request, { apiUrl: gh.apiUrl, token, fetch: fetchImpl });
        }
      }
    },
    async closeLoop(ref, runUrl) {
      switch (ref.kind) {
        case 'github_alert': {
          if (!sources.github?.resolveAlerts) return false;
          const { gh, token } = githubToken();
          const { resolveGitHubAlert } = await import('../api/sources/github');
          await resolveGitHubAlert({ url: ref.url, apiUrl: gh.apiUrl, token, runUrl, fetch: fetchImpl });
          return true;
        }
        case 'gitguardian_incident': {
          const gg = sources.gitguardian;
          const token = gg?.apiTokenEnv ? env[gg.apiTokenEnv] : undefined;
          if (!gg || !token) return false;
          const { resolveGitGuardianIncident } = await import('../api/sources/gitguardian');
          await resolveGitGuardianIncident({ apiUrl: gg.apiUrl, token, incidentId: ref.incidentId, fetch: fetchImpl });
          return true;
        }
      }
    },
  };
}

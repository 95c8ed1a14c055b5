/**
 * GitHub REST API fake for secret scanning alerts: GET returns the alert with its secret (as the
 * documented endpoint does for tokens with the secret scanning read scope), PATCH resolves it.
 * Bearer token checked; records every request; scripted failures via `script`.
 */
import { startRecorder, type RecordingServer } from './http-recorder';

export interface FakeAlert {
  number: number;
  secret_type: string;
  secret: string;
  validity?: 'active' | 'inactive' | 'unknown';
  publicly_leaked?: boolean;
  path?: string;
  line?: number;
  state?: 'open' | 'resolved';
  resolution?: string | null;
  resolution_comment?: string | null;
}

export interface GitHubFake extends RecordingServer {
  token: string;
  apiUrl: string;
  alerts: Map<string, FakeAlert>;
  addAlert(repo: string, alert: FakeAlert): string;
  /** GitHub down: every request answers 503 until `up()`. */
  down(): void;
  up(): void;
}

export async function startGitHubFake(token = `ghs_${'x'.repeat(36)}`): Promise<GitHubFake> {
  const alerts = new Map<string, FakeAlert>();
  let base = '';
  const rec = await startRecorder((r) => {
    if (r.headers.authorization !== `Bearer ${token}`)
      return { status: 401, body: { message: 'Bad credentials' } };
    const m = /^\/repos\/([^/]+\/[^/]+)\/secret-scanning\/alerts\/(\d+)$/.exec(r.path);
    if (!m) return { status: 404, body: { message: 'Not Found' } };
    const key = `${m[1]}#${m[2]}`;
    const a = alerts.get(key);
    if (!a) return { status: 404, body: { message: 'Not Found' } };
    const url = `${base}${r.path}`;
    if (r.method === 'GET') {
      return {
        status: 200,
        body: {
          number: a.number,
          created_at: '2026-11-20T10:00:00Z',
          updated_at: '2026-11-20T10:00:00Z',
          url,
          html_url: `https://github.com/${m[1]}/security/secret-scanning/${a.number}`,
          locations_url: `${url}/locations`,
          state: a.state ?? 'open',
          resolution: a.resolution ?? null,
          secret_type: a.secret_type,
          secret_type_display_name: a.secret_type,
          secret: a.secret,
          validity: a.validity ?? 'unknown',
          publicly_leaked: a.publicly_leaked ?? false,
          multi_repo: false,
          first_location_detected: {
            path: a.path ?? 'config/app.env',
            start_line: a.line ?? 1,
            end_line: a.line ?? 1,
            start_column: 1,
            end_column: 40,
            blob_sha: 'b'.repeat(40),
            commit_sha: 'c'.repeat(40),
          },
        },
      };
    }
    if (r.method === 'PATCH') {
      const body = JSON.parse(r.body || '{}') as {
        state?: string;
        resolution?: string;
        resolution_comment?: string;
      };
      if (
        body.state !== 'resolved' ||
        !['false_positive', 'wont_fix', 'revoked', 'used_in_tests'].includes(body.resolution ?? '')
      ) {
        return { status: 422, body: { message: 'Validation Failed' } };
      }
      a.state = 'resolved';
      a.resolution = body.resolution ?? null;
      a.resolution_comment = body.resolution_comment ?? null;
      return { status: 200, body: { number: a.number, state: 'resolved', resolution: a.resolution, url } };
    }
    return { status: 404, body: { message: 'Not Found' } };
  });
  base = rec.url;
  return {
    ...rec,
    token,
    apiUrl: rec.url,
    alerts,
    addAlert(repo, alert) {
      alerts.set(`${repo}#${alert.number}`, alert);
      return `${rec.url}/repos/${repo}/secret-scanning/alerts/${alert.number}`;
    },
    down() {
      rec.script.push(
        ...Array.from({ length: 10_000 }, () => ({ status: 503, body: { message: 'Service Unavailable' } })),
      );
    },
    up() {
      rec.script.length = 0;
    },
  };
}

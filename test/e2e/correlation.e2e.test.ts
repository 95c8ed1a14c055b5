/**
 * One credential, one run: the same key reported by three scanners at the same moment gives one
 * workflow, one rotation and three recorded sightings.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { newWebhookSecret } from '../../lib/keys';
import type { KillSwitchResult } from '../../contracts/run';
import { startHarness, type Harness } from '../helpers/harness';
import { timesRequested } from '../helpers/history';

const TRUFFLEHOG = newWebhookSecret();
const GITLEAKS = newWebhookSecret();
let h: Harness;
beforeAll(async () => {
  h = await startHarness({
    env: { TRUFFLEHOG_SECRETS: TRUFFLEHOG, GITLEAKS_SECRETS: GITLEAKS },
    config: {
      sources: {
        trufflehog: { secretsEnv: 'TRUFFLEHOG_SECRETS' },
        gitleaks: { secretsEnv: 'GITLEAKS_SECRETS' },
      },
    },
  });
});
afterAll(async () => {
  await h?.close();
});

describe('correlation', () => {
  it('three scanners, one key, concurrently: one workflow, one rotation, three sightings', async () => {
    const { role, password } = await h.owned.createRole();
    const o = inject('owned');
    const url = `postgres://${role}:${encodeURIComponent(password)}@${o.host}:${o.port}/postgres`;
    // The same key, seen by three different tools in three places, all at once.
    const responses = await Promise.all([
      h.post({
        scanner: 'homegrown',
        credentialType: 'postgres_password',
        secret: url,
        location: { repository: 'acme/api', file: 'deploy/.env', line: 3 },
      }),
      h.post(
        JSON.stringify({
          SourceMetadata: {
            Data: {
              Git: {
                file: 'docker-compose.yml',
                line: 12,
                commit: 'a1b2c3d4',
                repository: 'https://github.com/acme/api.git',
              },
            },
          },
          DetectorName: 'Postgres',
          Verified: true,
          Raw: url,
        }),
        { secret: TRUFFLEHOG, path: '/webhooks/trufflehog', contentType: 'application/x-ndjson' },
      ),
      h.post(
        [
          {
            RuleID: 'generic-api-key',
            Secret: password,
            Match: `DATABASE_URL=${url}`,
            File: 'k8s/secret.yaml',
            StartLine: 8,
            Commit: 'b1b2c3d4',
            Fingerprint: 'b1b2c3d4:k8s/secret.yaml:generic-api-key:8',
          },
        ],
        {
          secret: GITLEAKS,
          path: '/webhooks/gitleaks',
        },
      ),
    ]);
    expect(responses.map((r) => r.status)).toEqual([202, 202, 202]);
    const ids = new Set(responses.map((r) => r.json.workflowId));
    expect(ids.size).toBe(1);
    const workflowId = responses[0]!.json.workflowId as string;
    expect(new Set(responses.map((r) => r.json.runId)).size).toBe(1);

    const handle = h.client.workflow.getHandle(workflowId);
    const result: KillSwitchResult = await handle.result();
    expect(result.outcome).toBe('contained');
    const history = await handle.fetchHistory();
    const events = history.events ?? [];
    expect(timesRequested({ events }, 'revokeCredential')).toBe(1);
    expect(
      events.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'sighting'),
    ).toHaveLength(3);

    const sightings = await h.db.query<{ source: string; location: { file: string } }>(
      'SELECT source, location FROM killswitch_sightings WHERE workflow_id = $1 ORDER BY source',
      [workflowId],
    );
    expect(sightings.rows.map((r) => r.source)).toEqual(['generic', 'gitleaks', 'trufflehog']);
    expect(sightings.rows.map((r) => r.location.file).sort()).toEqual([
      'deploy/.env',
      'docker-compose.yml',
      'k8s/secret.yaml',
    ]);
    const audit = await h.db.query<{ sightings: unknown[] }>(
      'SELECT sightings FROM killswitch_audit WHERE workflow_id = $1',
      [workflowId],
    );
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0]!.sightings.length).toBeGreaterThanOrEqual(1);
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
  });
});

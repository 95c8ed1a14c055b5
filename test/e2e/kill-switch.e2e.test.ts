/**
 * End to end over loopback: a signed webhook reaches the real ingress, the real worker runs the
 * killSwitch workflow on the real Temporal server, the owned PostgreSQL role is rotated and its
 * sessions killed, the audit lands in a fresh database, Slack and PagerDuty fakes record the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killSwitchWorkflowId, type KillSwitchResult } from '../../contracts/run';
import { expectNowhere, secretPlaces, rand, startHarness, type Harness, leakedUrl } from '../helpers/harness';
import { ISO_TIME, UUID } from '../helpers/matchers';
import { timesRequested } from '../helpers/history';

let h: Harness;
/** Every secret planted by this file; none may appear anywhere the kill switch writes. */
const planted: string[] = [];
const runIds: Array<{ workflowId: string }> = [];

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

async function auditRows(workflowId: string) {
  return (
    await h.db.query<Record<string, any>>('SELECT * FROM killswitch_audit WHERE workflow_id = $1', [
      workflowId,
    ])
  ).rows;
}

describe('kill switch end to end', () => {
  it('contains a leaked PostgreSQL password: rotates, kills the open session, proves it dead, audits, confirms in Slack', async () => {
    const { role, password } = await h.owned.createRole();
    planted.push(password);
    const victim = await h.owned.connectAs(role, password);
    const victimError = new Promise<Error>((resolve) => victim.on('error', resolve));
    expect((await victim.query('SELECT 1 AS ok')).rows[0].ok).toBe(1);

    const res = await h.post({
      scanner: 'ci-scanner',
      findingId: `finding-${rand()}`,
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
      location: { repository: 'acme/payments', file: 'deploy/.env', line: 12, commit: 'a1b2c3d4e5f6' },
      severity: 'critical',
    });
    expect(res.status).toBe(202);
    expect(res.json.workflowId).toMatch(/^killswitch-postgres_password-[0-9a-f]{32}$/);
    expect(res.json.runId).toMatch(UUID);
    expect(res.json.temporalUiUrl).toBe(
      `http://127.0.0.1:8233/namespaces/default/workflows/${res.json.workflowId}/${res.json.runId}/history`,
    );
    expect(res.headers.get('location')).toBe(res.json.temporalUiUrl);
    runIds.push(res.json);

    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('contained');
    expect(result.owner).toMatchObject({
      system: 'owned-db',
      kind: 'postgres',
      mode: 'emergency',
      sink: 'none',
      replacement: false,
    });
    expect(result.timeline.revokedAt).toMatch(ISO_TIME);
    expect(result.verification?.method).toBe('login_rejected');
    expect(result.sessions?.terminated).toBeGreaterThanOrEqual(1);

    // The open connection was terminated and the leaked password no longer logs in.
    await expect(victim.query('SELECT 1')).rejects.toThrow();
    expect((await victimError).message).toMatch(/terminat|Connection/i);
    expect(await h.owned.loginFails(role, password)).toBe('28P01');
    expect(await h.owned.backendsOf(role)).toBe(0);

    const rows = await auditRows(res.json.workflowId);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.outcome).toBe('contained');
    expect(row.run_id).toBe(res.json.runId);
    expect(row.owning_system).toBe('owned-db');
    expect(row.credential_type).toBe('postgres_password');
    expect(row.credential_ref).toMatchObject({ role });
    expect(row.new_value_delivered).toBe(false);
    expect(row.verification_method).toBe('login_rejected');
    for (const col of ['received_at', 'rotated_at', 'sessions_expired_at', 'verified_dead_at'])
      expect(row[col]).toBeInstanceOf(Date);
    expect(row.rotated_at.getTime()).toBeGreaterThanOrEqual(row.received_at.getTime());
    expect(row.verified_dead_at.getTime()).toBeGreaterThanOrEqual(row.sessions_expired_at.getTime());

    const messages = h.slack.messages().filter((m) => m.text.includes(res.json.workflowId));
    expect(messages).toHaveLength(1);
    expect(messages[0]!.channel).toBe('#security-incidents');
    expect(messages[0]!.text).toContain('contained');
    expect(JSON.stringify(messages[0]!.blocks)).toContain(res.json.temporalUiUrl);
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(0);

    // The sealed evidence was purged when the run ended.
    const ev = await h.db.query('SELECT 1 FROM killswitch_evidence WHERE workflow_id = $1', [
      res.json.workflowId,
    ]);
    expect(ev.rows).toHaveLength(0);
  });

  it('escalates when the admin may not alter the role: PagerDuty trigger, Slack failure message, audit row escalated', async () => {
    const { role, password } = await h.owned.createRole({ superuser: true });
    planted.push(password);
    const res = await h.post({
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
      severity: 'high',
    });
    expect(res.status).toBe(202);
    runIds.push(res.json);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('escalated');
    expect(result.failure).toMatchObject({ step: 'revoking', type: 'PermissionDenied' });
    expect(result.pagerduty).toEqual({ status: 'sent', dedupKey: res.json.workflowId });

    // The password still works: nothing pretended to contain it.
    expect(await h.owned.loginFails(role, password)).toBeNull();

    const events = h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      event_action: 'trigger',
      routing_key: h.pagerduty.routingKey,
      payload: { severity: 'critical', class: 'PermissionDenied' },
    });
    expect(events[0]!.links[0].href).toBe(res.json.temporalUiUrl);

    const slack = h.slack.messages().filter((m) => m.text.includes(res.json.workflowId));
    expect(slack).toHaveLength(1);
    expect(slack[0]!.text).toMatch(/Containment failed/);

    const rows = await auditRows(res.json.workflowId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      outcome: 'escalated',
      failure_type: 'PermissionDenied',
      failure_step: 'revoking',
      pagerduty_dedup_key: res.json.workflowId,
      pagerduty_status: 'sent',
    });
    expect(rows[0]!.rotated_at).toBeNull();
  });

  it('escalates a detection no system owns instead of dropping it', async () => {
    const res = await h.post({
      credentialType: 'postgres_password',
      credentialRef: { role: `orphan_${rand()}`, host: 'elsewhere.example' },
    });
    expect(res.status).toBe(202);
    runIds.push(res.json);
    const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
    expect(result.outcome).toBe('escalated');
    expect(result.failure?.type).toBe('NoOwner');
    expect(h.pagerduty.events().filter((e) => e.dedup_key === res.json.workflowId)).toHaveLength(1);
    expect(await auditRows(res.json.workflowId)).toHaveLength(1);
  });

  it('runs one workflow and one rotation for 20 concurrent deliveries of the same detection, and none for a later one', async () => {
    const { role, password } = await h.owned.createRole();
    planted.push(password);
    const body = JSON.stringify({
      scanner: 'burst',
      findingId: 'same-finding',
      credentialType: 'postgres_password',
      secret: leakedUrl(role, password),
    });
    const responses = await Promise.all(Array.from({ length: 20 }, () => h.post(body)));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(202));
    const ids = new Set(responses.map((r) => `${r.json.workflowId}/${r.json.runId}`));
    expect(ids.size).toBe(1);
    const { workflowId, runId } = responses[0]!.json;
    runIds.push({ workflowId });

    const handle = h.client.workflow.getHandle(workflowId);
    await handle.result();
    const history = await handle.fetchHistory();
    const scheduled = (name: string) => timesRequested(history, name);
    expect(scheduled('revokeCredential')).toBe(1);
    expect(scheduled('expireSessions')).toBe(1);
    expect(await auditRows(workflowId)).toHaveLength(1);
    expect(h.slack.messages().filter((m) => m.text.includes(workflowId))).toHaveLength(1);

    // A sighting after the kill starts a short run that re-verifies and records it: no second rotation.
    const late = await h.post(body);
    expect(late.status).toBe(202);
    expect(late.json.workflowId).toBe(workflowId);
    expect(late.json.runId).not.toBe(runId);
    const lateHandle = h.client.workflow.getHandle(workflowId, late.json.runId);
    const lateResult: KillSwitchResult = await lateHandle.result();
    expect(lateResult).toMatchObject({
      outcome: 'already_contained',
      priorRunId: runId,
      verification: { method: 'login_rejected' },
    });
    const lateHistory = await lateHandle.fetchHistory();
    expect(timesRequested(lateHistory, 'revokeCredential')).toBe(0);
    expect(timesRequested(lateHistory, 'assess')).toBe(1);
    const rows = await auditRows(workflowId);
    expect(rows.map((r) => r.outcome).sort()).toEqual(['already_contained', 'contained']);
  });

  it('never rotates a credential the audit records as contained, even after Temporal forgot the run', async () => {
    const { role, password } = await h.owned.createRole();
    planted.push(password);
    const workflowId = killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password));
    await h.db.query(
      `INSERT INTO killswitch_audit (workflow_id, run_id, detection_id, source, credential_type, credential_ref, outcome, received_at)
       VALUES ($1, 'run-from-last-year', 'generic:old', 'generic', 'postgres_password', '{}', 'contained', now() - interval '400 days')`,
      [workflowId],
    );
    const res = await h.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
    expect(res.json.workflowId).toBe(workflowId);
    runIds.push(res.json);
    const result: KillSwitchResult = await h.client.workflow.getHandle(workflowId).result();
    expect(result.outcome).toBe('escalated');
    // The role here was never really rotated (the audit row is planted), so re-verification finds it alive.
    expect(result.failure).toMatchObject({ step: 'verifying', type: 'CredentialStillValid' });
    expect(await h.owned.loginFails(role, password)).toBeNull();
  });

  it('answers the currentStep query while a run is in flight', async () => {
    const { role, password } = await h.owned.createRole();
    planted.push(password);
    // Slack answers slowly once, so the run is observably in its notifying step.
    h.slack.script.push({ delayMs: 4000 });
    const res = await h.post({ credentialType: 'postgres_password', secret: leakedUrl(role, password) });
    expect(res.status).toBe(202);
    runIds.push(res.json);
    const handle = h.client.workflow.getHandle(res.json.workflowId);
    type Status = {
      step: string;
      outcome?: string;
      owner: { system: string } | null;
      timeline: { rotatedAt?: string; verifiedDeadAt?: string };
    };
    const deadline = Date.now() + 30_000;
    let status: Status;
    do {
      status = await handle.query<Status>('currentStep');
      if (status.step === 'notifying') break;
      await new Promise((r) => setTimeout(r, 50));
    } while (Date.now() < deadline);
    expect(status.step).toBe('notifying');
    expect(status.outcome).toBe('contained');
    expect(status.owner?.system).toBe('owned-db');
    expect(status.timeline.rotatedAt).toMatch(ISO_TIME);
    expect(status.timeline.verifiedDeadAt).toMatch(ISO_TIME);
    await handle.result();
    expect((await handle.query<Status>('currentStep')).step).toBe('done');
  });

  it('never lets a planted secret reach Temporal history, logs, the audit table, Slack or PagerDuty', async () => {
    expect(planted.length).toBeGreaterThanOrEqual(4);
    expect(runIds.length).toBeGreaterThanOrEqual(4);
    const places = await secretPlaces(
      h,
      runIds.map((r) => r.workflowId),
    );
    // The searches are real: the places are not empty and do hold what they should.
    expect(places['Temporal history']).toContain('killSwitch');
    expect(places.logs).toContain('delivery accepted');
    expect(places['Slack requests']).toContain('Leaked credential contained');
    expect(places['PagerDuty requests']).toContain('PermissionDenied');
    expect(places['audit table']).toContain('login_rejected');
    expectNowhere(places, planted);
  });
});

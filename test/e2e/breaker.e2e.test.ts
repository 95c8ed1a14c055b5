/**
 * The mass-leak breaker end to end: past the threshold of detections for one system within the
 * window, automatic rotation pauses, PagerDuty is paged once, and the runs wait for a human; an
 * operator's reset lets new runs rotate again.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideUpdate, type KillSwitchResult } from '../../contracts/run';
import { leakedUrl, startHarness, type Harness, waitForStep } from '../helpers/harness';

const ADMIN = `admin-${randomBytes(16).toString('hex')}`;
const SYSTEM = `breaker-db-${randomBytes(3).toString('hex')}`;
let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    env: { ADMIN_TOKENS: ADMIN },
    config: {
      systems: [
        {
          name: SYSTEM,
          kind: 'postgres',
          adminUrlEnv: 'OWNED_DB_ADMIN_URL',
          roles: ['app_*'],
          breaker: { threshold: 2, window: '10m', holdTimeout: '1h' },
        },
      ],
    },
  });
});
afterAll(async () => {
  await h?.close();
});

async function leak() {
  const { role, password } = await h.owned.createRole();
  const res = await h.post({
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
    location: { repository: 'acme/mass', file: `${role}.env` },
  });
  expect(res.status).toBe(202);
  return {
    role,
    password,
    workflowId: res.json.workflowId as string,
    handle: h.client.workflow.getHandle(res.json.workflowId),
  };
}

const admin = (path: string, init: RequestInit = {}) =>
  fetch(`${h.baseUrl}/admin${path}`, {
    ...init,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
  });

describe('mass-leak breaker', () => {
  it('holds runs past the threshold, pages once, waits for a human, and resumes after a reset', async () => {
    const first = await Promise.all([leak(), leak()]);
    for (const l of first) expect(((await l.handle.result()) as KillSwitchResult).outcome).toBe('contained');

    const held = await Promise.all([leak(), leak()]);
    for (const l of held) await waitForStep(l.handle, 'held_by_breaker');
    // Nothing rotated while held.
    for (const l of held) expect(await h.owned.loginFails(l.role, l.password)).toBeNull();
    const asked = () =>
      h.slack
        .messages()
        .filter(
          (m) =>
            m.text.includes('Mass-leak breaker tripped') && held.some((l) => m.text.includes(l.workflowId)),
        );
    for (let i = 0; i < 50 && asked().length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    expect(asked()).toHaveLength(2);
    const pages = () => h.pagerduty.events().filter((e) => e.dedup_key === `killswitch-breaker-${SYSTEM}`);
    for (let i = 0; i < 50 && pages().length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(pages()).toHaveLength(1);
    expect(pages()[0]).toMatchObject({
      event_action: 'trigger',
      payload: { severity: 'critical', class: 'mass_leak_breaker', source: SYSTEM },
    });

    const listed = (await (await admin('/breakers')).json()) as {
      breakers: Array<{ system: string; tripped: boolean }>;
    };
    expect(listed.breakers.find((b) => b.system === SYSTEM)).toMatchObject({ tripped: true });

    await held[0]!.handle.executeUpdate(decideUpdate, {
      args: [{ decision: 'approve', by: 'alice@example.com', reason: 'real leak' }],
    });
    await held[1]!.handle.executeUpdate(decideUpdate, {
      args: [{ decision: 'deny', by: 'bob@example.com', reason: 'canary' }],
    });
    const approved: KillSwitchResult = await held[0]!.handle.result();
    const denied: KillSwitchResult = await held[1]!.handle.result();
    expect(approved).toMatchObject({
      outcome: 'contained',
      heldByBreaker: true,
      decidedBy: 'approve by alice@example.com: real leak',
    });
    expect(denied).toMatchObject({ outcome: 'denied', heldByBreaker: true });
    expect(await h.owned.loginFails(held[0]!.role, held[0]!.password)).toBe('28P01');
    expect(await h.owned.loginFails(held[1]!.role, held[1]!.password)).toBeNull();
    const rows = await h.db.query<{ workflow_id: string; held_by_breaker: boolean }>(
      'SELECT workflow_id, held_by_breaker FROM killswitch_audit WHERE workflow_id = ANY($1)',
      [held.map((l) => l.workflowId)],
    );
    expect(rows.rows.map((r) => r.held_by_breaker)).toEqual([true, true]);

    const reset = await admin(`/breakers/${SYSTEM}/reset`, {
      method: 'POST',
      body: JSON.stringify({ by: 'carol' }),
    });
    expect(reset.status).toBe(200);
    expect((await admin(`/breakers/${SYSTEM}/reset`, { method: 'POST', body: '{}' })).status).toBe(404);

    const after = await leak();
    expect((await after.handle.result()) as KillSwitchResult).toMatchObject({ outcome: 'contained' });
    expect(((await after.handle.result()) as KillSwitchResult).heldByBreaker).toBeUndefined();
    expect(pages()).toHaveLength(1);
  });
});

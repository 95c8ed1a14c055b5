/**
 * The ingress's workflow starts, seen at the one dispatcher boundary (lib/dispatch.ts,
 * WorkflowDispatcher): createApp with the real sighting dispatcher (createDispatcher) over a
 * recording WorkflowDispatcher fake instead of Temporal, an in-memory delivery ledger, evidence
 * store and sighting ledger. A detection and an enrichment delivery must ask for exactly these
 * starts (workflow type, id, arguments, signal, reuse and conflict policies, search attributes,
 * summaries); Temporal unreachable is a 503 problem that frees the delivery and its sealed value.
 */
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type express from 'express';
import request from 'supertest';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app';
import type { Claim, DeliveryLedger, SourceSwitches } from '../../api/deliveries';
import type { ParseResult, SourceHandler } from '../../api/sources/types';
import type { RawFinding } from '../../contracts/finding';
import { reduceFinding } from '../../contracts/finding';
import { killSwitchWorkflowId, sightingSignal, type Dispatched } from '../../contracts/run';
import {
  createDispatcher,
  createWorkflowDispatcher,
  enrichStart,
  killSwitchStart,
  TemporalUnavailableError,
  type DeliveryWrites,
  type SignalWithStartRequest,
  type SightingRow,
  type StartRequest,
  type WorkflowDispatcher,
} from '../../lib/dispatch';
import type { EvidenceStore, SealedEvidence } from '../../lib/evidence';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { createLogger } from '../../lib/logger';

const keys = createServerKeys(newServerKey());
const NOW = new Date('2025-11-27T10:00:00.000Z');
const UI = 'http://temporal-ui.test';

type Call =
  { method: 'signalWithStart'; req: SignalWithStartRequest } | { method: 'start'; req: StartRequest };

/** The boundary fake: records every start and answers a run id, or throws `fail`. */
class RecordingWorkflowDispatcher implements WorkflowDispatcher {
  readonly calls: Call[] = [];
  fail: Error | undefined;

  runUrl(workflowId: string, runId: string): string {
    return `${UI}/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${runId}/history`;
  }
  private answer(workflowId: string): Dispatched {
    if (this.fail) throw this.fail;
    const runId = `run-${this.calls.length}`;
    return { workflowId, runId, temporalUiUrl: this.runUrl(workflowId, runId) };
  }
  async signalWithStart(req: SignalWithStartRequest): Promise<Dispatched> {
    this.calls.push({ method: 'signalWithStart', req });
    return this.answer(req.workflowId);
  }
  async start(req: StartRequest): Promise<Dispatched> {
    this.calls.push({ method: 'start', req });
    return this.answer(req.workflowId);
  }
}

/** The delivery ledger's contract, in memory: new, unfinished (claimed, no answer) or answered. */
class MemoryLedger implements DeliveryLedger {
  readonly rows = new Map<string, { receivedAt: Date; status?: number; response?: unknown }>();
  readonly writes: DeliveryWrites[] = [];
  async claim(source: string, deliveryId: string, writes?: DeliveryWrites): Promise<Claim> {
    const key = `${source}\u0000${deliveryId}`;
    const row = this.rows.get(key);
    if (!row) {
      this.rows.set(key, { receivedAt: NOW });
      if (writes) this.writes.push(writes);
      return { kind: 'new', sealed: [...new Set((writes?.evidence ?? []).map((e) => e.workflowId))] };
    }
    if (row.status === undefined) return { kind: 'unfinished', receivedAt: row.receivedAt };
    return { kind: 'answered', status: row.status, response: row.response };
  }
  async complete(source: string, deliveryId: string, status: number, response: unknown): Promise<void> {
    const row = this.rows.get(`${source}\u0000${deliveryId}`);
    if (row && row.status === undefined) Object.assign(row, { status, response });
  }
  async release(source: string, deliveryId: string): Promise<void> {
    const key = `${source}\u0000${deliveryId}`;
    if (this.rows.get(key)?.status === undefined) this.rows.delete(key);
  }
}

class MemoryEvidence implements EvidenceStore {
  readonly held = new Map<string, SealedEvidence>();
  readonly purged: string[] = [];
  seal(workflowId: string, fingerprint: string, value: string): SealedEvidence {
    return { workflowId, fingerprint, sealed: keys.encrypt(value, workflowId), ttlHours: 1 };
  }
  async put(workflowId: string, fingerprint: string, value: string): Promise<boolean> {
    if (this.held.has(workflowId)) return false;
    this.held.set(workflowId, this.seal(workflowId, fingerprint, value));
    return true;
  }
  async take(workflowId: string): Promise<string | undefined> {
    const e = this.held.get(workflowId);
    return e ? keys.decrypt(e.sealed, workflowId) : undefined;
  }
  async purge(workflowId: string): Promise<void> {
    this.purged.push(workflowId);
    this.held.delete(workflowId);
  }
  async purgeExpired(): Promise<number> {
    return 0;
  }
}

const switches: SourceSwitches = {
  enabled: async (_source, configured) => configured,
  set: async () => undefined,
  list: async () => [],
};

/** A source whose body is its parse result: the test names the ParseResult the ingress gets. */
const ci: SourceHandler = {
  name: 'ci',
  bodyLimitBytes: 64 * 1024,
  authenticate: () => undefined,
  parse: (d) => JSON.parse(d.rawBody.toString('utf8')) as ParseResult,
};

const SECRET = 'ghp_' + 'a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8';
const finding: RawFinding = {
  source: 'ci',
  scanner: 'gitleaks',
  findingId: 'f-1',
  credentialType: 'github_token',
  secret: SECRET,
  location: { repository: 'acme/api', file: '.env', line: 3, commit: 'abcdef0123456789abcd' },
  severity: 'high',
  validity: 'verified',
};

const enrichDelivery: ParseResult = {
  kind: 'enrich',
  deliveryId: 'gh-delivery-2',
  request: {
    kind: 'github_alert',
    repository: 'acme/api',
    alertNumber: 7,
    action: 'created',
    alertUrl: 'https://api.github.com/repos/acme/api/secret-scanning/alerts/7',
  },
  escalateAfter: '2m',
};

let workflows: RecordingWorkflowDispatcher;
let ledger: MemoryLedger;
let evidence: MemoryEvidence;
let sightings: SightingRow[];
let app: express.Express;

beforeEach(() => {
  workflows = new RecordingWorkflowDispatcher();
  ledger = new MemoryLedger();
  evidence = new MemoryEvidence();
  sightings = [];
  app = createApp({
    logger: createLogger({ level: 'silent' }),
    keys,
    // Only the read API (off here: no tokens) talks to Temporal itself; every start goes through the dispatcher.
    temporal: {
      client: {} as Client,
      namespace: 'default',
      taskQueue: 'kill-switch-test',
      uiUrl: UI,
      deadlineMs: 1000,
    },
    dispatcher: createDispatcher({
      workflows,
      evidence,
      sightings: {
        record: async (row) => void sightings.push(row),
        finishedRunHolding: async () => undefined,
      },
    }),
    deliveries: ledger,
    switches,
    sources: [{ handler: ci, enabled: true, perMinute: 1000 }],
    now: () => NOW,
  });
});

const post = (body: unknown) =>
  request(app).post('/webhooks/ci').set('Content-Type', 'application/json').send(JSON.stringify(body));

describe('a detection', () => {
  it('signals-with-start the killSwitch run of its credential, with these exact options', async () => {
    const res = await post({ kind: 'findings', deliveryId: 'd-1', findings: [finding] });

    const { detection } = reduceFinding(finding, keys, NOW);
    const workflowId = killSwitchWorkflowId('github_token', keys.fingerprint(SECRET));
    expect(workflows.calls).toHaveLength(1);
    const call = workflows.calls[0]!;
    expect(call.method).toBe('signalWithStart');
    if (call.method !== 'signalWithStart') return;
    expect(call.req.signal).toBe(sightingSignal);
    expect(call.req.signal.name).toBe('sighting');
    expect({ ...call.req, signal: undefined }).toStrictEqual({
      workflowType: 'killSwitch',
      workflowId,
      args: [{ detection, receivedAt: '2025-11-27T10:00:00.000Z' }],
      signal: undefined,
      signalArgs: [
        {
          detectionId: 'ci:gitleaks:f-1',
          source: 'ci',
          scanner: 'gitleaks',
          receivedAt: '2025-11-27T10:00:00.000Z',
          location: finding.location,
          validity: 'verified',
        },
      ],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      typedSearchAttributes: [
        {
          key: expect.objectContaining({ name: 'KillSwitchCredentialType', type: 'KEYWORD' }),
          value: 'github_token',
        },
        { key: expect.objectContaining({ name: 'KillSwitchSource', type: 'KEYWORD' }), value: 'ci' },
      ],
      staticSummary: 'Leaked github_token (tokenPrefix=ghp_) reported by gitleaks',
      staticDetails: [
        `**Detection** \`ci:gitleaks:f-1\` from gitleaks (source ci), severity high, validity verified`,
        `**Credential** github_token · tokenPrefix=ghp_ · fingerprint \`${detection.fingerprint!.slice(0, 24)}…\``,
        `**Found at** acme/api · .env · 3 · abcdef012345`,
        `**Received** 2025-11-27T10:00:00.000Z`,
      ].join('\n\n'),
    });
    // The value is sealed with the delivery's claim, and never part of a start.
    expect(JSON.stringify(workflows.calls)).not.toContain(SECRET);
    expect(ledger.writes[0]!.evidence.map((e) => e.workflowId)).toEqual([workflowId]);
    expect(ledger.writes[0]!.sightings.map((s) => s.detectionId)).toEqual(['ci:gitleaks:f-1']);

    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({
      status: 'accepted',
      workflowId,
      runId: 'run-1',
      temporalUiUrl: workflows.runUrl(workflowId, 'run-1'),
    });
    expect(res.headers.location).toBe(workflows.runUrl(workflowId, 'run-1'));
  });

  it('re-sent while its first copy is unanswered: joins the run, never starting over a closed one (REJECT_DUPLICATE)', async () => {
    await ledger.claim('ci', 'd-3');
    const res = await post({ kind: 'findings', deliveryId: 'd-3', findings: [finding] });
    expect(res.status).toBe(202);
    expect(res.body.duplicate).toBe(true);
    expect(workflows.calls.map((c) => [c.method, c.req.workflowType, c.req.workflowIdReusePolicy])).toEqual([
      ['signalWithStart', 'killSwitch', 'REJECT_DUPLICATE'],
    ]);
    // A redelivery writes its sighting itself (its claim wrote nothing).
    expect(sightings.map((s) => s.detectionId)).toEqual(['ci:gitleaks:f-1']);
  });

  it('Temporal unreachable: 503 problem, the claim freed and the sealed value removed', async () => {
    workflows.fail = new TemporalUnavailableError('Temporal unreachable: connect ECONNREFUSED');
    const res = await post({ kind: 'findings', deliveryId: 'd-4', findings: [finding] });
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body).toMatchObject({
      type: 'urn:secret-kill-switch:problem:temporal-unavailable',
      status: 503,
    });
    expect(workflows.calls).toHaveLength(1);
    expect(evidence.purged).toEqual([killSwitchWorkflowId('github_token', keys.fingerprint(SECRET))]);
    expect(ledger.rows.size).toBe(0);
  });
});

describe('an enrichment delivery', () => {
  it('starts (or answers) its enrichDetection run, with these exact options', async () => {
    const res = await post(enrichDelivery);
    expect(workflows.calls).toStrictEqual([
      {
        method: 'start',
        req: {
          workflowType: 'enrichDetection',
          workflowId: 'enrich-ci-gh-delivery-2',
          args: [
            {
              source: 'ci',
              deliveryId: 'gh-delivery-2',
              request: {
                kind: 'github_alert',
                repository: 'acme/api',
                alertNumber: 7,
                action: 'created',
                alertUrl: 'https://api.github.com/repos/acme/api/secret-scanning/alerts/7',
              },
              receivedAt: '2025-11-27T10:00:00.000Z',
              escalateAfter: '2m',
            },
          ],
          workflowIdConflictPolicy: 'USE_EXISTING',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          staticSummary: 'Fetch github_alert acme/api#7 and contain it',
        },
      },
    ]);
    expect(res.status).toBe(202);
    expect(res.body).toStrictEqual({
      status: 'enriching',
      workflowId: 'enrich-ci-gh-delivery-2',
      runId: 'run-1',
      temporalUiUrl: workflows.runUrl('enrich-ci-gh-delivery-2', 'run-1'),
    });
    expect(res.headers.location).toBe(workflows.runUrl('enrich-ci-gh-delivery-2', 'run-1'));
  });

  it('Temporal unreachable: 503 problem and the claim freed for the sender’s retry', async () => {
    workflows.fail = new TemporalUnavailableError('connect ECONNREFUSED');
    const res = await post(enrichDelivery);
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({
      type: 'urn:secret-kill-switch:problem:temporal-unavailable',
      status: 503,
    });
    expect(ledger.rows.size).toBe(0);

    workflows.fail = undefined;
    const retried = await post(enrichDelivery);
    expect(retried.status).toBe(202);
    expect(workflows.calls.map((c) => c.req.workflowId)).toEqual([
      'enrich-ci-gh-delivery-2',
      'enrich-ci-gh-delivery-2',
    ]);
  });
});

describe('the WorkflowDispatcher over Temporal’s client', () => {
  /** A recording fake of the client's `workflow` methods and its connection's deadline. */
  function fakeClient(
    behaviour: { start?: () => Promise<unknown>; signalWithStart?: () => Promise<unknown> } = {},
  ) {
    const calls: Array<{
      method: string;
      type?: string;
      options?: Record<string, unknown>;
      deadline?: number;
      workflowId?: string;
    }> = [];
    const client = {
      connection: {
        withDeadline: <R>(deadline: number, fn: () => Promise<R>) => {
          calls.push({ method: 'withDeadline', deadline });
          return fn();
        },
      },
      workflow: {
        signalWithStart: async (type: string, options: Record<string, unknown>) => {
          calls.push({ method: 'signalWithStart', type, options });
          await behaviour.signalWithStart?.();
          return { signaledRunId: 'signalled-run' };
        },
        start: async (type: string, options: Record<string, unknown>) => {
          calls.push({ method: 'start', type, options });
          await behaviour.start?.();
          return { firstExecutionRunId: 'first-run' };
        },
        getHandle: (workflowId: string) => ({
          describe: async () => {
            calls.push({ method: 'describe', workflowId });
            return { runId: 'existing-run' };
          },
        }),
      },
    };
    const dispatcher = createWorkflowDispatcher({
      client: client as unknown as Client,
      namespace: 'ns one',
      taskQueue: 'kill-switch-test',
      uiUrl: UI,
      deadlineMs: 4321,
    });
    return { calls, dispatcher };
  }
  const sighting = reduceFinding(finding, keys, NOW);
  const enrichInput = {
    source: 'ci',
    deliveryId: 'd-9',
    request: (enrichDelivery as Extract<ParseResult, { kind: 'enrich' }>).request,
    receivedAt: NOW.toISOString(),
  };

  it('passes each request to the client as is, on the task queue, within the deadline', async () => {
    const { calls, dispatcher } = fakeClient();
    const before = Date.now();
    const ks = killSwitchStart(sighting, NOW);
    expect(await dispatcher.signalWithStart(ks)).toEqual({
      workflowId: ks.workflowId,
      runId: 'signalled-run',
      temporalUiUrl: `${UI}/namespaces/ns%20one/workflows/${ks.workflowId}/signalled-run/history`,
    });
    const en = enrichStart(enrichInput);
    expect(await dispatcher.start(en)).toEqual({
      workflowId: 'enrich-ci-d-9',
      runId: 'first-run',
      temporalUiUrl: `${UI}/namespaces/ns%20one/workflows/enrich-ci-d-9/first-run/history`,
    });
    const { workflowType: _k, ...ksOptions } = ks;
    const { workflowType: _e, ...enOptions } = en;
    expect(calls.map((c) => ({ ...c, deadline: undefined }))).toStrictEqual([
      { method: 'withDeadline', deadline: undefined },
      {
        method: 'signalWithStart',
        type: 'killSwitch',
        options: { taskQueue: 'kill-switch-test', ...ksOptions },
        deadline: undefined,
      },
      { method: 'withDeadline', deadline: undefined },
      {
        method: 'start',
        type: 'enrichDetection',
        options: { taskQueue: 'kill-switch-test', ...enOptions },
        deadline: undefined,
      },
    ]);
    for (const c of calls.filter((x) => x.method === 'withDeadline')) {
      expect(c.deadline).toBeGreaterThanOrEqual(before + 4321);
      expect(c.deadline).toBeLessThanOrEqual(Date.now() + 4321);
    }
  });

  it('a start whose id is held by a run it may not start over answers that run', async () => {
    const { calls, dispatcher } = fakeClient({
      start: async () => {
        throw new WorkflowExecutionAlreadyStartedError('already started', 'enrich-ci-d-9', 'enrichDetection');
      },
    });
    expect((await dispatcher.start(enrichStart(enrichInput))).runId).toBe('existing-run');
    expect(calls.map((c) => c.method)).toEqual(['withDeadline', 'start', 'describe']);
  });

  it('a signal-with-start refused by its reuse policy is the caller’s to handle; Temporal unreachable is TemporalUnavailableError', async () => {
    const refused = fakeClient({
      signalWithStart: async () => {
        throw new WorkflowExecutionAlreadyStartedError('already started', 'w', 'killSwitch');
      },
    });
    await expect(
      refused.dispatcher.signalWithStart(killSwitchStart(sighting, NOW, 'REJECT_DUPLICATE')),
    ).rejects.toBeInstanceOf(WorkflowExecutionAlreadyStartedError);

    const down = () =>
      Promise.reject(
        Object.assign(new Error('14 UNAVAILABLE: connect ECONNREFUSED 127.0.0.1:7233'), { code: 14 }),
      );
    const unreachable = fakeClient({ signalWithStart: down, start: down });
    await expect(
      unreachable.dispatcher.signalWithStart(killSwitchStart(sighting, NOW)),
    ).rejects.toBeInstanceOf(TemporalUnavailableError);
    await expect(unreachable.dispatcher.start(enrichStart(enrichInput))).rejects.toBeInstanceOf(
      TemporalUnavailableError,
    );
  });
});

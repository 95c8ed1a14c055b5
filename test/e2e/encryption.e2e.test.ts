/**
 * Encrypted history end to end: real runs on the real Temporal server, their histories fetched
 * raw (a client without the codec, as the server and anyone with read access to it sees them) and
 * decoded (the codec client, as the UI shows them through /codec). Then a key rotation: what k1
 * sealed stays readable, and replayable by a worker, after k2 becomes the active key.
 */
import { randomBytes } from 'node:crypto';
import { Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  collectPayloads,
  EncryptionCodec,
  ENCRYPTED_ENCODING,
  KEY_ID_METADATA,
  killSwitchDataConverter,
  type CodecKey,
} from '../../lib/codec';
import { WORKFLOWS_PATH } from '../../worker/build';
import type { KillSwitchResult } from '../../contracts/run';
import { deepText, leakedUrl, rand, startHarness, type Harness } from '../helpers/harness';

const K1: CodecKey = { id: 'k1', key: randomBytes(32) };
const K2: CodecKey = { id: 'k2', key: randomBytes(32) };
const keysEnv = (...ks: CodecKey[]) => ks.map((k) => `${k.id}:${k.key.toString('base64')}`).join(',');
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('utf8');

let h1: Harness;
let h2: Harness | undefined;
let first: { workflowId: string; role: string; repository: string } | undefined;

beforeAll(async () => {
  h1 = await startHarness({ env: { KILLSWITCH_CODEC_KEYS: keysEnv(K1) } });
});
afterAll(async () => {
  await h2?.close();
  await h1?.close();
});

/** A client of the same server with no codec: what Temporal itself stores and serves. */
const rawClient = (h: Harness) =>
  new Client({ connection: h.client.connection, namespace: h.config.temporal.namespace });

async function rawView(h: Harness, workflowId: string) {
  const history = await rawClient(h).workflow.getHandle(workflowId).fetchHistory();
  const described = await h.client.workflowService.describeWorkflowExecution({
    namespace: h.config.temporal.namespace,
    execution: { workflowId },
  });
  return { history, text: `${deepText(history)}\n${deepText(described)}` };
}

/** Every payload of a history but the two kinds Temporal must read: search attributes and headers. */
/** What the SDK's core writes into a local-activity marker's `data` payload (plain JSON, not ours to encode). */
const LOCAL_ACTIVITY_MARKER_FIELDS = [
  'seq',
  'attempt',
  'activity_id',
  'activity_type',
  'complete_time',
  'backoff',
  'original_schedule_time',
];

/**
 * Every payload the data converter wrote. Left out: search attributes, headers, and the SDK's own
 * local-activity marker metadata, after checking that it holds nothing but that metadata.
 */
function codecPayloads(history: unknown): Array<{ path: string; payload: Payload }> {
  return collectPayloads(history).filter((p) => {
    if (/searchAttributes|[hH]eader/.test(p.path)) return false;
    if (/markerRecordedEventAttributes\.details\.data\.payloads\[0\]$/.test(p.path)) {
      const meta = JSON.parse(text(p.payload.data)) as Record<string, unknown>;
      expect(
        Object.keys(meta).filter((k) => !LOCAL_ACTIVITY_MARKER_FIELDS.includes(k)),
        p.path,
      ).toEqual([]);
      expect(typeof meta.activity_type, p.path).toBe('string');
      return false;
    }
    return true;
  });
}

/** Activity failures as history records them: failed activity tasks, and local-activity markers with a failure. */
function failuresIn(history: { events?: Array<Record<string, any>> | null }) {
  return (history.events ?? []).flatMap((e) => {
    const f = e.activityTaskFailedEventAttributes?.failure ?? e.markerRecordedEventAttributes?.failure;
    return f ? [{ eventId: String(e.eventId), failure: f }] : [];
  });
}

async function leak(h: Harness, opts: { superuser?: boolean } = {}) {
  const { role, password } = await h.owned.createRole(opts);
  const fields = {
    repository: `acme/enc-${rand()}`,
    file: `deploy/${rand()}.env`,
    findingId: `finding-${rand()}`,
    scanner: `scanner-${rand()}`,
  };
  const res = await h.post({
    credentialType: 'postgres_password',
    secret: leakedUrl(role, password),
    findingId: fields.findingId,
    scanner: fields.scanner,
    location: { repository: fields.repository, file: fields.file, line: 3 },
  });
  expect(res.status).toBe(202);
  const result: KillSwitchResult = await h.client.workflow.getHandle(res.json.workflowId).result();
  return { role, password, ...fields, workflowId: res.json.workflowId as string, result };
}

describe('encrypted Temporal history', () => {
  it('stores every payload of a run encrypted: nothing of the detection is readable without the codec', async () => {
    const l = await leak(h1);
    expect(l.result.outcome).toBe('contained');
    first = { workflowId: l.workflowId, role: l.role, repository: l.repository };

    const raw = await rawView(h1, l.workflowId);
    const payloads = codecPayloads(raw.history);
    // Input, activity inputs and results, summaries, the result: all of them sealed with k1.
    expect(payloads.length).toBeGreaterThan(8);
    for (const { path, payload } of payloads) {
      expect(text(payload.metadata?.encoding), path).toBe(ENCRYPTED_ENCODING);
      expect(text(payload.metadata?.[KEY_ID_METADATA]), path).toBe('k1');
    }
    for (const needle of [
      l.role,
      l.repository,
      l.file,
      l.findingId,
      l.scanner,
      l.password,
      'credentialRef',
      'detectedAt',
      'Revoke the leaked',
    ]) {
      expect(raw.text.includes(needle), `"${needle}" readable in the raw history`).toBe(false);
    }
    // Workflow ids and search attributes stay readable, and hold references only.
    expect(l.workflowId).not.toContain(l.role);
    const sa = collectPayloads(raw.history).filter((p) => /searchAttributes/.test(p.path));
    expect(sa.length).toBeGreaterThan(0);
    for (const { payload } of sa)
      for (const needle of [l.role, l.repository, l.scanner])
        expect(text(payload.data)).not.toContain(needle);

    // Without the codec the result cannot even be read.
    await expect(rawClient(h1).workflow.getHandle(l.workflowId).result()).rejects.toThrow(
      /binary\/encrypted/,
    );

    // Through the codec the same history reads as before; the search above was searching for real.
    const decoded = deepText(await h1.decodedHistory(l.workflowId));
    for (const needle of [
      l.role,
      l.repository,
      l.file,
      l.findingId,
      l.scanner,
      'credentialRef',
      'Revoke the leaked',
    ]) {
      expect(decoded.includes(needle), `"${needle}" in the decoded history`).toBe(true);
    }
    expect(decoded.includes(l.password)).toBe(false);
  });

  it('encrypts failure messages and stack traces of an escalated run', async () => {
    const l = await leak(h1, { superuser: true });
    expect(l.result.outcome).toBe('escalated');
    expect(l.result.failure).toMatchObject({ step: 'revoking', type: 'PermissionDenied' });

    const raw = await rawView(h1, l.workflowId);
    const failed = failuresIn(raw.history as any);
    expect(failed.length).toBeGreaterThan(0);
    const decodedHistory = await h1.decodedHistory(l.workflowId);
    const decodedFailures = failuresIn(decodedHistory as any);
    const messages: string[] = [];
    for (const { eventId, failure: f } of failed) {
      expect(f.message).toBe('Encoded failure');
      expect(f.stackTrace ?? '').toBe('');
      expect(text(f.encodedAttributes?.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
      // The codec restores message and stack trace.
      const d = decodedFailures.find((x) => x.eventId === eventId)!.failure;
      const attrs = defaultPayloadConverter.fromPayload<{ message: string; stack_trace: string }>(
        d.encodedAttributes as Payload,
      );
      expect(attrs.message.length).toBeGreaterThan(0);
      expect(attrs.stack_trace.length).toBeGreaterThan(0);
      messages.push(attrs.message);
    }
    expect(messages.join('\n')).toContain(l.role);
    for (const m of messages)
      expect(raw.text.includes(m), `failure message "${m}" readable in the raw history`).toBe(false);
    for (const needle of [l.role, l.repository, l.scanner, 'PermissionDenied: ', l.password])
      expect(raw.text.includes(needle), needle).toBe(false);
  });

  it('rotates keys: a k1 run decodes, through clients, workers and the codec endpoint, after k2 becomes active', async () => {
    expect(first).toBeDefined();
    const { workflowId, role, repository } = first!;
    h2 = await startHarness({ env: { KILLSWITCH_CODEC_KEYS: keysEnv(K2, K1) } });
    expect(h2.codec.activeKeyId).toBe('k2');

    const old = await h2.client.workflow.getHandle(workflowId).result();
    expect(old).toMatchObject({ outcome: 'contained' });
    expect(deepText(await h2.decodedHistory(workflowId))).toContain(repository);

    // A worker with k2 active replays (so continues) a history sealed with k1.
    const rawHistory = await rawClient(h2).workflow.getHandle(workflowId).fetchHistory();
    await Worker.runReplayHistory(
      { workflowsPath: WORKFLOWS_PATH, dataConverter: h2.dataConverter },
      rawHistory,
      workflowId,
    );

    // The UI's view through the codec endpoint of the rotated ingress.
    const sealed = codecPayloads(rawHistory).find((p) =>
      p.path.includes('workflowExecutionStartedEventAttributes.input'),
    )!.payload;
    const res = await fetch(`${h2.baseUrl}/codec/decode`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${h2.codecToken}`,
        'x-namespace': 'default',
        origin: h2.config.temporal.uiOrigin,
      },
      body: JSON.stringify({
        payloads: [
          {
            metadata: Object.fromEntries(
              Object.entries(sealed.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')]),
            ),
            data: Buffer.from(sealed.data!).toString('base64'),
          },
        ],
      }),
    });
    expect(res.status).toBe(200);
    const [plain] = ((await res.json()) as { payloads: Array<{ data: string }> }).payloads;
    expect(Buffer.from(plain!.data, 'base64').toString()).toContain(role);

    // New runs are sealed with k2.
    const l = await leak(h2);
    expect(l.result.outcome).toBe('contained');
    const ids = new Set(
      codecPayloads((await rawView(h2, l.workflowId)).history).map((p) =>
        text(p.payload.metadata?.[KEY_ID_METADATA]),
      ),
    );
    expect([...ids]).toEqual(['k2']);

    // Once k1 is retired from the configuration, its runs no longer decode: a clear error, not garbage.
    const k2Only = new Client({
      connection: h2.client.connection,
      namespace: 'default',
      dataConverter: killSwitchDataConverter(new EncryptionCodec([K2])),
    });
    await expect(k2Only.workflow.getHandle(workflowId).result()).rejects.toThrow(
      'key id "k1", which is not configured',
    );
    expect(await k2Only.workflow.getHandle(l.workflowId).result()).toMatchObject({ outcome: 'contained' });
  });
});

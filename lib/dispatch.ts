/**
 * Dispatch of one sighting to the run of its credential: the leaked value is sealed, the sighting
 * recorded, and the killSwitch run signalled-with-start, so every sighting of one credential (any
 * scanner, any re-delivery, arriving together or later) lands in one run. After a finished run, the
 * same id starts a short run that re-verifies the credential is dead and records "already contained".
 * Used by the ingress and by the enrichment activity. The ingress's first sight of a delivery takes
 * a shorter path: `prepare` gives the writes, which the delivery ledger commits with its claim in
 * one statement, then `start` only signals.
 */
import { status as grpcStatus } from '@grpc/grpc-js';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Sighting } from '../contracts/finding';
import type { killSwitch } from '../workflows/killSwitch';
import { SearchAttributes, killSwitchWorkflowId, sightingOf, sightingSignal, type KillSwitchInput, type SightingInfo } from '../contracts/run';
import { temporalUiRunUrl, type Config } from './config';
import type { Db } from './db';
import type { Detection } from '../contracts/detection';
import type { EvidenceStore, SealedEvidence } from './evidence';

export interface TemporalTarget {
  client: Client;
  namespace: string;
  taskQueue: string;
  uiUrl: string;
  /** How long a start may take before the caller gives up (the ingress answers 503). */
  deadlineMs: number;
}

/** The Temporal target every process derives from its config and its one client. */
export function temporalTarget(config: Config, client: Client): TemporalTarget {
  return {
    client,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    uiUrl: config.temporal.uiUrl,
    deadlineMs: config.temporal.connectTimeoutMs,
  };
}

export interface Dispatched {
  workflowId: string;
  runId: string;
  temporalUiUrl: string;
}

export class TemporalUnavailableError extends Error {
  override name = 'TemporalUnavailableError';
}

const UNAVAILABLE_CODES = new Set([
  grpcStatus.UNAVAILABLE,
  grpcStatus.DEADLINE_EXCEEDED,
  grpcStatus.RESOURCE_EXHAUSTED,
  grpcStatus.CANCELLED,
]);

export function isTemporalUnavailable(err: unknown): boolean {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    if (e instanceof TemporalUnavailableError) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'number' && UNAVAILABLE_CODES.has(code)) return true;
    const name = (e as { name?: string }).name;
    if (name === 'TransportError' || name === 'ConnectionError') return true;
    const msg = (e as { message?: string }).message ?? '';
    if (/ECONNREFUSED|UNAVAILABLE|DEADLINE_EXCEEDED|Failed to connect|deadline/i.test(msg)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export interface DispatchOptions {
  /**
   * This sighting may have been dispatched before by an attempt whose answer was lost (a delivery
   * re-sent after a crash, a retried activity). If a finished run of its credential already holds
   * the detection, that run is the answer: nothing new starts. (A later, separate delivery of the
   * same detection does start a short re-verifying run: that is a new sighting, not a re-send.)
   */
  redelivery?: boolean;
}

export interface Dispatcher {
  dispatch(sighting: Sighting, receivedAt: Date, opts?: DispatchOptions): Promise<Dispatched>;
}

/** One row of killswitch_sightings. */
export interface SightingRow {
  workflowId: string;
  detectionId: string;
  source: string;
  scanner: string | null;
  location: Detection['location'];
  validity: string | null;
  receivedAt: string;
}

/**
 * What a first delivery of some sightings writes before their runs are signalled: the sealed leaked
 * values and the sighting rows. The ingress writes them with its delivery-ledger claim, in one
 * statement (api/deliveries.ts), where `dispatch` writes them one by one.
 */
export interface DeliveryWrites {
  evidence: SealedEvidence[];
  sightings: SightingRow[];
}

/** The dispatcher as the ingress uses it: its one-round-trip path besides `dispatch`. */
export interface IngressDispatcher extends Dispatcher {
  /** The writes of these sightings (nothing is written here). */
  prepare(sightings: Sighting[], receivedAt: Date): DeliveryWrites;
  /** Signals-with-start the run of a sighting whose writes (`prepare`) are committed already. */
  start(sighting: Sighting, receivedAt: Date): Promise<Dispatched>;
  /** Removes leaked values sealed for runs that never started (nothing half-started stays). */
  discard(workflowIds: readonly string[]): Promise<void>;
}

export function sightingRow(workflowId: string, detection: Detection, receivedAt: Date): SightingRow {
  return {
    workflowId,
    detectionId: detection.id,
    source: detection.source,
    scanner: detection.scanner ?? null,
    location: detection.location,
    validity: detection.validity ?? null,
    receivedAt: receivedAt.toISOString(),
  };
}

export const workflowIdOf = (s: Sighting): string => killSwitchWorkflowId(s.detection.credentialType, s.credentialKey);

export function createDispatcher(deps: {
  temporal: TemporalTarget;
  evidence: EvidenceStore;
  db: Db;
}): IngressDispatcher {
  const t = deps.temporal;

  /** signalWithStart of the credential's run; Temporal unreachable becomes TemporalUnavailableError. */
  const signal = async (
    workflowId: string,
    detection: Detection,
    receivedAt: Date,
    reuse: 'ALLOW_DUPLICATE' | 'REJECT_DUPLICATE' = 'ALLOW_DUPLICATE',
  ): Promise<Dispatched> => {
    const input: KillSwitchInput = { detection, receivedAt: receivedAt.toISOString() };
    const ref = Object.entries(detection.credentialRef)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    try {
      const handle = await t.client.connection.withDeadline(Date.now() + t.deadlineMs, () =>
        t.client.workflow.signalWithStart<typeof killSwitch, [SightingInfo]>('killSwitch', {
          taskQueue: t.taskQueue,
          workflowId,
          args: [input],
          signal: sightingSignal,
          signalArgs: [sightingOf(detection, receivedAt.toISOString())],
          // A finished run never blocks a new sighting: the new run re-verifies and records it
          // (a re-send asks REJECT_DUPLICATE first: see dispatch()).
          workflowIdReusePolicy: reuse,
          typedSearchAttributes: [
            { key: SearchAttributes.credentialType, value: detection.credentialType },
            { key: SearchAttributes.source, value: detection.source },
          ],
          staticSummary: `Leaked ${detection.credentialType}${ref ? ` (${ref})` : ''} reported by ${detection.scanner ?? detection.source}`,
          staticDetails: [
            `**Detection** \`${detection.id}\` from ${detection.scanner ?? detection.source} (source ${detection.source}), severity ${detection.severity}${detection.validity ? `, validity ${detection.validity}` : ''}`,
            `**Credential** ${detection.credentialType}${ref ? ` · ${ref}` : ''}${detection.fingerprint ? ` · fingerprint \`${detection.fingerprint.slice(0, 24)}…\`` : ''}`,
            `**Found at** ${[detection.location.repository, detection.location.file, detection.location.line, detection.location.commit?.slice(0, 12)].filter((x) => x !== undefined).join(' · ') || 'unknown'}`,
            `**Received** ${receivedAt.toISOString()}`,
          ].join('\n\n'),
        }),
      );
      return {
        workflowId,
        runId: handle.signaledRunId,
        temporalUiUrl: temporalUiRunUrl(t.uiUrl, t.namespace, workflowId, handle.signaledRunId),
      };
    } catch (err) {
      if (isTemporalUnavailable(err)) throw new TemporalUnavailableError(`Temporal unreachable: ${(err as Error).message}`);
      throw err;
    }
  };

  return {
    async dispatch(sighting, receivedAt, opts = {}) {
      const { detection, leakedValue } = sighting;
      const workflowId = workflowIdOf(sighting);
      // A finished run that took this detection is found by its audit row, which lists every sighting it took.
      const finishedRun = async (): Promise<Dispatched | undefined> => {
        const done = await deps.db.query<{ run_id: string }>(
          `SELECT run_id FROM killswitch_audit WHERE workflow_id = $1 AND sightings @> $2::jsonb ORDER BY recorded_at DESC LIMIT 1`,
          [workflowId, JSON.stringify([{ detectionId: detection.id }])],
        );
        const runId = done.rows[0]?.run_id;
        return runId ? { workflowId, runId, temporalUiUrl: temporalUiRunUrl(t.uiUrl, t.namespace, workflowId, runId) } : undefined;
      };
      if (opts.redelivery) {
        // A run that is still open joins the re-sent sighting (the workflow dedupes by detection id).
        const done = await finishedRun();
        if (done) return done;
      }
      let sealed = false;
      if (leakedValue !== undefined && detection.fingerprint) {
        sealed = await deps.evidence.put(workflowId, detection.fingerprint, leakedValue);
      }
      try {
        const row = sightingRow(workflowId, detection, receivedAt);
        await deps.db.query(
          `INSERT INTO killswitch_sightings (workflow_id, detection_id, source, scanner, location, validity, received_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) ON CONFLICT DO NOTHING`,
          [row.workflowId, row.detectionId, row.source, row.scanner, JSON.stringify(row.location), row.validity, row.receivedAt],
        );
        if (!opts.redelivery) return await signal(workflowId, detection, receivedAt);
        // A re-send may race the run that took its first copy: open when the audit was read above,
        // closed now. Starting a fresh run would give the detection a second run, so a re-send
        // never starts over a closed run blindly: rejected, it reads the audit again (a run writes
        // its row before it closes). Only a closed run that never took this detection (an earlier
        // sighting's) lets it start a new one.
        try {
          return await signal(workflowId, detection, receivedAt, 'REJECT_DUPLICATE');
        } catch (err) {
          if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
          const done = await finishedRun();
          if (!done) return await signal(workflowId, detection, receivedAt);
          if (sealed) await deps.evidence.purge(workflowId).catch(() => undefined);
          return done;
        }
      } catch (err) {
        // Nothing half-started: a value sealed for a run that never started is removed.
        if (sealed) await deps.evidence.purge(workflowId).catch(() => undefined);
        throw err;
      }
    },

    prepare(sightings, receivedAt) {
      const writes: DeliveryWrites = { evidence: [], sightings: [] };
      for (const s of sightings) {
        const workflowId = workflowIdOf(s);
        if (s.leakedValue !== undefined && s.detection.fingerprint) {
          writes.evidence.push(deps.evidence.seal(workflowId, s.detection.fingerprint, s.leakedValue));
        }
        writes.sightings.push(sightingRow(workflowId, s.detection, receivedAt));
      }
      return writes;
    },

    start(sighting, receivedAt) {
      return signal(workflowIdOf(sighting), sighting.detection, receivedAt);
    },

    async discard(workflowIds) {
      for (const id of new Set(workflowIds)) await deps.evidence.purge(id);
    },
  };
}

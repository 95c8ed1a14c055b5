/**
 * Dispatch of one sighting to the run of its credential: the leaked value is sealed, the sighting
 * recorded, and the killSwitch run signalled-with-start, so every sighting of one credential (any
 * scanner, any re-delivery, arriving together or later) lands in one run. After a finished run, the
 * same id starts a short run that re-verifies the credential is dead and records "already contained".
 * Used by the ingress and by the enrichment activity. The ingress's first sight of a delivery takes
 * a shorter path: `prepare` gives the writes, which the delivery ledger commits with its claim in
 * one statement, then `start` only signals.
 *
 * Every workflow the kill switch starts from outside a workflow goes through one WorkflowDispatcher
 * (createWorkflowDispatcher): by workflow type name, with the typed arguments of contracts/, and
 * options built here by one function per workflow type (killSwitchStart, enrichStart). Nothing here
 * imports workflows/ and nothing here holds SQL: the sightings and the audit are reached through
 * the SightingLedger (store/sightings.ts builds it).
 */
import { status as grpcStatus } from '@grpc/grpc-js';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { SearchAttributePair, SignalDefinition } from '@temporalio/common';
import type { Sighting } from '../contracts/finding';
import {
  SearchAttributes,
  killSwitchWorkflowId,
  sightingOf,
  sightingSignal,
  type Dispatched,
  type KillSwitchInput,
  type SightingInfo,
} from '../contracts/run';
import { enrichWorkflowId, type EnrichInput } from '../contracts/enrichment';
import type { DeliverEventsInput } from '../contracts/events';
import { temporalUiRunUrl, type Config } from './config';
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

/** The workflows started from outside a workflow, by type name, with their arguments. */
export interface WorkflowArgs {
  killSwitch: [KillSwitchInput];
  enrichDetection: [EnrichInput];
  deliverEvents: [DeliverEventsInput];
}

/** The signal a signal-with-start delivers, by workflow type. */
export interface WorkflowSignals {
  killSwitch: [SightingInfo];
  deliverEvents: [];
}

export type WorkflowType = keyof WorkflowArgs;

/** A start, as Temporal's client takes it (the task queue is the dispatcher's). */
export interface StartRequest<W extends WorkflowType = WorkflowType> {
  workflowType: W;
  workflowId: string;
  args: WorkflowArgs[W];
  workflowIdReusePolicy: 'ALLOW_DUPLICATE' | 'REJECT_DUPLICATE';
  workflowIdConflictPolicy?: 'USE_EXISTING';
  typedSearchAttributes?: SearchAttributePair[];
  staticSummary: string;
  staticDetails?: string;
}

export interface SignalWithStartRequest<
  W extends keyof WorkflowSignals = keyof WorkflowSignals,
> extends StartRequest<W> {
  signal: SignalDefinition<WorkflowSignals[W]>;
  signalArgs: WorkflowSignals[W];
}

/**
 * The one place workflows are started. Temporal unreachable (or slower than the target's deadline)
 * becomes TemporalUnavailableError; every other error is passed on as the client threw it.
 */
export interface WorkflowDispatcher {
  /**
   * Signals the open run of `workflowId`, starting one first if none is open (the reuse policy
   * decides whether a closed run lets it start: WorkflowExecutionAlreadyStartedError otherwise).
   */
  signalWithStart<W extends keyof WorkflowSignals>(req: SignalWithStartRequest<W>): Promise<Dispatched>;
  /** Starts the run, or answers the run that holds its id and may not be started over. */
  start<W extends WorkflowType>(req: StartRequest<W>): Promise<Dispatched>;
  /** The Temporal UI's page of a run. */
  runUrl(workflowId: string, runId: string): string;
}

type WorkflowFn<W extends WorkflowType> = (...args: WorkflowArgs[W]) => Promise<unknown>;

export function createWorkflowDispatcher(t: TemporalTarget): WorkflowDispatcher {
  const runUrl = (workflowId: string, runId: string) =>
    temporalUiRunUrl(t.uiUrl, t.namespace, workflowId, runId);
  const within = <R>(fn: () => Promise<R>) => t.client.connection.withDeadline(Date.now() + t.deadlineMs, fn);
  return {
    runUrl,
    async signalWithStart(req) {
      // killSwitch is the one workflow started with a signal (WorkflowSignals).
      const { workflowType, ...options } = req as SignalWithStartRequest<'killSwitch'>;
      try {
        const handle = await within(() =>
          t.client.workflow.signalWithStart<WorkflowFn<'killSwitch'>, WorkflowSignals['killSwitch']>(
            workflowType,
            {
              taskQueue: t.taskQueue,
              ...options,
            },
          ),
        );
        return {
          workflowId: options.workflowId,
          runId: handle.signaledRunId,
          temporalUiUrl: runUrl(options.workflowId, handle.signaledRunId),
        };
      } catch (err) {
        if (isTemporalUnavailable(err))
          throw new TemporalUnavailableError(`Temporal unreachable: ${(err as Error).message}`);
        throw err;
      }
    },
    async start({ workflowType, ...options }) {
      const answer = (runId: string): Dispatched => ({
        workflowId: options.workflowId,
        runId,
        temporalUiUrl: runUrl(options.workflowId, runId),
      });
      try {
        return await within(async () => {
          try {
            const handle = await t.client.workflow.start<WorkflowFn<typeof workflowType>>(workflowType, {
              taskQueue: t.taskQueue,
              ...options,
            });
            return answer(handle.firstExecutionRunId);
          } catch (err) {
            if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
            const d = await t.client.workflow.getHandle(options.workflowId).describe();
            return answer(d.runId);
          }
        });
      } catch (err) {
        if (isTemporalUnavailable(err)) throw new TemporalUnavailableError((err as Error).message);
        throw err;
      }
    },
  };
}

/**
 * The signal-with-start of a credential's killSwitch run for one sighting. A finished run never
 * blocks a new sighting: the new run re-verifies and records it (a re-send asks REJECT_DUPLICATE
 * first: see dispatch()).
 */
export function killSwitchStart(
  sighting: Sighting,
  receivedAt: Date,
  reuse: 'ALLOW_DUPLICATE' | 'REJECT_DUPLICATE' = 'ALLOW_DUPLICATE',
): SignalWithStartRequest<'killSwitch'> {
  const { detection } = sighting;
  const input: KillSwitchInput = { detection, receivedAt: receivedAt.toISOString() };
  const ref = Object.entries(detection.credentialRef)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return {
    workflowType: 'killSwitch',
    workflowId: workflowIdOf(sighting),
    args: [input],
    signal: sightingSignal,
    signalArgs: [sightingOf(detection, receivedAt.toISOString())],
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
  };
}

/**
 * The start of a delivery's enrichment run (a finding named without its value): one per delivery
 * id. A finished one is answered, never started again (REJECT_DUPLICATE): a re-sent delivery must
 * not fetch and dispatch its finding twice.
 */
export function enrichStart(input: EnrichInput): StartRequest<'enrichDetection'> {
  const r = input.request;
  return {
    workflowType: 'enrichDetection',
    workflowId: enrichWorkflowId(input.source, input.deliveryId),
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'REJECT_DUPLICATE',
    staticSummary: `Fetch ${r.kind} ${r.repository}#${r.alertNumber} and contain it`,
  };
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
  /** Starts the enrichment run of a delivery that names a finding without its value, or answers the one that exists. */
  enrich(input: EnrichInput): Promise<Dispatched>;
}

/** What the dispatcher reads and writes besides the evidence (store/sightings.ts builds it over the database). */
export interface SightingLedger {
  /** Records one sighting; a sighting recorded before is left as it is. */
  record(row: SightingRow): Promise<void>;
  /** The run id of the newest finished run of this workflow id whose audit row lists the detection. */
  finishedRunHolding(workflowId: string, detectionId: string): Promise<string | undefined>;
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

export const workflowIdOf = (s: Sighting): string =>
  killSwitchWorkflowId(s.detection.credentialType, s.credentialKey);

export function createDispatcher(deps: {
  workflows: WorkflowDispatcher;
  evidence: EvidenceStore;
  sightings: SightingLedger;
}): IngressDispatcher {
  const signal = (sighting: Sighting, receivedAt: Date, reuse?: 'ALLOW_DUPLICATE' | 'REJECT_DUPLICATE') =>
    deps.workflows.signalWithStart(killSwitchStart(sighting, receivedAt, reuse));

  return {
    async dispatch(sighting, receivedAt, opts = {}) {
      const { detection, leakedValue } = sighting;
      const workflowId = workflowIdOf(sighting);
      // A finished run that took this detection is found by its audit row, which lists every sighting it took.
      const finishedRun = async (): Promise<Dispatched | undefined> => {
        const runId = await deps.sightings.finishedRunHolding(workflowId, detection.id);
        return runId
          ? { workflowId, runId, temporalUiUrl: deps.workflows.runUrl(workflowId, runId) }
          : undefined;
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
        await deps.sightings.record(sightingRow(workflowId, detection, receivedAt));
        if (!opts.redelivery) return await signal(sighting, receivedAt);
        // A re-send may race the run that took its first copy: open when the audit was read above,
        // closed now. Starting a fresh run would give the detection a second run, so a re-send
        // never starts over a closed run blindly: rejected, it reads the audit again (a run writes
        // its row before it closes). Only a closed run that never took this detection (an earlier
        // sighting's) lets it start a new one.
        try {
          return await signal(sighting, receivedAt, 'REJECT_DUPLICATE');
        } catch (err) {
          if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
          const done = await finishedRun();
          if (!done) return await signal(sighting, receivedAt);
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
      return signal(sighting, receivedAt);
    },

    async discard(workflowIds) {
      for (const id of new Set(workflowIds)) await deps.evidence.purge(id);
    },

    enrich(input) {
      return deps.workflows.start(enrichStart(input));
    },
  };
}

/** Activity options as named profiles, shared by the workflows; docs/architecture.md lists them. */
import type { ActivityOptions, LocalActivityOptions } from '@temporalio/workflow';
import { ErrorType, NON_RETRYABLE_CONTAINMENT_ERRORS } from '../contracts/errors';

export const ActivityProfiles = {
  lookup: {
    startToCloseTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
  },
  critical: {
    startToCloseTimeout: '30s',
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '30s',
      maximumAttempts: 8,
      nonRetryableErrorTypes: NON_RETRYABLE_CONTAINMENT_ERRORS,
    },
  },
  verify: {
    startToCloseTimeout: '20s',
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '10s',
      maximumAttempts: 5,
      nonRetryableErrorTypes: NON_RETRYABLE_CONTAINMENT_ERRORS,
    },
  },
  escalate: {
    startToCloseTimeout: '15s',
    retry: {
      initialInterval: '2s',
      backoffCoefficient: 2,
      maximumInterval: '60s',
      maximumAttempts: 10,
      nonRetryableErrorTypes: [ErrorType.NOTIFICATION_REJECTED],
    },
  },
  /** The audit row must land: retried until the database is back. */
  audit: {
    startToCloseTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '60s' },
  },
  /** Bounded so a broken Slack never spams or blocks. */
  /**
   * One delivery round of a subscription (deliverDue): a batch bounded to ~60 s of sending, each
   * request bounded by the subscription's timeout (≤ 30 s). Retried without limit (a database outage
   * must not end the run); the destination's own failures are recorded in the queue, not thrown.
   */
  deliver: {
    startToCloseTimeout: '3m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
  },
  notify: {
    startToCloseTimeout: '15s',
    // Bounded by time, not by attempts: under a burst Slack's 1 message/s per channel makes most
    // attempts wait on a 429 (each honours Retry-After), and counting them lost 147 of 150 outcome
    // messages in `npm run bench -- --n 150`. Permanent refusals still stop at once.
    scheduleToCloseTimeout: '30m',
    retry: {
      initialInterval: '2s',
      backoffCoefficient: 2,
      maximumInterval: '30s',
      nonRetryableErrorTypes: [ErrorType.NOTIFICATION_REJECTED],
    },
  },
  /** Fetching a finding from a scanner's API: worth retrying for a while, it is the only copy. */
  enrich: {
    startToCloseTimeout: '30s',
    retry: {
      initialInterval: '2s',
      backoffCoefficient: 2,
      maximumInterval: '5m',
      maximumAttempts: 20,
      nonRetryableErrorTypes: [ErrorType.UPSTREAM_REFUSED],
    },
  },
  /**
   * Handing a finding that could not be fetched to a run that pages a human: the only way that leak
   * reaches anyone, so retried until it lands (a permanent refusal still stops at once).
   */
  handOff: {
    startToCloseTimeout: '30s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
  },
  /** Waiting for a run's first recorded outcome: the retry policy is the polling loop, bounded by a day. */
  awaitOutcome: {
    startToCloseTimeout: '10s',
    scheduleToCloseTimeout: '25h',
    retry: { initialInterval: '1s', backoffCoefficient: 1.5, maximumInterval: '30s' },
  },
  /** Reporting back to a scanner after a kill: useful, never essential. */
  closeLoop: {
    startToCloseTimeout: '15s',
    retry: {
      initialInterval: '2s',
      backoffCoefficient: 2,
      maximumInterval: '60s',
      maximumAttempts: 5,
      nonRetryableErrorTypes: [ErrorType.UPSTREAM_REFUSED],
    },
  },
  cleanup: {
    startToCloseTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
  },
} satisfies Record<string, ActivityOptions>;

/**
 * The profiles the kill switch runs as local activities (inside the workflow task: lookups,
 * containment, the audit row, the evidence purge). Same timeouts and retries; a retry whose backoff
 * would pass `localRetryThreshold` waits on a server timer instead of holding the workflow task
 * open (the audit row during a database outage: attempts 1-4 in the worker, then timers).
 */
export const LocalActivityProfiles = {
  lookup: ActivityProfiles.lookup,
  critical: ActivityProfiles.critical,
  verify: ActivityProfiles.verify,
  audit: { ...ActivityProfiles.audit, localRetryThreshold: '10s' },
  cleanup: ActivityProfiles.cleanup,
} satisfies Record<string, LocalActivityOptions>;

/**
 * How long enrichDetection lets a finding's fetch fail before it escalates the finding without its
 * value (a human is paged within minutes, not after the `enrich` profile's hour of retries); the
 * fetch goes on and the late value joins the credential's run. EnrichInput.escalateAfter overrides.
 */
export const ENRICH_ESCALATE_AFTER = '2m';

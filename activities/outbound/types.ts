/**
 * The outbound side of events: a subscription as the worker sees it (its secret unsealed), and the
 * two shapes every destination implements. A `Formatter` turns an event into an HTTP body for the
 * shared HTTP transport (json, slack, teams, teams_adaptive, cef, splunk_hec); a `Transport` owns
 * its whole delivery (syslog, e-mail, jira). Both are pure of the queue: the delivery activity
 * (activities/outbound/deliver.ts) claims, retries, records and trips the breaker.
 */
import type { EventFilters, EventFormat, KillSwitchEvent } from '../../contracts/events';

export interface OutboundSubscription {
  id: string;
  name: string;
  format: EventFormat;
  /** HTTP formats and jira: the endpoint (https; http only where the allow-list permits). */
  url?: string;
  /** syslog and email: where and how to connect (see each transport's schema). */
  connection?: Record<string, unknown>;
  /** The signing secret (json) or the token (splunk_hec, jira); unsealed, in the worker only. */
  secret?: string;
  eventTypes: string[];
  filters: EventFilters;
  /** Format options: teams card kind, jira project/issue type/transition, cef vendor, email recipients… */
  options: Record<string, unknown>;
  retryCount: number;
  timeoutMs: number;
  failureThreshold: number;
  isActive: boolean;
  /** Receives only events routed to it (an owning system's routing, a rule). */
  routedOnly?: boolean;
}

export interface DeliveryResult {
  ok: boolean;
  /** HTTP status, when the destination answered over HTTP. */
  statusCode?: number;
  /** Whether another attempt may succeed (5xx, 408, 429, timeouts, connection errors). */
  retryable: boolean;
  /** The destination asked to wait this long (Retry-After). */
  retryAfterMs?: number;
  /** Short, never a secret, never the body. */
  error?: string;
}

/** An HTTP request body for the shared HTTP transport. */
export interface FormattedRequest {
  contentType: string;
  body: string;
  headers?: Record<string, string>;
}

export type Formatter = (event: KillSwitchEvent, sub: OutboundSubscription) => FormattedRequest;

export interface Transport {
  /**
   * How many requests one delivery may make in a row (each bounded by the subscription's timeoutMs):
   * the delivery's whole budget is that many timeouts. Default 1.
   */
  readonly requestsPerDelivery?: number;
  deliver(event: KillSwitchEvent, sub: OutboundSubscription, signal: AbortSignal): Promise<DeliveryResult>;
  close?(): Promise<void>;
}

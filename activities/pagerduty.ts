/**
 * PagerDuty Events API v2. dedup_key is the workflow id, so every retry and every later event
 * (resolve after a successful retry) lands on the same incident.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType } from '../contracts/errors';
import { type RunSummary } from '../contracts/run';
import { describeCredential, describeLocation } from './describe';

export interface PagerDutyEvent {
  routing_key: string;
  event_action: 'trigger' | 'acknowledge' | 'resolve';
  dedup_key: string;
  payload?: {
    summary: string;
    source: string;
    severity: 'critical' | 'error' | 'warning' | 'info';
    component?: string;
    group?: string;
    class?: string;
    custom_details?: Record<string, unknown>;
  };
  links?: Array<{ href: string; text: string }>;
  client?: string;
  client_url?: string;
}

/**
 * `routingKey` on a call: the owning system's team service (lib/routing.ts) instead of
 * PAGERDUTY_ROUTING_KEY. A follow-up must go to the service its trigger went to (PagerDuty groups
 * by routing key and dedup key).
 */
export interface PagerDutySender {
  trigger(
    summary: RunSummary,
    runUrl: string,
    routingKey?: string,
  ): Promise<{ status: 'sent' | 'logged'; dedupKey: string }>;
  /** Acknowledge or resolve the incident of a dedup key (a human is on it; a later retry contained it). */
  followUp(
    dedupKey: string,
    action: 'acknowledge' | 'resolve',
    routingKey?: string,
  ): Promise<{ status: 'sent' | 'logged'; dedupKey: string }>;
  /** A trigger about something other than one run (the mass-leak breaker). */
  event(e: {
    routingKey?: string | undefined;
    dedupKey: string;
    summary: string;
    source: string;
    severity: 'critical' | 'error';
    class: string;
    details: Record<string, unknown>;
    link: string;
  }): Promise<{
    status: 'sent' | 'logged';
    dedupKey: string;
  }>;
}

export function buildTriggerEvent(s: RunSummary, runUrl: string, routingKey: string): PagerDutyEvent {
  const d = s.detection;
  const why = s.failure ? `${s.failure.type} at ${s.failure.step}` : 'unknown failure';
  return {
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key: s.workflowId,
    payload: {
      summary: `Leaked ${describeCredential(d)} NOT contained (${why})`.slice(0, 1024),
      source: s.owner?.system ?? 'secret-kill-switch',
      severity: d.severity === 'critical' || d.severity === 'high' ? 'critical' : 'error',
      component: d.credentialType,
      group: s.owner?.system ?? 'unowned',
      class: s.failure?.type ?? 'containment_failed',
      custom_details: {
        workflow_id: s.workflowId,
        run_id: s.runId,
        failure: s.failure,
        credential_ref: d.credentialRef,
        fingerprint: d.fingerprint,
        detection_source: d.source,
        scanner: d.scanner,
        found_at: describeLocation(d),
        received_at: s.timeline.receivedAt,
        rotated_at: s.timeline.rotatedAt,
      },
    },
    links: [{ href: runUrl, text: 'Kill switch run in the Temporal UI' }],
    client: 'Secret Kill Switch',
    client_url: runUrl,
  };
}

export function createPagerDutySender(opts: {
  routingKey: string | undefined;
  eventsUrl: string;
  log: (event: Omit<PagerDutyEvent, 'routing_key'>) => void;
}): PagerDutySender {
  const deliver = async (event: PagerDutyEvent) => {
    if (!event.routing_key) {
      const { routing_key: _omit, ...rest } = event;
      opts.log(rest);
      return { status: 'logged' as const, dedupKey: event.dedup_key };
    }
    await send(opts.eventsUrl, event);
    return { status: 'sent' as const, dedupKey: event.dedup_key };
  };
  const keyOf = (routingKey: string | undefined) => routingKey || opts.routingKey || '';
  return {
    followUp: (dedupKey, action, routingKey) =>
      deliver({ routing_key: keyOf(routingKey), event_action: action, dedup_key: dedupKey }),
    event: (e) =>
      deliver({
        routing_key: keyOf(e.routingKey),
        event_action: 'trigger',
        dedup_key: e.dedupKey,
        payload: {
          summary: e.summary.slice(0, 1024),
          source: e.source,
          severity: e.severity,
          class: e.class,
          custom_details: e.details,
        },
        links: [{ href: e.link, text: 'Kill switch run in the Temporal UI' }],
        client: 'Secret Kill Switch',
        client_url: e.link,
      }),
    trigger: (summary, runUrl, routingKey) => deliver(buildTriggerEvent(summary, runUrl, keyOf(routingKey))),
  };
}

async function send(eventsUrl: string, event: PagerDutyEvent): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${eventsUrl}/v2/enqueue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(event),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new Error(`PagerDuty unreachable: ${(err as Error).message}`);
  }
  const body = await res.text().catch(() => '');
  if (res.status === 202 || res.status === 200) return;
  if (res.status === 429) {
    const retryAfter = Number(res.headers.get('retry-after'));
    throw ApplicationFailure.create({
      type: 'PagerDutyRateLimited',
      message: 'PagerDuty rate limited the event',
      nextRetryDelay: `${Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : 30}s`,
    });
  }
  if (res.status >= 500) throw new Error(`PagerDuty answered ${res.status}`);
  throw ApplicationFailure.create({
    type: ErrorType.NOTIFICATION_REJECTED,
    message: `PagerDuty rejected the event (${res.status}): ${body.slice(0, 500)}`,
    nonRetryable: true,
  });
}

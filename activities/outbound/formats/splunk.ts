/**
 * Splunk HTTP Event Collector, JSON event endpoint (`/services/collector/event`), per Splunk's
 * "Format events for HTTP Event Collector": `{time, host?, source, sourcetype, index?, event}` with
 * `time` in epoch seconds with millisecond decimals (`<sec>.<ms>`), and the token sent as
 * `Authorization: Splunk <token>`. The token is the subscription's secret.
 *
 * Options: `sourcetype` (default `_json`, which Splunk parses into fields without any props.conf),
 * `index` (must be one the token may write to), `host`.
 *
 * The event is the envelope re-parsed through its schema, so a property outside the contract is
 * never forwarded.
 */
import { eventEnvelopeSchema, type KillSwitchEvent } from '../../../contracts/events';
import type { Formatter, OutboundSubscription } from '../types';

export const SPLUNK_SOURCE = 'secret-kill-switch';
export const SPLUNK_DEFAULT_SOURCETYPE = '_json';

export interface HecEvent {
  time?: number;
  host?: string;
  source: string;
  sourcetype: string;
  index?: string;
  event: KillSwitchEvent;
}

function opt(options: OutboundSubscription['options'], name: string): string | undefined {
  const v = options[name];
  return typeof v === 'string' && v.trim() !== '' ? v : undefined;
}

export function hecEvent(event: KillSwitchEvent, options: OutboundSubscription['options'] = {}): HecEvent {
  const ms = Date.parse(event.occurredAt);
  const host = opt(options, 'host');
  const index = opt(options, 'index');
  return {
    ...(Number.isFinite(ms) ? { time: Math.round(ms) / 1000 } : {}),
    ...(host ? { host } : {}),
    source: SPLUNK_SOURCE,
    sourcetype: opt(options, 'sourcetype') ?? SPLUNK_DEFAULT_SOURCETYPE,
    ...(index ? { index } : {}),
    event: eventEnvelopeSchema.parse(event),
  };
}

export const splunkHec: Formatter = (event, sub) => {
  // Without a token HEC answers 401 to every attempt: a configuration error, not a delivery one.
  if (!sub.secret) throw new Error(`splunk_hec subscription ${sub.id} has no HEC token`);
  return {
    contentType: 'application/json',
    body: JSON.stringify(hecEvent(event, sub.options)),
    headers: { Authorization: `Splunk ${sub.secret}` },
  };
};

/**
 * ArcSight Common Event Format (CEF), one line per event:
 *
 *   CEF:0|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension
 *
 * Escaping (CEF implementation standard, "Character encoding"): in the header a backslash and a
 * pipe are backslash-escaped, and a header holds no line break (each becomes a space); in the
 * extension a backslash and an equals sign are backslash-escaped and CR/LF are written `\r`/`\n`
 * (a pipe needs no escape there). Keys and their order come from `CEF_FIELD_MAP`.
 *
 * `cefLine` is shared with the syslog transport; the `cef` formatter posts the line as text/plain
 * to HTTP collectors.
 */
import {
  EVENT_LEVELS,
  EVENT_VERSION,
  type EventLevel,
  type EventType,
  type KillSwitchEvent,
} from '../../../contracts/events';
import type { Formatter, OutboundSubscription } from '../types';
import { EVENT_TITLES } from './facts';

export const CEF_DEFAULT_VENDOR = 'Secret Kill Switch';
export const CEF_DEFAULT_PRODUCT = 'Kill Switch';
/** Device Version: the event contract's version, so a parser can tell field maps apart. */
export const CEF_DEVICE_VERSION = String(EVENT_VERSION);

/** Header Severity (0-10) by level. */
export const CEF_SEVERITY: Record<EventLevel, number> = { failure: 9, warning: 6, success: 3, info: 1 };

/**
 * Signature ID (Device Event Class ID) per event type: `ks-` plus the type with `.`/`_` as `-`.
 * Stable: SIEM rules key on these; a renamed type keeps its old id here.
 */
export const CEF_SIGNATURE_IDS: Record<EventType, string> = {
  'detection.received': 'ks-detection-received',
  'run.started': 'ks-run-started',
  'approval.requested': 'ks-approval-requested',
  'approval.decided': 'ks-approval-decided',
  'breaker.tripped': 'ks-breaker-tripped',
  'credential.revoked': 'ks-credential-revoked',
  'replacement.issued': 'ks-replacement-issued',
  'sessions.expired': 'ks-sessions-expired',
  'credential.verified_dead': 'ks-credential-verified-dead',
  'run.contained': 'ks-run-contained',
  'run.escalated': 'ks-run-escalated',
  'run.acknowledged': 'ks-run-acknowledged',
  'run.false_positive': 'ks-run-false-positive',
  'run.dry_run': 'ks-run-dry-run',
  'run.ended': 'ks-run-ended',
  'subscription.disabled': 'ks-subscription-disabled',
  'delivery.test': 'ks-delivery-test',
};

interface CefField {
  /** CEF extension key (dictionary name). */
  key: string;
  /** For custom strings: the `…Label` key and its value. */
  label?: [string, string];
  /** The envelope field it carries, for the documentation table. */
  from: string;
  value: (e: KillSwitchEvent) => string | number | undefined;
}

/** Event field -> CEF extension key, in the order written. Absent fields are left out. */
export const CEF_FIELD_MAP: readonly CefField[] = [
  { key: 'rt', from: 'occurredAt (epoch ms)', value: (e) => epochMs(e.occurredAt) },
  { key: 'externalId', from: 'id', value: (e) => e.id },
  { key: 'cat', from: 'type', value: (e) => e.type },
  { key: 'msg', from: 'summary', value: (e) => e.summary },
  { key: 'outcome', from: 'data.outcome', value: (e) => e.data.outcome },
  {
    key: 'act',
    from: 'data.decision, else data.policy.action',
    value: (e) => e.data.decision ?? e.data.policy?.action,
  },
  { key: 'suser', from: 'data.by', value: (e) => e.data.by },
  {
    key: 'reason',
    from: 'data.failure (type at step: message)',
    value: (e) =>
      e.data.failure
        ? `${e.data.failure.type} at ${e.data.failure.step}: ${e.data.failure.message}`
        : undefined,
  },
  { key: 'request', from: 'run.url', value: (e) => e.run?.url },
  {
    key: 'cs1',
    label: ['cs1Label', 'owningSystem'],
    from: 'data.owner.system, else data.breaker.system',
    value: (e) => e.data.owner?.system ?? e.data.breaker?.system,
  },
  {
    key: 'cs2',
    label: ['cs2Label', 'credentialType'],
    from: 'data.credential.type',
    value: (e) => e.data.credential?.type,
  },
  {
    key: 'cs3',
    label: ['cs3Label', 'fingerprint'],
    from: 'data.credential.fingerprint',
    value: (e) => e.data.credential?.fingerprint,
  },
  { key: 'cs4', label: ['cs4Label', 'workflowId'], from: 'run.workflowId', value: (e) => e.run?.workflowId },
  {
    key: 'cs5',
    label: ['cs5Label', 'detectionSource'],
    from: 'data.detection.source',
    value: (e) => e.data.detection?.source,
  },
  { key: 'cs6', label: ['cs6Label', 'step'], from: 'data.step', value: (e) => e.data.step },
  {
    key: 'flexString1',
    label: ['flexString1Label', 'repository'],
    from: 'data.detection.location.repository',
    value: (e) => e.data.detection?.location.repository,
  },
  {
    key: 'flexString2',
    label: ['flexString2Label', 'owningTeam'],
    from: 'data.owner.team',
    value: (e) => e.data.owner?.team ?? undefined,
  },
  { key: 'filePath', from: 'data.detection.location.file', value: (e) => e.data.detection?.location.file },
  { key: 'cnt', from: 'data.breaker.count', value: (e) => e.data.breaker?.count },
];

function epochMs(iso: string): number | undefined {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : undefined;
}

/** Header field: backslash and pipe escaped, line breaks flattened to spaces. */
export function cefHeaderEscape(s: string): string {
  return s.replace(/[\\|]/g, '\\$&').replace(/\r\n|\r|\n/g, ' ');
}

/** Extension value: backslash and equals escaped, CR and LF written as `\r` and `\n`. */
export function cefExtensionEscape(s: string): string {
  return s.replace(/[\\=]/g, '\\$&').replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}

export interface CefOptions {
  vendor?: string;
  product?: string;
}

/** Header Device Vendor/Product are at most 63 characters in the standard. */
function headerText(value: unknown, fallback: string): string {
  return typeof value === 'string' && value.trim() !== '' ? value.slice(0, 63) : fallback;
}

/** A subscription's `options.vendor` / `options.product` (or `cefVendor`/`cefProduct`), when non-empty strings. */
export function cefOptions(options: OutboundSubscription['options']): CefOptions {
  return {
    vendor: headerText(options.vendor ?? options.cefVendor, CEF_DEFAULT_VENDOR),
    product: headerText(options.product ?? options.cefProduct, CEF_DEFAULT_PRODUCT),
  };
}

export function cefLine(event: KillSwitchEvent, opts: CefOptions = {}): string {
  const header = [
    headerText(opts.vendor, CEF_DEFAULT_VENDOR),
    headerText(opts.product, CEF_DEFAULT_PRODUCT),
    CEF_DEVICE_VERSION,
    CEF_SIGNATURE_IDS[event.type],
    EVENT_TITLES[event.type],
    String(CEF_SEVERITY[EVENT_LEVELS[event.type]]),
  ].map(cefHeaderEscape);
  const ext: string[] = [];
  for (const f of CEF_FIELD_MAP) {
    const v = f.value(event);
    if (v === undefined || v === '') continue;
    if (f.label) ext.push(`${f.label[0]}=${cefExtensionEscape(f.label[1])}`);
    ext.push(`${f.key}=${cefExtensionEscape(String(v))}`);
  }
  return `CEF:0|${header.join('|')}|${ext.join(' ')}`;
}

export const cef: Formatter = (event, sub) => ({
  contentType: 'text/plain; charset=utf-8',
  body: cefLine(event, cefOptions(sub.options)),
});

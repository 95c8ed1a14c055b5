/** Human-readable pieces shared by the Slack and PagerDuty messages. */
import type { Detection } from '../contracts/detection';
import type { RunSummary } from '../contracts/run';

export function describeCredential(d: Detection): string {
  const ref = Object.entries(d.credentialRef)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return `${d.credentialType}${ref ? ` (${ref})` : ''}`;
}

export function describeLocation(d: Detection): string | undefined {
  const l = d.location;
  const where = [l.repository, l.file && (l.line !== undefined ? `${l.file}:${l.line}` : l.file)]
    .filter(Boolean)
    .join(' ');
  return where || l.url || undefined;
}

function secondsBetween(a: string, b: string | undefined): string | undefined {
  if (!b) return undefined;
  return `${((Date.parse(b) - Date.parse(a)) / 1000).toFixed(1)}s`;
}

/** "rotated +1.2s, sessions expired +1.4s, verified dead +1.6s" measured from receipt. */
export function describeTimings(s: RunSummary): string {
  const t = s.timeline;
  const parts = [
    ['rotated', secondsBetween(t.receivedAt, t.rotatedAt)],
    ['sessions expired', secondsBetween(t.receivedAt, t.sessionsExpiredAt)],
    ['verified dead', secondsBetween(t.receivedAt, t.verifiedDeadAt)],
  ]
    .filter(([, v]) => v)
    .map(([k, v]) => `${k} +${v}`);
  return parts.length ? parts.join(', ') : 'nothing changed';
}

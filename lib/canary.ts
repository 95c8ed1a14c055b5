/**
 * The intake canary (`killswitch send-test`): a synthetic detection that proves a signed delivery
 * reaches a run, a worker and the audit table, while naming no real credential. Pure: used by the
 * CLI that builds it and by the policy that recognises it.
 */
import type { Detection } from '../contracts/detection';

export const CANARY_SCANNER = 'killswitch-canary';
export const CANARY_POLICY_RULE = 'canary';

/**
 * A canary is recognised by its whole shape, not by the scanner name alone: a generic credential
 * identified only by `{canary: <id>}` and carrying no leaked value. A real leak never looks like
 * that, so a scanner calling itself `killswitch-canary` cannot get a real credential ignored.
 */
export function isCanary(
  d: Pick<Detection, 'scanner' | 'credentialType' | 'credentialRef' | 'fingerprint' | 'hasEvidence'>,
): boolean {
  const keys = Object.keys(d.credentialRef);
  return (
    d.scanner === CANARY_SCANNER &&
    d.credentialType === 'generic' &&
    keys.length === 1 &&
    keys[0] === 'canary' &&
    !d.fingerprint &&
    !d.hasEvidence
  );
}

/** The body of a canary in the generic detection format. */
export function canaryDetection(canaryId: string, now: Date = new Date()): Record<string, unknown> {
  return {
    scanner: CANARY_SCANNER,
    findingId: canaryId,
    credentialType: 'generic',
    credentialRef: { canary: canaryId },
    location: { repository: 'killswitch/canary', file: 'send-test' },
    severity: 'low',
    detectedAt: now.toISOString(),
  };
}

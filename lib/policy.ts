/**
 * Policy: ordered rules over what a detection says (source, credential type, owner, severity,
 * validity, repository, publicly leaked), first match wins, default otherwise. Dry run comes from
 * the global switch or the detection's source. Pure: evaluated inside an activity, recorded in the
 * workflow history and the audit row.
 */
import { CANARY_POLICY_RULE, isCanary } from './canary';
import type { Detection } from '../contracts/detection';
import type { DryRunOverrides } from './dry-run';
import { glob as globToRegExp } from './systems/common';
import type { PolicyConfig, SourcesConfig } from './sources-config';
import type { OwnerRef, PolicyDecision } from '../contracts/run';

export function sourceDryRun(sources: SourcesConfig, source: string): boolean {
  if (source === 'custom') return false;
  const named = (sources as Record<string, unknown>)[source] as { dryRun?: boolean } | undefined;
  if (named && typeof named === 'object' && 'dryRun' in named) return !!named.dryRun;
  return sources.custom.find((c) => c.name === source)?.dryRun ?? false;
}

/**
 * `runtime` holds the admin API's dry-run switches (lib/dry-run.ts): each overrides the config
 * file's value for its scope (global, this source). The intake canary is always ignored (audit
 * only): it names no real credential, and its run must end at once without touching anything.
 */
export function evaluatePolicy(
  policy: PolicyConfig,
  sources: SourcesConfig,
  d: Detection,
  owner: Pick<OwnerRef, 'system' | 'kind'> | null,
  runtime: DryRunOverrides = {},
): PolicyDecision {
  const dryRun = (runtime.global ?? policy.dryRun) || (runtime.source ?? sourceDryRun(sources, d.source));
  if (isCanary(d))
    return {
      action: 'ignore',
      rule: CANARY_POLICY_RULE,
      dryRun,
      approvers: policy.approvers,
      retryWindow: policy.retryWindow,
    };
  for (const [i, rule] of policy.rules.entries()) {
    const m = rule.match;
    if (m.source && !m.source.includes(d.source)) continue;
    if (m.credentialType && !m.credentialType.includes(d.credentialType)) continue;
    if (m.owningSystem && !m.owningSystem.includes(owner?.system ?? 'none')) continue;
    if (m.severity && !m.severity.includes(d.severity)) continue;
    if (m.verified !== undefined && (d.validity === 'verified') !== m.verified) continue;
    if (m.publiclyLeaked !== undefined && !!d.publiclyLeaked !== m.publiclyLeaked) continue;
    if (m.repository) {
      const repo = d.location.repository;
      if (!repo || !m.repository.some((g) => globToRegExp(g).test(repo))) continue;
    }
    return {
      action: rule.action,
      rule: rule.name ?? `rules[${i}]`,
      dryRun,
      approvers: policy.approvers,
      retryWindow: policy.retryWindow,
      ...(rule.action === 'require_approval'
        ? { approvalTimeout: rule.approvalTimeout, onTimeout: rule.onTimeout }
        : {}),
    };
  }
  return {
    action: policy.default,
    rule: 'default',
    dryRun,
    approvers: policy.approvers,
    retryWindow: policy.retryWindow,
    ...(policy.default === 'require_approval'
      ? { approvalTimeout: '30m', onTimeout: 'escalate' as const }
      : {}),
  };
}

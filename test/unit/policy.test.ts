import { describe, expect, it } from 'vitest';
import { parseInventory, InventoryError } from '../../lib/inventory';
import { evaluatePolicy } from '../../lib/policy';
import type { Detection } from '../../contracts/detection';

const detection = (over: Partial<Detection> = {}): Detection => ({
  id: 'generic:x',
  source: 'generic',
  credentialType: 'postgres_password',
  credentialRef: { role: 'app' },
  location: { repository: 'acme/api' },
  severity: 'high',
  detectedAt: '2026-11-23T00:00:00Z',
  hasEvidence: true,
  ...over,
});

const config = parseInventory({
  sources: { generic: { dryRun: false }, gitleaks: { secretsEnv: 'G', dryRun: true } },
  policy: {
    default: 'rotate',
    rules: [
      { name: 'public-critical', match: { publiclyLeaked: true }, action: 'rotate' },
      {
        name: 'unverified-ci',
        match: { source: ['gitleaks', 'trufflehog'], verified: false },
        action: 'notify_only',
      },
      {
        name: 'prod',
        match: { owningSystem: 'prod-db', severity: ['critical', 'high'] },
        action: 'require_approval',
        approvalTimeout: '15m',
      },
      { name: 'orphans', match: { owningSystem: 'none', credentialType: 'generic' }, action: 'notify_only' },
      { match: { repository: ['acme/sandbox-*'] }, action: 'ignore' },
    ],
  },
});
const prod = { system: 'prod-db', kind: 'postgres' };

describe('evaluatePolicy', () => {
  it('takes the first matching rule, in order', () => {
    expect(
      evaluatePolicy(config.policy, config.sources, detection({ publiclyLeaked: true }), prod),
    ).toMatchObject({ action: 'rotate', rule: 'public-critical' });
    expect(evaluatePolicy(config.policy, config.sources, detection(), prod)).toMatchObject({
      action: 'require_approval',
      rule: 'prod',
      approvalTimeout: '15m',
      onTimeout: 'escalate',
    });
    expect(evaluatePolicy(config.policy, config.sources, detection({ severity: 'low' }), prod)).toMatchObject(
      { action: 'rotate', rule: 'default' },
    );
  });

  it('matches validity, sources, repositories and the absence of an owner', () => {
    expect(
      evaluatePolicy(
        config.policy,
        config.sources,
        detection({ source: 'gitleaks', validity: 'unknown' }),
        null,
      ),
    ).toMatchObject({ action: 'notify_only', rule: 'unverified-ci', dryRun: true });
    expect(
      evaluatePolicy(
        config.policy,
        config.sources,
        detection({ source: 'trufflehog', validity: 'verified' }),
        null,
      ).rule,
    ).toBe('default');
    expect(
      evaluatePolicy(config.policy, config.sources, detection({ credentialType: 'generic' }), null).rule,
    ).toBe('orphans');
    expect(
      evaluatePolicy(
        config.policy,
        config.sources,
        detection({ location: { repository: 'acme/sandbox-7' } }),
        { system: 'x', kind: 'postgres' },
      ),
    ).toMatchObject({ action: 'ignore', rule: 'rules[4]' });
    expect(
      evaluatePolicy(config.policy, config.sources, detection({ location: {} }), {
        system: 'x',
        kind: 'postgres',
      }).rule,
    ).toBe('default');
  });

  it('turns on dry run globally or per source', () => {
    expect(evaluatePolicy(config.policy, config.sources, detection(), null).dryRun).toBe(false);
    const global = parseInventory({ policy: { dryRun: true } });
    expect(evaluatePolicy(global.policy, global.sources, detection(), null).dryRun).toBe(true);
  });

  it('validates the policy and sources sections, naming the field', () => {
    const bad = (doc: unknown, field: string) => {
      expect(() => parseInventory(doc)).toThrow(InventoryError);
      expect(() => parseInventory(doc)).toThrow(new RegExp(field.replace(/[[\]]/g, '\\$&')));
    };
    bad({ policy: { rules: [{ action: 'nuke' }] } }, 'policy.rules[0].action');
    bad({ policy: { rules: [{ action: 'rotate', match: { color: 'red' } }] } }, 'policy.rules[0].match');
    bad(
      { policy: { rules: [{ action: 'require_approval', approvalTimeout: 'soon' }] } },
      'policy.rules[0].approvalTimeout',
    );
    bad({ sources: { github: { secretsEnv: 'lower' } } }, 'sources.github.secretsEnv');
    bad(
      { sources: { gitleaks: { secretsEnv: 'X', rateLimit: { perMinute: 0 } } } },
      'sources.gitleaks.rateLimit.perMinute',
    );
    bad(
      {
        sources: {
          custom: [
            {
              name: 'Bad Name',
              verify: { scheme: 'standard-webhooks', secretsEnv: 'X' },
              mapping: { secret: 'a' },
            },
          ],
        },
      },
      'sources.custom[0].name',
    );
  });
});

/**
 * Pure parts of the read and admin API: API_TOKENS parsing (errors name the variable and entry),
 * token matching, the runtime dry-run overrides in the policy, and canary recognition.
 */
import { describe, expect, it } from 'vitest';
import { matchToken } from '../../api/auth';
import { canaryDetection, isCanary } from '../../lib/canary';
import { ConfigError, loadConfig } from '../../lib/config';
import type { Detection } from '../../contracts/detection';
import { parseInventory } from '../../lib/inventory';
import { evaluatePolicy } from '../../lib/policy';

const V = 'v'.repeat(24);
const A = 'a'.repeat(30);

describe('API_TOKENS', () => {
  it('parses roles and folds ADMIN_TOKENS in as admin tokens, labelled by variable and index', () => {
    const c = loadConfig({ API_TOKENS: `viewer:${V}, admin:${A}`, ADMIN_TOKENS: 'l'.repeat(24) });
    expect(c.apiTokens).toEqual([
      { role: 'viewer', token: V, label: 'API_TOKENS[0]' },
      { role: 'admin', token: A, label: 'API_TOKENS[1]' },
      { role: 'admin', token: 'l'.repeat(24), label: 'ADMIN_TOKENS[0]' },
    ]);
    expect(loadConfig({}).apiTokens).toEqual([]);
  });

  it.each([
    [`viewer:${V},root:${A}`, 'API_TOKENS[1]'],
    [`viewer:short`, 'API_TOKENS[0]'],
    [A, 'API_TOKENS[0]'],
  ])('names the bad entry: %s', (value, where) => {
    expect(() => loadConfig({ API_TOKENS: value })).toThrow(ConfigError);
    expect(() => loadConfig({ API_TOKENS: value })).toThrow(
      new RegExp(`${where.replace(/[[\]]/g, '\\$&')}:`),
    );
    // The error never echoes a token.
    expect(() => loadConfig({ API_TOKENS: value })).not.toThrow(/aaaaaaaaaaaaaaaaaaaaaaaa/);
  });

  it('matchToken finds the configured token and nothing else', () => {
    const tokens = loadConfig({ API_TOKENS: `viewer:${V},admin:${A}` }).apiTokens;
    expect(matchToken(A, tokens)?.role).toBe('admin');
    expect(matchToken(V, tokens)?.label).toBe('API_TOKENS[0]');
    expect(matchToken(`${A}x`, tokens)).toBeUndefined();
    expect(matchToken('', tokens)).toBeUndefined();
  });
});

const detection = (over: Partial<Detection> = {}): Detection => ({
  id: 'generic:x',
  source: 'generic',
  credentialType: 'postgres_password',
  credentialRef: { role: 'app' },
  location: {},
  severity: 'high',
  detectedAt: '2026-11-23T00:00:00Z',
  hasEvidence: true,
  ...over,
});

describe('runtime dry run in the policy', () => {
  const plain = parseInventory({ sources: { gitleaks: { secretsEnv: 'G', dryRun: true } } });
  const globalDry = parseInventory({ policy: { dryRun: true } });

  it('an override replaces the config value of its scope', () => {
    expect(evaluatePolicy(plain.policy, plain.sources, detection(), null, {}).dryRun).toBe(false);
    expect(evaluatePolicy(plain.policy, plain.sources, detection(), null, { global: true }).dryRun).toBe(
      true,
    );
    expect(evaluatePolicy(plain.policy, plain.sources, detection(), null, { source: true }).dryRun).toBe(
      true,
    );
    expect(
      evaluatePolicy(globalDry.policy, globalDry.sources, detection(), null, { global: false }).dryRun,
    ).toBe(false);
    expect(
      evaluatePolicy(plain.policy, plain.sources, detection({ source: 'gitleaks' }), null, { source: false })
        .dryRun,
    ).toBe(false);
    // A global switch turned off does not undo a source that is dry by config.
    expect(
      evaluatePolicy(plain.policy, plain.sources, detection({ source: 'gitleaks' }), null, { global: false })
        .dryRun,
    ).toBe(true);
  });
});

describe('canary', () => {
  const canary = (over: Partial<Detection> = {}): Detection => {
    const body = canaryDetection('canary-1') as { scanner: string; credentialRef: Record<string, string> };
    return detection({
      scanner: body.scanner,
      credentialType: 'generic',
      credentialRef: body.credentialRef,
      hasEvidence: false,
      ...over,
    });
  };

  it('is ignored by a built-in rule ahead of every configured rule', () => {
    const inv = parseInventory({
      policy: { default: 'rotate', rules: [{ name: 'all', match: {}, action: 'require_approval' }] },
    });
    expect(isCanary(canary())).toBe(true);
    expect(evaluatePolicy(inv.policy, inv.sources, canary(), null)).toMatchObject({
      action: 'ignore',
      rule: 'canary',
    });
  });

  it.each([
    ['a leaked value', { fingerprint: 'hmac-sha256:00', hasEvidence: true }],
    ['another credential type', { credentialType: 'postgres_password' as const }],
    ['more identifiers', { credentialRef: { canary: 'c', role: 'app' } }],
    ['another scanner', { scanner: 'gitleaks' }],
  ])('is not recognised with %s', (_what, over) => {
    expect(isCanary(canary(over))).toBe(false);
  });
});

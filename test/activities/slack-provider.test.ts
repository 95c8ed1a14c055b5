/**
 * The Slack token provider against the loopback Slack Web API fake: auth.revoke called with the
 * leaked token, idempotent on a dead token, auth.test to verify, 429 + Retry-After honoured,
 * typed errors that never carry the token.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { RATE_LIMITED } from '../../lib/systems/token-http';
import { parseInventory } from '../../lib/inventory';
import { reduceFinding } from '../../contracts/finding';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { SlackProvider, slackKind, slackSystemSchema } from '../../lib/systems/slack';
import { slackTokenPrefix } from '../../contracts/credentials';
import { ErrorType } from '../../contracts/errors';
import { parseSlackBody, startSlackFake, type SlackFake } from '../fakes/slack';
import { rand } from '../helpers/harness';
import { failureProbe } from '../helpers/failure';
import { ISO_TIME } from '../helpers/matchers';

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

const slackToken = (prefix = 'xoxb-') =>
  `${prefix}${Date.now() % 1e12}-${randomBytes(6).readUIntBE(0, 6)}-${randomBytes(18).toString('base64url').replace(/[-_]/g, 'x')}`;

async function setup(
  system: Record<string, unknown> = {},
): Promise<{ fake: SlackFake; provider: SlackProvider }> {
  const fake = await startSlackFake();
  // The fake's API root ends in a slash, as SLACK_API_URL may: the provider joins either.
  const provider = new SlackProvider(
    slackSystemSchema.parse({ name: 'slack', kind: 'slack', apiUrl: fake.apiUrl, ...system }),
  );
  open.push(fake, provider);
  return { fake, provider };
}

const rev = (leakedValue?: string, dryRun = false) => ({
  workflowId: `wf-${rand()}`,
  credentialRef: { tokenPrefix: 'xoxb-' },
  mode: 'emergency' as const,
  ...(leakedValue !== undefined ? { leakedValue } : {}),
  dryRun,
});

const failure = failureProbe({ with: ['nextRetryDelay'] });

describe('slack system kind', () => {
  it('defaults to slack.com/api and bot and user tokens, and refuses graceful, quarantine and a sink', () => {
    expect(slackSystemSchema.parse({ name: 's', kind: 'slack' })).toMatchObject({
      apiUrl: 'https://slack.com/api',
      tokenPrefixes: ['xoxb-', 'xoxp-', 'xoxe.xoxb-', 'xoxe.xoxp-'],
    });
    expect(() => parseInventory({ systems: [{ name: 's', kind: 'slack', mode: 'graceful' }] })).toThrow(
      /cannot keep two valid values/,
    );
    expect(() => parseInventory({ systems: [{ name: 's', kind: 'slack', quarantine: true }] })).toThrow(
      /no reversible quarantine/,
    );
    expect(() =>
      parseInventory({
        systems: [{ name: 's', kind: 'slack', sink: { kind: 'aws_secrets_manager', secretId: 'x' } }],
      }),
    ).toThrow(/sink/);
  });
});

describe('slack token detections', () => {
  it('carry the token type (its non-secret prefix) in credentialRef, never the token', () => {
    expect(slackTokenPrefix(slackToken('xoxe.xoxp-1-'))).toBe('xoxe.xoxp-');
    expect(slackTokenPrefix(slackToken('xoxb-'))).toBe('xoxb-');
    expect(slackTokenPrefix('xoxb-')).toBeUndefined();
    const token = slackToken('xoxp-');
    const s = reduceFinding(
      { source: 'generic', credentialType: 'slack_token', secret: token, severity: 'high' },
      createServerKeys(newServerKey()),
      new Date(),
    );
    expect(s.detection.credentialRef).toEqual({ tokenPrefix: 'xoxp-' });
    expect(JSON.stringify(s.detection)).not.toContain(token);
  });
});

describe('SlackProvider', () => {
  it('revoke calls auth.revoke with the leaked token; a second revoke finds it dead and succeeds; verifyDead proves it refused', async () => {
    const { fake, provider } = await setup();
    const token = slackToken();
    fake.live.add(token);

    expect(await failure(provider.verifyDead(rev(), token), token)).toEqual({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });

    const first = await provider.revoke(rev(token));
    expect(first.revokedAt).toMatch(ISO_TIME);
    expect(first.note).toMatch(/revoked by auth.revoke/);
    expect(fake.live.has(token)).toBe(false);
    expect(fake.revoked.has(token)).toBe(true);
    // The bot token of the same fake is untouched: only the calling token dies.
    expect(fake.live.has(fake.token)).toBe(true);

    const second = await provider.revoke(rev(token));
    expect(second.revokedAt).toMatch(ISO_TIME);
    expect(second.note).toMatch(/already dead \(auth.revoke: token_revoked\)/);
    expect(fake.revoked.has(token)).toBe(true);

    const dead = await provider.verifyDead(rev(), token);
    expect(dead).toMatchObject({ method: 'login_rejected' });
    expect(dead.verifiedDeadAt).toMatch(ISO_TIME);

    const revokes = fake.requests.filter((r) => r.path === '/api/auth.revoke');
    expect(revokes).toHaveLength(2);
    for (const r of revokes) {
      expect(r.method).toBe('POST');
      expect(r.headers.authorization).toBe(`Bearer ${token}`);
      expect(String(r.headers['content-type'])).toMatch(/^application\/x-www-form-urlencoded/);
      expect(parseSlackBody(r).test).toBeUndefined();
    }
    expect(fake.requests.filter((r) => r.path === '/api/auth.test')).toHaveLength(2);
  });

  it('an unknown (never valid) token is already dead: invalid_auth is success, and verify says login_rejected', async () => {
    const { provider } = await setup();
    const token = slackToken('xoxp-');
    const r = await provider.revoke({ ...rev(token), credentialRef: { tokenPrefix: 'xoxp-' } });
    expect(r.note).toMatch(/invalid_auth/);
    expect((await provider.verifyDead(rev(), token)).method).toBe('login_rejected');
  });

  it('Slack 429 with Retry-After is a retryable RateLimited failure with exactly that delay', async () => {
    const { fake, provider } = await setup();
    const token = slackToken();
    fake.live.add(token);
    fake.script.push({
      status: 429,
      headers: { 'retry-after': '7' },
      body: { ok: false, error: 'ratelimited' },
    });
    expect(await failure(provider.revoke(rev(token)), token)).toEqual({
      type: RATE_LIMITED,
      nonRetryable: false,
      nextRetryDelay: 7_000,
    });
    expect(fake.live.has(token)).toBe(true);
    fake.script.push({
      status: 429,
      headers: { 'retry-after': '3' },
      body: { ok: false, error: 'ratelimited' },
    });
    expect(await failure(provider.verifyDead(rev(), token), token)).toEqual({
      type: RATE_LIMITED,
      nonRetryable: false,
      nextRetryDelay: 3_000,
    });
    // The retry goes through.
    await provider.revoke(rev(token));
    expect(fake.revoked.has(token)).toBe(true);
  });

  it('without the leaked value, or with a token type auth.revoke does not take, fails permanently as UnknownCredential', async () => {
    const { fake, provider } = await setup();
    expect(await failure(provider.revoke(rev(undefined)))).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
    const refresh = slackToken('xoxe-');
    expect(await failure(provider.revoke(rev(refresh)), refresh)).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
    expect(fake.requests).toHaveLength(0);
    const token = slackToken();
    fake.script.push({ status: 200, body: { ok: false, error: 'not_bearer_token' } });
    expect(await failure(provider.revoke(rev(token)), token)).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
  });

  it("classifies Slack errors: missing_scope PermissionDenied, internal_error and 503 transient, a body that is not Slack's transient", async () => {
    const { fake, provider } = await setup();
    const token = slackToken();
    fake.live.add(token);
    fake.script.push({ status: 200, body: { ok: false, error: 'missing_scope' } });
    expect(await failure(provider.revoke(rev(token)), token)).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    fake.script.push({ status: 200, body: { ok: false, error: 'internal_error' } });
    expect(await failure(provider.revoke(rev(token)), token)).toEqual({ type: 'plain' });
    fake.script.push({ status: 503, body: 'upstream unavailable' });
    expect(await failure(provider.revoke(rev(token)), token)).toEqual({ type: 'plain' });
    fake.script.push({ status: 200, body: '<html>proxy</html>' });
    expect(await failure(provider.verifyDead(rev(), token), token)).toEqual({ type: 'plain' });
    expect(fake.live.has(token)).toBe(true);
  });

  it('a dry run sends nothing; there are no sessions beyond the token and no replacement', async () => {
    const { fake, provider } = await setup();
    expect((await provider.revoke(rev(undefined, true))).revokedAt).toBeNull();
    expect((await provider.verifyDead(rev(undefined, true), undefined)).method).toBe('dry_run');
    expect(await provider.expireSessions(rev())).toMatchObject({ terminated: 0 });
    expect(fake.requests).toHaveLength(0);
    expect(slackKind.supports).toMatchObject({ replacement: false });
    expect(await failure(provider.issueReplacement())).toEqual({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
  });
});

/**
 * The GitHub token provider against a loopback fake of GitHub's credential revocation API:
 * idempotent revocation, verification by GET /user, batching of concurrent revocations, the
 * hourly rate limit (ours and GitHub's), and typed errors that never carry the token.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RATE_LIMITED } from '../../lib/systems/token-http';
import { reduceFinding } from '../../contracts/finding';
import { createServerKeys, newServerKey } from '../../lib/keys';
import { GitHubProvider, githubKind, githubSystemSchema } from '../../lib/systems/github';
import { githubTokenPrefix } from '../../contracts/credentials';
import { parseInventory } from '../../lib/inventory';
import { ErrorType } from '../../contracts/errors';
import {
  fakeGitHubToken,
  startGitHubRevocationFake,
  type GitHubRevocationFake,
  type GitHubRevocationFakeOptions,
} from '../fakes/github-revocation';
import { rand } from '../helpers/harness';
import { failureProbe } from '../helpers/failure';
import { ISO_TIME } from '../helpers/matchers';

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});

async function setup(
  fakeOpts: GitHubRevocationFakeOptions = {},
  system: Record<string, unknown> = {},
  adminToken?: string,
): Promise<{ fake: GitHubRevocationFake; provider: GitHubProvider }> {
  const fake = await startGitHubRevocationFake(fakeOpts);
  const provider = new GitHubProvider(
    githubSystemSchema.parse({ name: 'github', kind: 'github', apiUrl: fake.apiUrl, ...system }),
    adminToken,
  );
  open.push(fake, provider);
  return { fake, provider };
}

const rev = (leakedValue?: string, dryRun = false) => ({
  workflowId: `wf-${rand()}`,
  credentialRef: { tokenPrefix: 'ghp_' },
  mode: 'emergency' as const,
  ...(leakedValue !== undefined ? { leakedValue } : {}),
  dryRun,
});

const failure = failureProbe({ with: ['nextRetryDelay'] });

describe('github system kind', () => {
  it("defaults to api.github.com, GitHub's 1000-token batches and 60 requests an hour, and refuses graceful, quarantine and a sink", () => {
    const s = githubSystemSchema.parse({ name: 'gh', kind: 'github' });
    expect(s).toMatchObject({
      apiUrl: 'https://api.github.com',
      batch: { maxTokens: 1000 },
      rateLimit: { perHour: 60 },
      sink: { kind: 'none' },
    });
    expect(() =>
      githubSystemSchema.parse({ name: 'gh', kind: 'github', batch: { maxTokens: 1001 } }),
    ).toThrow();
    expect(() => parseInventory({ systems: [{ name: 'gh', kind: 'github', mode: 'graceful' }] })).toThrow(
      /cannot keep two valid values/,
    );
    expect(() => parseInventory({ systems: [{ name: 'gh', kind: 'github', quarantine: true }] })).toThrow(
      /no reversible quarantine/,
    );
    expect(() =>
      parseInventory({
        systems: [{ name: 'gh', kind: 'github', sink: { kind: 'aws_secrets_manager', secretId: 'x' } }],
      }),
    ).toThrow(/sink/);
  });
});

describe('github token detections', () => {
  it('carry the token type (its non-secret prefix) in credentialRef, never the token', () => {
    expect(githubTokenPrefix(fakeGitHubToken('github_pat_'))).toBe('github_pat_');
    expect(githubTokenPrefix(fakeGitHubToken('gho_'))).toBe('gho_');
    expect(githubTokenPrefix('ghp_short')).toBeUndefined();
    const token = fakeGitHubToken();
    const s = reduceFinding(
      { source: 'generic', credentialType: 'github_token', secret: `${token}\n`, severity: 'high' },
      createServerKeys(newServerKey()),
      new Date(),
    );
    expect(s.detection.credentialRef).toEqual({ tokenPrefix: 'ghp_' });
    expect(s.detection.hasEvidence).toBe(true);
    expect(JSON.stringify(s.detection)).not.toContain(token);
  });
});

describe('GitHubProvider', () => {
  it('revoke kills the token, revoking it again succeeds and changes nothing, and verifyDead proves it refused', async () => {
    const { fake, provider } = await setup();
    const token = fakeGitHubToken();
    const bystander = fakeGitHubToken();
    fake.live.add(token);
    fake.live.add(bystander);

    expect(await failure(provider.verifyDead(rev(), token), token)).toEqual({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });

    const first = await provider.revoke(rev(token));
    expect(first.revokedAt).toMatch(ISO_TIME);
    expect(first.note).not.toContain(token);
    expect(fake.live.has(token)).toBe(false);
    expect(fake.revoked.has(token)).toBe(true);
    expect(fake.live.has(bystander)).toBe(true);

    const second = await provider.revoke(rev(token));
    expect(second.revokedAt).toMatch(ISO_TIME);
    expect(fake.revoked.has(token)).toBe(true);
    expect(fake.revokeCalls()).toEqual([[token], [token]]);

    const dead = await provider.verifyDead(rev(), token);
    expect(dead.method).toBe('login_rejected');
    expect(dead.verifiedDeadAt).toMatch(ISO_TIME);
    expect((await provider.verifyDead(rev(), undefined)).method).toBe('not_verifiable_no_leaked_value');

    // The documented wire contract: unauthenticated JSON POST, the versioned media type, a User-Agent.
    const post = fake.requests.find((r) => r.method === 'POST')!;
    expect(post.headers.authorization).toBeUndefined();
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.headers.accept).toBe('application/vnd.github+json');
    expect(post.headers['x-github-api-version']).toBe('2022-11-28');
    expect(post.headers['user-agent']).toBe('secret-kill-switch');
    const get = fake.requests.find((r) => r.method === 'GET')!;
    expect(get.path).toBe('/user');
    expect(get.headers.authorization).toBe(`Bearer ${token}`);
  });

  it('a token GitHub revokes asynchronously is reported still valid (retryable) until it is dead', async () => {
    const { fake, provider } = await setup({ revokeDelayMs: 400 });
    const token = fakeGitHubToken('github_pat_');
    fake.live.add(token);
    await provider.revoke({ ...rev(token), credentialRef: { tokenPrefix: 'github_pat_' } });
    expect(await failure(provider.verifyDead(rev(), token), token)).toEqual({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });
    await new Promise((r) => setTimeout(r, 600));
    expect((await provider.verifyDead(rev(), token)).method).toBe('login_rejected');
  });

  it('batches concurrent revocations: 25 tokens with maxTokens 10 take ceil(25/10) = 3 requests, each caller resolved', async () => {
    const { fake, provider } = await setup({}, { batch: { maxTokens: 10, windowMs: 100 } });
    const tokens = Array.from({ length: 25 }, () => fakeGitHubToken());
    tokens.forEach((t) => fake.live.add(t));
    const results = await Promise.all(tokens.map((t) => provider.revoke(rev(t))));
    expect(results.every((r) => r.revokedAt)).toBe(true);
    const calls = fake.revokeCalls();
    expect(calls).toHaveLength(3);
    expect(calls.map((c) => c.length)).toEqual([10, 10, 5]);
    expect(calls.flat().sort()).toEqual([...tokens].sort());
    expect(fake.live.size).toBe(0);
  });

  it('sends a token revoked by two concurrent runs once, and resolves both', async () => {
    const { fake, provider } = await setup({}, { batch: { maxTokens: 10, windowMs: 50 } });
    const token = fakeGitHubToken();
    fake.live.add(token);
    await Promise.all([provider.revoke(rev(token)), provider.revoke(rev(token))]);
    expect(fake.revokeCalls()).toEqual([[token]]);
  });

  it('keeps its own hourly budget: the request over rateLimit.perHour fails as RateLimited with a delay, and never reaches GitHub', async () => {
    const { fake, provider } = await setup(
      {},
      { rateLimit: { perHour: 2 }, batch: { maxTokens: 10, windowMs: 0 } },
    );
    const [a, b, c] = [fakeGitHubToken(), fakeGitHubToken(), fakeGitHubToken()];
    await provider.revoke(rev(a));
    await provider.revoke(rev(b));
    const f = await failure(provider.revoke(rev(c)), c);
    expect(f.type).toBe(RATE_LIMITED);
    expect(f.nonRetryable).toBeFalsy();
    expect(Number(f.nextRetryDelay)).toBeGreaterThan(3_500_000);
    expect(Number(f.nextRetryDelay)).toBeLessThanOrEqual(3_600_000);
    expect(fake.revokeCalls()).toHaveLength(2);
  });

  it("honours GitHub's rate limit: 403 with x-ratelimit-remaining 0 waits until x-ratelimit-reset, and stops calling until then", async () => {
    const { fake, provider } = await setup({ perHour: 1 }, { batch: { maxTokens: 10, windowMs: 0 } });
    const [a, b, c] = [fakeGitHubToken(), fakeGitHubToken(), fakeGitHubToken()];
    await provider.revoke(rev(a));
    const f = await failure(provider.revoke(rev(b)), b);
    expect(f.type).toBe(RATE_LIMITED);
    expect(Number(f.nextRetryDelay)).toBeGreaterThan(3_500_000);
    expect(fake.revokeCalls()).toHaveLength(2);
    // Blocked until GitHub's reset: the next revocation is not even sent.
    expect((await failure(provider.revoke(rev(c)), c)).type).toBe(RATE_LIMITED);
    expect(fake.revokeCalls()).toHaveLength(2);
  });

  it("honours a 429 secondary rate limit's Retry-After", async () => {
    const { fake, provider } = await setup();
    const token = fakeGitHubToken();
    fake.script.push({
      status: 429,
      headers: { 'retry-after': '42' },
      body: { message: 'You have exceeded a secondary rate limit.' },
    });
    expect(await failure(provider.revoke(rev(token)), token)).toEqual({
      type: RATE_LIMITED,
      nonRetryable: false,
      nextRetryDelay: 42_000,
    });
  });

  it("GitHub's per-request limit: a batch over it gets 422, classified UnknownCredential for every caller", async () => {
    const { fake, provider } = await setup({ maxPerRequest: 2 }, { batch: { maxTokens: 3, windowMs: 50 } });
    const tokens = [fakeGitHubToken(), fakeGitHubToken(), fakeGitHubToken()];
    const fs = await Promise.all(tokens.map((t) => failure(provider.revoke(rev(t)), t)));
    expect(fs).toEqual(Array(3).fill({ type: ErrorType.UNKNOWN_CREDENTIAL, nonRetryable: true }));
    expect(fake.revokeCalls()).toHaveLength(1);
    expect(fake.requests.at(-1)).toBeTruthy();
  });

  it('without the leaked value, or with a token type it does not revoke, fails permanently as UnknownCredential', async () => {
    const { fake, provider } = await setup();
    expect(await failure(provider.revoke(rev(undefined)))).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
    const installation = fakeGitHubToken('ghs_');
    expect(await failure(provider.revoke(rev(installation)), installation)).toEqual({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
    expect(
      await failure(provider.revoke(rev('not-a-github-token-at-all')), 'not-a-github-token-at-all'),
    ).toEqual({ type: ErrorType.UNKNOWN_CREDENTIAL, nonRetryable: true });
    expect(fake.requests).toHaveLength(0);
  });

  it('a dry run sends nothing', async () => {
    const { fake, provider } = await setup();
    const r = await provider.revoke(rev(undefined, true));
    expect(r.revokedAt).toBeNull();
    expect((await provider.verifyDead(rev(undefined, true), undefined)).method).toBe('dry_run');
    expect((await provider.expireSessions({ ...rev(undefined, true) })).wouldTerminate).toBe(0);
    expect(fake.requests).toHaveLength(0);
  });

  it('has no sessions to expire apart from the token, and no replacement to issue', async () => {
    const { provider } = await setup();
    const r = await provider.expireSessions(rev());
    expect(r).toMatchObject({ terminated: 0 });
    expect(r.sessionsExpiredAt).toMatch(ISO_TIME);
    expect(githubKind.supports).toMatchObject({ replacement: false });
    expect(await failure(provider.issueReplacement())).toEqual({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
  });

  it('classifies: 5xx and an unreachable API transient; an admin token on github.com PermissionDenied; GHES without its token Misconfigured', async () => {
    const { fake, provider } = await setup();
    const token = fakeGitHubToken();
    fake.script.push({ status: 502, body: { message: 'Server Error' } });
    expect(await failure(provider.revoke(rev(token)), token)).toEqual({ type: 'plain' });

    const unreachable = new GitHubProvider(
      githubSystemSchema.parse({ name: 'gh', kind: 'github', apiUrl: 'http://127.0.0.1:1', timeoutMs: 2000 }),
    );
    open.push(unreachable);
    expect(await failure(unreachable.revoke(rev(token)), token)).toEqual({ type: 'plain' });
    expect(await failure(unreachable.verifyDead(rev(), token), token)).toEqual({ type: 'plain' });

    const withToken = new GitHubProvider(
      githubSystemSchema.parse({ name: 'gh', kind: 'github', apiUrl: fake.apiUrl }),
      'ghp_adminadminadminadminadminadminadmin',
    );
    open.push(withToken);
    expect(await failure(withToken.revoke(rev(token)), token)).toEqual({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });

    const ghesAdmin = `ghp_${rand()}${rand()}${rand()}${rand()}`;
    const ghes = await setup({ adminToken: ghesAdmin });
    const victim = fakeGitHubToken();
    ghes.fake.live.add(victim);
    expect(await failure(ghes.provider.revoke(rev(victim)), victim)).toEqual({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });
    const ghesOk = new GitHubProvider(
      githubSystemSchema.parse({ name: 'ghes', kind: 'github', apiUrl: ghes.fake.apiUrl }),
      ghesAdmin,
    );
    open.push(ghesOk);
    await ghesOk.revoke(rev(victim));
    expect(ghes.fake.revoked.has(victim)).toBe(true);
  });
});

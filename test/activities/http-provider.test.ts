/**
 * The http recipe provider against a loopback "homegrown admin API": recipes are validated at
 * startup naming the bad path, a lookup-then-delete revoke kills the key and re-runs as a no-op,
 * verify proves the leaked key is refused, failures are classified by type, no error message ever
 * carries a rendered secret, and an issued replacement reaches a real (moto) Secrets Manager only.
 */
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { HttpProvider, readPath, retryAfterSeconds } from '../../lib/systems/http';
import { createProviderRegistry } from '../../activities/providers';
import { SecretsManagerSink } from '../../activities/sinks/aws-secrets-manager';
import { noSink } from '../../activities/sinks';
import { parseInventory, resolveInventoryEnv, matchOwner } from '../../lib/inventory';
import { kindOf, type HttpSystem } from '../../lib/systems';
import { ErrorType } from '../../contracts/errors';
import { startHomegrownFake, type HomegrownFake } from '../fakes/homegrown-admin';
import { rand } from '../helpers/harness';
import { failureProbe } from '../helpers/failure';
import { ISO_TIME } from '../helpers/matchers';

let api: HomegrownFake;
let env: Record<string, string>;

const auth = { Authorization: 'Bearer {{env.HG_ADMIN_TOKEN}}' };
/** The recipe an operator would write for this API. */
const recipes = () => ({
  revoke: [
    {
      name: 'lookup',
      method: 'GET',
      url: '/admin/keys/by-prefix/{{ref.keyPrefix}}',
      headers: auth,
      expectStatus: [200],
      alreadyDoneStatus: [404],
      extract: { keyId: '/key/id' },
    },
    {
      name: 'delete',
      method: 'DELETE',
      url: '/admin/keys/{{steps.keyId}}',
      headers: auth,
      expectStatus: [204],
      alreadyDoneStatus: [404],
    },
  ],
  expire: [
    {
      name: 'lookup',
      method: 'GET',
      url: '/admin/keys/by-prefix/{{ref.keyPrefix}}?include=revoked',
      headers: auth,
      expectStatus: [200],
      alreadyDoneStatus: [404],
      extract: { keyId: 'key.id' },
    },
    {
      method: 'POST',
      url: '/admin/keys/{{steps.keyId}}/sessions/revoke',
      headers: auth,
      expectStatus: [200],
      extract: { terminated: 'terminated' },
    },
  ],
  verify: [
    {
      method: 'GET',
      url: '/api/whoami',
      headers: { Authorization: 'Bearer {{leaked}}' },
      expectStatus: [200],
      deadStatus: [401],
    },
  ],
});
const base = () => ({
  name: 'homegrown',
  kind: 'http',
  baseUrl: api.url,
  secretsEnv: ['HG_ADMIN_TOKEN'],
  match: { keyPrefix: '*' },
  ...recipes(),
});

function system(over: Record<string, unknown> = {}): HttpSystem {
  return parseInventory({ systems: [{ ...base(), ...over }] }).systems[0] as HttpSystem;
}
const provider = (over: Record<string, unknown> = {}, e: Record<string, string> = env) =>
  new HttpProvider(system(over), e);
const req = (keyPrefix: string) => ({ workflowId: `wf-${rand()}`, credentialRef: { keyPrefix } });
const rev = (keyPrefix: string, leakedValue?: string) => ({
  ...req(keyPrefix),
  mode: 'emergency' as const,
  ...(leakedValue ? { leakedValue } : {}),
});

const failure = failureProbe({ with: ['message', 'nextRetryDelay'] });

beforeAll(async () => {
  api = await startHomegrownFake();
  env = { HG_ADMIN_TOKEN: api.adminToken };
});
afterAll(async () => {
  await api?.close();
});

describe('http recipes are validated at startup', () => {
  it.each([
    [
      { revoke: [{ method: 'GET', url: '/x', headers: { Authorization: 'Bearer {{env.OTHER_TOKEN}}' } }] },
      'systems[0].revoke[0].headers.Authorization: template variable {{env.OTHER_TOKEN}}: OTHER_TOKEN is not listed in secretsEnv',
    ],
    [
      { revoke: [{ method: 'DELETE', url: '/keys/{{steps.keyId}}' }] },
      'systems[0].revoke[0].url: template variable {{steps.keyId}}: no earlier step of this recipe extracts "keyId"',
    ],
    [
      {
        revoke: [
          { method: 'POST', url: '/keys', body: { filter: { ids: ['{{ref.keyPrefix}}', '{{secret}}'] } } },
        ],
      },
      'systems[0].revoke[0].body.filter.ids[1]: template variable {{secret}}: unknown template variable',
    ],
    [
      {
        issue: [{ method: 'POST', url: '/keys', body: { old: '{{leaked}}' }, extract: { secret: 'secret' } }],
      },
      'systems[0].issue[0].body.old: template variable {{leaked}}: the leaked value is only available to revoke and verify',
    ],
    [
      { issue: [{ method: 'POST', url: '/keys' }] },
      'systems[0].issue: issue must extract at least one value',
    ],
    [
      { issue: [{ method: 'POST', url: '/keys', alreadyDoneStatus: [409], extract: { s: 's' } }] },
      'systems[0].issue[0].alreadyDoneStatus',
    ],
    [
      { verify: [{ method: 'GET', url: '/api/whoami' }] },
      'systems[0].verify[0].deadStatus: the last verify step needs deadStatus',
    ],
    [
      { revoke: [{ method: 'GET', url: '/x', deadStatus: [401] }] },
      'systems[0].revoke[0].deadStatus: only the last step of verify',
    ],
    [
      { revoke: [{ method: 'GET', url: 'https://elsewhere.example/x' }] },
      'systems[0].revoke[0].url: a path beginning with /',
    ],
    [{ revoke: [{ method: 'GET', url: '/x/{{ref.keyPrefix' }] }, 'systems[0].revoke[0].url: unclosed {{'],
    [{ revoke: [{ method: 'GET', url: '/x', extract: { id: '' } }] }, 'systems[0].revoke[0].extract.id'],
    [
      { mode: 'graceful', sink: { kind: 'aws_secrets_manager', secretId: 's' } },
      'systems[0].mode: graceful mode needs an issue recipe',
    ],
    [{ quarantine: true }, 'systems[0].quarantine: http systems have no reversible quarantine'],
    [{ match: {} }, 'systems[0].match'],
    [{ revoke: [] }, 'systems[0].revoke'],
  ])('refuses a bad recipe, naming the path (%#)', (over, message) => {
    expect(() => parseInventory({ systems: [{ ...base(), ...over }] })).toThrow(message);
  });

  it('accepts graceful mode when an issue recipe exists, and defaults what it can', () => {
    const s = system({
      mode: 'graceful',
      sink: { kind: 'aws_secrets_manager', secretId: 's' },
      issue: [
        {
          method: 'POST',
          url: '/admin/keys',
          body: { owner: '{{ref.keyPrefix}}' },
          extract: { apiKey: 'secret' },
        },
      ],
    });
    expect(s).toMatchObject({ mode: 'graceful', credentialTypes: ['generic'], timeoutMs: 10_000 });
    expect(s.revoke[1]).toMatchObject({ headers: auth, expectStatus: [204], alreadyDoneWhenMissing: false });
    expect(kindOf(s).supports).toEqual({ replacement: true, graceful: true, quarantine: false });
    expect(kindOf(system()).supports).toEqual({ replacement: false, graceful: false, quarantine: false });
  });

  it('owns a detection only when every match field is present and matches its glob', () => {
    const inv = parseInventory({
      systems: [
        { ...base(), credentialTypes: ['generic', 'slack_token'], match: { keyPrefix: 'ab*', env: 'prod' } },
      ],
    });
    expect(
      matchOwner(inv, { credentialType: 'generic', credentialRef: { keyPrefix: 'abc', env: 'prod' } }).kind,
    ).toBe('owned');
    expect(
      matchOwner(inv, { credentialType: 'slack_token', credentialRef: { keyPrefix: 'ab', env: 'prod' } })
        .kind,
    ).toBe('owned');
    expect(matchOwner(inv, { credentialType: 'generic', credentialRef: { keyPrefix: 'abc' } }).kind).toBe(
      'unowned',
    );
    expect(
      matchOwner(inv, { credentialType: 'generic', credentialRef: { keyPrefix: 'xbc', env: 'prod' } }).kind,
    ).toBe('unowned');
    expect(
      matchOwner(inv, { credentialType: 'github_token', credentialRef: { keyPrefix: 'abc', env: 'prod' } })
        .kind,
    ).toBe('unowned');
  });

  it('requires every secretsEnv variable at startup, naming the path', () => {
    const inv = parseInventory({ systems: [base()] });
    expect(() => resolveInventoryEnv(inv, {})).toThrow(
      'systems[0].secretsEnv[0]: environment variable HG_ADMIN_TOKEN is not set',
    );
    // The registry builds the provider from the checked env.
    const reg = createProviderRegistry(inv, resolveInventoryEnv(inv, env));
    expect(reg.get('homegrown')?.provider.kind).toBe('http');
  });

  it('reads JSON pointers and dotted paths; parses Retry-After in both forms', () => {
    const doc = { a: [{ 'b/c': 1, d: 'x' }], 'e~f': true };
    expect(readPath(doc, '/a/0/b~1c')).toBe(1);
    expect(readPath(doc, '/e~0f')).toBe(true);
    expect(readPath(doc, 'a.0.d')).toBe('x');
    expect(readPath(doc, 'a.1.d')).toBeUndefined();
    expect(readPath(doc, 'a.x')).toBeUndefined();
    expect(retryAfterSeconds('7')).toBe(7);
    expect(retryAfterSeconds(new Date(Date.now() + 30_000).toUTCString())).toBeGreaterThanOrEqual(28);
    expect(retryAfterSeconds('soon')).toBeUndefined();
  });
});

describe('HttpProvider against the homegrown admin API', () => {
  it('revokes by lookup-then-delete; the re-run is an idempotent success via alreadyDoneStatus', async () => {
    const key = api.createKey();
    const bystander = api.createKey();
    const p = provider();
    const before = api.requests.length;

    const first = await p.revoke(rev(key.prefix, key.value));
    expect(first.revokedAt).toMatch(ISO_TIME);
    expect(first.note).toBe('revoked through 2 HTTP step(s)');
    expect(api.keys.get(key.id)!.revoked).toBe(true);
    expect(api.keys.get(bystander.id)!.revoked).toBe(false);
    const calls = api.requests.slice(before);
    expect(calls.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /admin/keys/by-prefix/${key.prefix}`,
      `DELETE /admin/keys/${key.id}`,
    ]);
    expect(calls.every((r) => r.headers.authorization === `Bearer ${api.adminToken}`)).toBe(true);

    const second = await p.revoke(rev(key.prefix, key.value));
    expect(second.note).toMatch(/^already revoked \(step lookup/);
    expect(api.keys.get(key.id)!.revoked).toBe(true);
    expect(api.requests.slice(before + 2).map((r) => r.method)).toEqual(['GET']);
  });

  it('URL-encodes interpolated values, so a credentialRef cannot change the path', async () => {
    const p = provider();
    const before = api.requests.length;
    await p.revoke(rev('../../keys/x?y=1#z'));
    expect(api.requests.slice(before).map((r) => r.path)).toEqual([
      '/admin/keys/by-prefix/..%2F..%2Fkeys%2Fx%3Fy%3D1%23z',
    ]);
  });

  it('verifyDead: a live key is CredentialStillValid (retryable), a revoked one login_rejected', async () => {
    const key = api.createKey();
    const p = provider();
    expect(await failure(p.verifyDead(req(key.prefix), key.value))).toMatchObject({
      type: ErrorType.CREDENTIAL_STILL_VALID,
      nonRetryable: false,
    });
    await p.revoke(rev(key.prefix));
    const dead = await p.verifyDead(req(key.prefix), key.value);
    expect(dead).toMatchObject({ method: 'login_rejected' });
    expect(dead.verifiedDeadAt).toMatch(ISO_TIME);
    expect(await p.verifyDead(req(key.prefix), undefined)).toEqual({
      verifiedDeadAt: null,
      method: 'not_verifiable_no_leaked_value',
    });
    expect(await p.verifyDead({ ...req(key.prefix), dryRun: true }, key.value)).toEqual({
      verifiedDeadAt: null,
      method: 'dry_run',
    });
    // A verify recipe that asks the owner (no leaked value) reports revoked_by_owner.
    const byOwner = provider({
      verify: [
        {
          method: 'GET',
          url: '/admin/keys/by-prefix/{{ref.keyPrefix}}',
          headers: auth,
          expectStatus: [200],
          deadStatus: [404],
        },
      ],
    });
    expect((await byOwner.verifyDead(req(key.prefix), undefined)).method).toBe('revoked_by_owner');
    const live = api.createKey();
    expect((await failure(byOwner.verifyDead(req(live.prefix), undefined))).type).toBe(
      ErrorType.CREDENTIAL_STILL_VALID,
    );
  });

  it('expireSessions runs the expire recipe and reads the terminated count; a dry run only looks', async () => {
    const key = api.createKey(3);
    const p = provider();
    const before = api.requests.length;
    const dry = await p.expireSessions({ ...req(key.prefix), dryRun: true });
    expect(dry).toEqual({ sessionsExpiredAt: null, terminated: 0, wouldTerminate: 0 });
    expect(api.requests.slice(before).map((r) => r.method)).toEqual(['GET']);
    expect(api.keys.get(key.id)!.sessions).toBe(3);
    // Emergency mode revokes first: the expire lookup must still find the revoked key.
    await p.revoke(rev(key.prefix));
    const r = await p.expireSessions(req(key.prefix));
    expect(r.terminated).toBe(3);
    expect(r.sessionsExpiredAt).toMatch(ISO_TIME);
    expect((await p.expireSessions(req(key.prefix))).terminated).toBe(0);
  });

  it('a dry-run revoke performs the lookups and stops before the delete', async () => {
    const key = api.createKey();
    const before = api.requests.length;
    const r = await provider().revoke({ ...rev(key.prefix), dryRun: true });
    expect(r.revokedAt).toBeNull();
    expect(r.note).toContain(
      'would continue with homegrown revoke step delete (DELETE /admin/keys/{{steps.keyId}})',
    );
    expect(api.requests.slice(before).map((x) => x.method)).toEqual(['GET']);
    expect(api.keys.get(key.id)!.revoked).toBe(false);
  });

  it('classifies failures by type: 401/403 PermissionDenied, 404 UnknownCredential, other 4xx Misconfigured, 429/5xx/network transient', async () => {
    const key = api.createKey();
    expect(await failure(provider({}, { HG_ADMIN_TOKEN: 'wrong' }).revoke(rev(key.prefix)))).toMatchObject({
      type: ErrorType.PERMISSION_DENIED,
      nonRetryable: true,
    });
    expect(
      await failure(provider({}, { HG_ADMIN_TOKEN: api.readOnlyToken }).revoke(rev(key.prefix))),
    ).toMatchObject({ type: ErrorType.PERMISSION_DENIED, nonRetryable: true });
    expect(api.keys.get(key.id)!.revoked).toBe(false);

    const strict = provider({
      revoke: [{ ...recipes().revoke[0], alreadyDoneStatus: [] }, recipes().revoke[1]],
    });
    expect(await failure(strict.revoke(rev(`ghost${rand()}`)))).toMatchObject({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
    expect(
      await failure(provider().revoke({ ...rev(key.prefix), credentialRef: { other: 'x' } })),
    ).toMatchObject({ type: ErrorType.UNKNOWN_CREDENTIAL, nonRetryable: true });

    const wrongVerb = provider({ revoke: [{ method: 'PUT', url: '/admin/keys', headers: auth }] });
    expect(await failure(wrongVerb.revoke(rev(key.prefix)))).toMatchObject({
      type: ErrorType.MISCONFIGURED,
      nonRetryable: true,
    });

    api.script.push({ status: 429, headers: { 'retry-after': '7' }, body: { error: 'slow down' } });
    expect(await failure(provider().revoke(rev(key.prefix)))).toMatchObject({
      type: 'UpstreamRateLimited',
      nextRetryDelay: '7s',
    });
    api.script.push({ status: 503, body: 'maintenance' });
    expect(await failure(provider().revoke(rev(key.prefix)))).toMatchObject({ type: 'plain' });
    api.script.push({ status: 200, body: { key: { id: key.id } } }, { status: 502 });
    expect(await failure(provider().revoke(rev(key.prefix)))).toMatchObject({ type: 'plain' });
    expect(api.keys.get(key.id)!.revoked).toBe(false);

    const down = provider({ baseUrl: 'http://127.0.0.1:1' });
    expect(await failure(down.revoke(rev(key.prefix)))).toMatchObject({
      type: 'plain',
      message: expect.stringContaining('network error'),
    });
    api.script.push({ delayMs: 1500 });
    expect(await failure(provider({ timeoutMs: 200 }).revoke(rev(key.prefix)))).toMatchObject({
      type: 'plain',
      message: expect.stringContaining('no answer within 200 ms'),
    });

    // The revoke recipe needs the leaked value and none was sent: nothing can be done, say so at once.
    const needsValue = provider({
      revoke: [
        { method: 'POST', url: '/admin/keys/revoke-by-value', headers: auth, body: { key: '{{leaked}}' } },
      ],
    });
    expect(await failure(needsValue.revoke(rev(key.prefix)))).toMatchObject({
      type: ErrorType.UNKNOWN_CREDENTIAL,
      nonRetryable: true,
    });
  });

  it('never puts a rendered secret (admin token, leaked value) in an error message', async () => {
    const key = api.createKey();
    const leaky = {
      revoke: [
        {
          method: 'POST',
          url: '/admin/keys/revoke?token={{env.HG_ADMIN_TOKEN}}&value={{leaked}}',
          headers: { Authorization: 'Bearer {{env.HG_ADMIN_TOKEN}}', 'X-Leaked': '{{leaked}}' },
          body: { value: '{{leaked}}', admin: '{{env.HG_ADMIN_TOKEN}}' },
        },
      ],
    };
    const secrets = [api.adminToken, key.value, key.secret];
    const messages: string[] = [];
    for (const reply of [
      { status: 403 },
      { status: 404 },
      { status: 400, body: { error: `bad value ${key.value}` } },
      { status: 500, body: key.value },
      { status: 429 },
    ]) {
      api.script.push(reply);
      messages.push((await failure(provider(leaky).revoke(rev(key.prefix, key.value)))).message);
    }
    messages.push(
      (
        await failure(
          provider({ ...leaky, baseUrl: 'http://127.0.0.1:1' }).revoke(rev(key.prefix, key.value)),
        )
      ).message,
    );
    messages.push(
      (
        await failure(
          provider({ revoke: [{ method: 'GET', url: '/x', headers: { 'X-Leaked': '{{leaked}}' } }] }).revoke(
            rev(key.prefix, `${key.value}\r\nX-Evil: 1`),
          ),
        )
      ).message,
    );
    messages.push((await failure(provider().verifyDead(req(key.prefix), key.value))).message);
    expect(messages).toHaveLength(8);
    expect(messages.join('\n')).toContain('{{leaked}}');
    for (const m of messages)
      for (const s of secrets)
        for (const form of [s, encodeURIComponent(s)]) expect(m.includes(form), m).toBe(false);
  });

  it('issues a replacement straight into Secrets Manager (moto); results carry references only; re-issue is idempotent', async () => {
    const aws = {
      region: 'us-east-1',
      endpointUrl: inject('awsEndpoint'),
      accessKeyIdEnv: 'MOTO_KEY_ID',
      secretAccessKeyEnv: 'MOTO_SECRET',
    };
    const awsEnv = {
      MOTO_KEY_ID: inject('awsAdmin').accessKeyId,
      MOTO_SECRET: inject('awsAdmin').secretAccessKey,
    };
    const secretId = `homegrown/api-key-${rand()}`;
    const sm = new SecretsManagerClient({
      region: aws.region,
      endpoint: aws.endpointUrl,
      credentials: { accessKeyId: awsEnv.MOTO_KEY_ID, secretAccessKey: awsEnv.MOTO_SECRET },
    });
    await sm.send(new CreateSecretCommand({ Name: secretId, SecretString: '{}' }));
    const sink = new SecretsManagerSink(secretId, aws, awsEnv);
    const p = provider({
      issue: [
        {
          method: 'POST',
          url: '/admin/keys',
          headers: { ...auth, 'Idempotency-Key': '{{workflowId}}' },
          body: { owner: 'service-{{ref.keyPrefix}}' },
          expectStatus: [201],
          extract: { apiKey: 'secret', keyId: 'id' },
        },
      ],
    });
    const r = req('abcd1234');
    const issued = await p.issueReplacement({ ...r, mode: 'emergency' }, sink);
    expect(issued).toMatchObject({
      delivered: true,
      note: 'replacement (apiKey, keyId) delivered to aws_secrets_manager',
    });
    expect(issued.sinkRef).toMatch(/^arn:aws:secretsmanager:.*#/);
    const stored = JSON.parse(
      (await sm.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString!,
    ) as { apiKey: string; keyId: string };
    expect(stored.apiKey).toMatch(/^hg_/);
    // The delivered key works; the result never held it.
    expect(api.keys.get(stored.keyId)!.revoked).toBe(false);
    expect(
      (await fetch(`${api.url}/api/whoami`, { headers: { Authorization: `Bearer ${stored.apiKey}` } }))
        .status,
    ).toBe(200);
    expect(JSON.stringify(issued)).not.toContain(stored.apiKey);
    expect(
      JSON.parse(api.requests.filter((x) => x.method === 'POST' && x.path === '/admin/keys').at(-1)!.body),
    ).toEqual({ owner: 'service-abcd1234' });

    // A retried activity (same workflow id) gets the same key from the API and leaves one version.
    const again = await p.issueReplacement({ ...r, mode: 'emergency' }, sink);
    expect(again.sinkRef).toBe(issued.sinkRef);

    // No sink: nothing is issued at all (a key nobody holds is useless).
    const before = api.requests.length;
    expect(await p.issueReplacement({ ...req('x'), mode: 'emergency' }, noSink)).toMatchObject({
      delivered: false,
      issuedAt: null,
    });
    expect(api.requests.length).toBe(before);
    sm.destroy();
  });
});

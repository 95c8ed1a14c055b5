/**
 * Every field of the `sources:` section takes effect or is refused at startup naming the field:
 * `sources.generic.secretsEnv` really selects the generic route's secrets; each environment variable
 * the section names must be set (and hold whsec_ secrets where Standard Webhooks verifies); a policy
 * rule may name only a source detections can come from; a custom sender's `defaultCredentialType` is
 * used when its type is not recognised.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { customSourceSchema, mapFindings } from '../../api/sources/custom';
import { buildSources } from '../../api/sources/registry';
import { genericWebhookSecrets } from '../../lib/bootstrap';
import { loadConfig } from '../../lib/config';
import { parseInventory } from '../../lib/inventory';
import { createServerKeys, newServerKey, newWebhookSecret } from '../../lib/keys';
import { rand, startHarness, testLogger, type Harness } from '../helpers/harness';

describe('sources.generic.secretsEnv', () => {
  const mine = newWebhookSecret();
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      worker: false,
      env: { MY_SECRETS: mine },
      config: { sources: { generic: { secretsEnv: 'MY_SECRETS' } } },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('verifies the generic route against the variable it names, no longer against GENERIC_WEBHOOK_SECRETS', async () => {
    const body = () => ({
      scanner: 'config-test',
      findingId: `f-${rand()}`,
      credentialType: 'generic',
      secret: `planted-${rand()}${rand()}`,
      severity: 'low',
    });
    expect((await h.post(body(), { secret: mine })).status).toBe(202);
    const byDefault = await h.post(body(), { secret: h.webhookSecret });
    expect(byDefault.status).toBe(401);
    expect(byDefault.json.type).toMatch(/invalid-signature/);
  });

  it('does not require GENERIC_WEBHOOK_SECRETS of a split ingress when another variable is named', () => {
    const config = loadConfig({ KILLSWITCH_SERVER_KEY: newServerKey() });
    expect(() => genericWebhookSecrets(config, { embedded: false }, testLogger)).toThrow(
      /GENERIC_WEBHOOK_SECRETS: required/,
    );
    expect(
      genericWebhookSecrets(config, { embedded: false }, testLogger, { secretsEnv: 'MY_SECRETS' }),
    ).toEqual([]);
  });
});

describe('environment variables named by sources: refused at startup, naming the field', () => {
  const start =
    (sources: Record<string, unknown>, env: Record<string, string> = {}) =>
    () =>
      buildSources({
        config: loadConfig({ KILLSWITCH_SERVER_KEY: newServerKey() }),
        inventory: parseInventory({ sources }),
        keys: createServerKeys(newServerKey()),
        env,
        genericSecrets: [newWebhookSecret()],
      });

  it('sources.generic.secretsEnv: unset, or not whsec_ secrets (never echoed)', () => {
    expect(start({ generic: { secretsEnv: 'MY_SECRETS' } })).toThrow(
      /sources\.generic\.secretsEnv: environment variable MY_SECRETS is not set/,
    );
    const planted = `hunter2-${rand()}`;
    const bad = start(
      { generic: { secretsEnv: 'MY_SECRETS' } },
      { MY_SECRETS: `${newWebhookSecret()},${planted}` },
    );
    expect(bad).toThrow(/sources\.generic\.secretsEnv: MY_SECRETS: each secret must look like whsec_/);
    let message = '';
    try {
      bad();
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).not.toContain(planted);
    expect(
      start({ generic: { secretsEnv: 'MY_SECRETS' } }, { MY_SECRETS: newWebhookSecret() }),
    ).not.toThrow();
  });

  it('every other variable the section names', () => {
    const wh = newWebhookSecret();
    expect(start({ kingfisher: { secretsEnv: 'KF' } }, { KF: 'not-a-whsec-secret-at-all' })).toThrow(
      /sources\.kingfisher\.secretsEnv: KF: each secret must look like whsec_/,
    );
    expect(
      start({ github: { secretsEnv: 'GH_HOOK', apiTokenEnv: 'GH_TOKEN' } }, { GH_HOOK: 'hook-secret' }),
    ).toThrow(/sources\.github\.apiTokenEnv: environment variable GH_TOKEN is not set/);
    expect(start({ github_partner: { keysTokenEnv: 'GH_KEYS_TOKEN' } })).toThrow(
      /sources\.github_partner\.keysTokenEnv: environment variable GH_KEYS_TOKEN is not set/,
    );
    expect(start({ gitguardian: { secretsEnv: 'GG', apiTokenEnv: 'GG_API' } }, { GG: 'gg-token' })).toThrow(
      /sources\.gitguardian\.apiTokenEnv: environment variable GG_API is not set/,
    );
    expect(start({ gitlab: { tokensEnv: 'GL' } })).toThrow(
      /sources\.gitlab\.tokensEnv: environment variable GL is not set/,
    );
    expect(
      start(
        {
          custom: [
            {
              name: 'acme',
              verify: { scheme: 'standard-webhooks', secretsEnv: 'ACME' },
              mapping: { secret: 's' },
            },
          ],
        },
        { ACME: 'plain' },
      ),
    ).toThrow(/sources\.custom\[0\]\.verify\.secretsEnv: ACME: each secret must look like whsec_/);
    // A policy rule naming a source nothing comes from would never match.
    expect(
      start(
        {
          custom: [
            {
              name: 'acme',
              verify: { scheme: 'hmac-sha256', secretsEnv: 'ACME', header: 'X-Sig' },
              mapping: { secret: 's' },
            },
          ],
        },
        { ACME: 'k' },
      ),
    ).not.toThrow();
    const policy = (source: string[]) => () =>
      buildSources({
        config: loadConfig({ KILLSWITCH_SERVER_KEY: newServerKey() }),
        inventory: parseInventory({
          sources: {
            custom: [
              {
                name: 'acme',
                verify: { scheme: 'hmac-sha256', secretsEnv: 'ACME', header: 'X-Sig' },
                mapping: { secret: 's' },
              },
            ],
          },
          policy: { rules: [{ match: { source }, action: 'notify_only' }] },
        }),
        keys: createServerKeys(newServerKey()),
        env: { ACME: 'k' },
        genericSecrets: [newWebhookSecret()],
      });
    expect(policy(['gitleaks', 'gitleak'])).toThrow(/policy\.rules\[0\]\.match\.source\[1\]: no such source/);
    expect(policy(['gitleaks', 'acme', 'generic'])).not.toThrow();
    // All set and well-formed: the ingress builds.
    expect(
      start(
        {
          kingfisher: { secretsEnv: 'KF' },
          github: { secretsEnv: 'GH_HOOK', apiTokenEnv: 'GH_TOKEN' },
          gitguardian: { secretsEnv: 'GG', apiTokenEnv: 'GG_API' },
          gitlab: { tokensEnv: 'GL' },
        },
        {
          KF: wh,
          GH_HOOK: 'hook-secret',
          GH_TOKEN: 'ghs_x',
          GG: 'gg-token',
          GG_API: 'gg-api',
          GL: 'gl-token',
        },
      ),
    ).not.toThrow();
  });
});

describe('the sources section: each key is a source of the registry, validated by its own schema', () => {
  const start =
    (sources: Record<string, unknown>, env: Record<string, string> = {}) =>
    () =>
      buildSources({
        config: loadConfig({ KILLSWITCH_SERVER_KEY: newServerKey() }),
        inventory: parseInventory({ sources }),
        keys: createServerKeys(newServerKey()),
        env,
        genericSecrets: [newWebhookSecret()],
      });

  it('refuses a section no source defines, and a field or value its source does not take, naming the field', () => {
    expect(start({ gitleak: { secretsEnv: 'G' } }, { G: newWebhookSecret() })).toThrow(
      /is invalid:\n {2}sources: Unrecognized key: "gitleak"/,
    );
    expect(
      start({ github: { secretsEnv: 'GH', apiTokenEnv: 'T', escalateAfter: '5h' } }, { GH: 'x', T: 'y' }),
    ).toThrow(/sources\.github\.escalateAfter: between 10s and 1h/);
    expect(start({ gitleaks: { secretsEnv: 'G', colour: 'red' } }, { G: newWebhookSecret() })).toThrow(
      /sources\.gitleaks: Unrecognized key: "colour"/,
    );
    expect(start({ gitguardian: { secretsEnv: 'GG', bodyLimit: 'huge' } }, { GG: 'x' })).toThrow(
      /sources\.gitguardian\.bodyLimit/,
    );
  });

  it('keeps every built-in name, the ones added by a registry line included, from a custom sender', () => {
    for (const name of ['github', 'gitlab', 'noseyparker']) {
      expect(
        start(
          {
            custom: [
              {
                name,
                verify: { scheme: 'hmac-sha256', secretsEnv: 'ACME', header: 'X-Sig' },
                mapping: { secret: 's' },
              },
            ],
          },
          { ACME: 'k' },
        ),
      ).toThrow(new RegExp(`sources\\.custom: "${name}" is already the name of a source`));
    }
    const twice = {
      verify: { scheme: 'hmac-sha256', secretsEnv: 'ACME', header: 'X-Sig' },
      mapping: { secret: 's' },
    };
    expect(
      start(
        {
          custom: [
            { name: 'acme', ...twice },
            { name: 'acme', ...twice },
          ],
        },
        { ACME: 'k' },
      ),
    ).toThrow(/sources\.custom: "acme" is already the name of a source/);
  });
});

describe('sources.custom[].mapping.defaultCredentialType', () => {
  it('types a finding whose type is neither mapped nor recognised, instead of a silent generic', () => {
    const config = customSourceSchema.parse({
      name: 'acme-vault',
      verify: { scheme: 'standard-webhooks', secretsEnv: 'ACME' },
      mapping: {
        items: 'findings',
        secret: 'value',
        credentialType: 'kind',
        typeMap: { pg: 'postgres_password' },
        defaultCredentialType: 'aws_access_key',
      },
    });
    const keyPair = `AKIA${'Q'.repeat(16)}:${'s'.repeat(40)}`;
    const [noType, unknownType, recognised] = mapFindings(config, {
      findings: [
        { value: keyPair },
        { value: keyPair, kind: 'acme_cloud_key' },
        { value: 'xoxb-123456789012-abcdefabcdef', kind: 'slack' },
      ],
    });
    expect(noType!.credentialType).toBe('aws_access_key');
    expect(unknownType!.credentialType).toBe('aws_access_key');
    // A name that says what it is still wins over the default.
    expect(recognised!.credentialType).toBe('slack_token');
  });
});

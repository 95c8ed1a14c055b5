/**
 * One valid, signed sample delivery per source, and how to re-sign a mutated body: the fuzzer's
 * starting points. Each source's secrets are fresh per run.
 */
import { createHmac, generateKeyPairSync, randomBytes, sign as ecSign } from 'node:crypto';
import { startRecorder, type RecordingServer } from '../fakes/http-recorder';
import { Webhook } from 'standardwebhooks';
import { newWebhookSecret } from '../../lib/keys';

export interface FuzzSample {
  name: string;
  path: string;
  /** Headers that carry authentication: the fuzzer drops or garbles them. */
  authHeaders: string[];
  build(): { body: string; headers: Record<string, string> };
  /** Headers that authenticate `body`. */
  sign(body: string): Record<string, string>;
  serialize?: (doc: unknown) => string;
}

export interface FuzzSetup {
  env: Record<string, string>;
  config: Record<string, unknown>;
  samples: FuzzSample[];
  /** Loopback servers the samples need (GitHub's partner key list). */
  servers: RecordingServer[];
}

const rnd = () => randomBytes(6).toString('hex');

function standardWebhooks(secret: string) {
  return (body: string): Record<string, string> => {
    const id = `msg_${rnd()}`;
    const ts = new Date();
    return {
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
      'webhook-signature': new Webhook(secret).sign(id, ts, body),
    };
  };
}

export async function fuzzSamples(): Promise<FuzzSetup> {
  const unlimited = { rateLimit: { perMinute: 1_000_000 } };
  const env: Record<string, string> = {};
  const config: Record<string, Record<string, unknown>> = { sources: { generic: { ...unlimited } } };
  const samples: FuzzSample[] = [];

  // generic: the harness provides GENERIC_WEBHOOK_SECRETS; a fresh one is set here for signing.
  const generic = newWebhookSecret();
  env.GENERIC_WEBHOOK_SECRETS = generic;
  const signGeneric = standardWebhooks(generic);
  samples.push({
    name: 'generic',
    path: '/webhooks/generic',
    authHeaders: ['webhook-id', 'webhook-timestamp', 'webhook-signature'],
    build() {
      const body = JSON.stringify({
        scanner: 'fuzz',
        findingId: rnd(),
        credentialType: 'postgres_password',
        secret: `postgres://app_${rnd()}:pw-${rnd()}@db.internal:5432/app`,
        location: { repository: 'acme/api', file: 'a.env', line: 1, commit: 'abcdef1' },
        severity: 'high',
      });
      return { body, headers: { 'content-type': 'application/json', ...signGeneric(body) } };
    },
    sign: signGeneric,
  });

  const sources = config.sources as Record<string, unknown>;
  const pgFinding = () => `postgres://app_${rnd()}:pw-${rnd()}@db.internal:5432/app`;

  // CI reports, Standard Webhooks each with its own secret.
  const ci: Array<[string, string, () => string, string]> = [
    [
      'trufflehog',
      'TRUFFLEHOG_SECRETS',
      () =>
        JSON.stringify({
          SourceMetadata: {
            Data: {
              Git: {
                file: 'a.env',
                line: 1,
                commit: 'abcdef1',
                repository: 'https://github.com/acme/api.git',
              },
            },
          },
          DetectorName: 'Postgres',
          Verified: false,
          Raw: pgFinding(),
        }),
      'application/x-ndjson',
    ],
    [
      'gitleaks',
      'GITLEAKS_SECRETS',
      () =>
        JSON.stringify([
          {
            RuleID: 'generic-api-key',
            Secret: `pw-${rnd()}`,
            Match: `url=${pgFinding()}`,
            File: 'a.env',
            StartLine: 1,
            Commit: 'abcdef1',
            Fingerprint: 'abcdef1:a.env:generic-api-key:1',
          },
        ]),
      'application/json',
    ],
    [
      'kingfisher',
      'KINGFISHER_SECRETS',
      () =>
        `${JSON.stringify({ findings: [{ rule: { id: 'betterleaks.generic-credential-uri' }, finding: { snippet: `pw-${rnd()}`, path: './a.env', line: 1, validation: { outcome: 'not_attempted' }, validate_command: `kingfisher validate '${pgFinding()}'` } }] })}\n${JSON.stringify({ findings: 1 })}`,
      'application/x-ndjson',
    ],
  ];
  for (const [name, envName, build, type] of ci) {
    const secret = newWebhookSecret();
    env[envName] = secret;
    sources[name] = { secretsEnv: envName, ...unlimited };
    const signer = standardWebhooks(secret);
    samples.push({
      name,
      path: `/webhooks/${name}`,
      authHeaders: ['webhook-id', 'webhook-timestamp', 'webhook-signature'],
      build() {
        const body = build();
        return { body, headers: { 'content-type': type, ...signer(body) } };
      },
      sign: signer,
      ...(name === 'trufflehog' ? { serialize: (d: unknown) => JSON.stringify(d) } : {}),
    });
  }

  // GitHub secret_scanning_alert: X-Hub-Signature-256.
  const ghSecret = `gh-${rnd()}`;
  env.GITHUB_WEBHOOK_SECRETS = ghSecret;
  env.GITHUB_TOKEN = 'ghs_unused';
  sources.github = {
    secretsEnv: 'GITHUB_WEBHOOK_SECRETS',
    apiTokenEnv: 'GITHUB_TOKEN',
    apiUrl: 'http://127.0.0.1:9',
    ...unlimited,
  };
  const ghSign = (body: string) => ({
    'x-hub-signature-256': `sha256=${createHmac('sha256', ghSecret).update(body).digest('hex')}`,
    'x-github-event': 'secret_scanning_alert',
    'x-github-delivery': rnd(),
  });
  samples.push({
    name: 'github',
    path: '/webhooks/github',
    authHeaders: ['x-hub-signature-256'],
    build() {
      const body = JSON.stringify({
        action: 'created',
        alert: {
          number: Math.floor(Math.random() * 1e6) + 1,
          secret_type: 'postgres_connection_uri',
          url: `http://127.0.0.1:9/repos/acme/api/secret-scanning/alerts/1`,
        },
        repository: { full_name: 'acme/api' },
      });
      return { body, headers: { 'content-type': 'application/json', ...ghSign(body) } };
    },
    sign: ghSign,
  });

  // GitHub partner format: ECDSA P-256 by a key from a published list.
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyServer = await startRecorder(() => ({
    status: 200,
    body: {
      public_keys: [
        {
          key_identifier: 'fuzz-key',
          key: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
          is_current: true,
        },
      ],
    },
  }));
  sources.github_partner = { keysUrl: `${keyServer.url}/keys`, ...unlimited };
  const partnerSign = (body: string) => ({
    'github-public-key-identifier': 'fuzz-key',
    'github-public-key-signature': ecSign('sha256', Buffer.from(body, 'latin1'), {
      key: privateKey,
      dsaEncoding: 'der',
    }).toString('base64'),
  });
  samples.push({
    name: 'github_partner',
    path: '/webhooks/github_partner',
    authHeaders: ['github-public-key-identifier', 'github-public-key-signature'],
    build() {
      const body = JSON.stringify([
        {
          token: pgFinding(),
          type: 'acme_db_url',
          url: 'https://github.com/x/y/blob/a/b',
          source: 'content',
        },
      ]);
      return { body, headers: { 'content-type': 'application/json', ...partnerSign(body) } };
    },
    sign: partnerSign,
  });

  // GitGuardian: HMAC keyed by Timestamp + token.
  const ggToken = `gg-${rnd()}`;
  env.GITGUARDIAN_SECRETS = ggToken;
  sources.gitguardian = { secretsEnv: 'GITGUARDIAN_SECRETS', ...unlimited };
  const ggSign = (body: string) => {
    const ts = String(Math.floor(Date.now() / 1000));
    return {
      timestamp: ts,
      'gitguardian-signature': `sha256=${createHmac('sha256', `${ts}${ggToken}`).update(Buffer.from(body, 'latin1')).digest('hex')}`,
    };
  };
  samples.push({
    name: 'gitguardian',
    path: '/webhooks/gitguardian',
    authHeaders: ['timestamp', 'gitguardian-signature'],
    build() {
      const body = JSON.stringify({
        source: 'GitGuardian',
        action: 'incident_triggered',
        incident: {
          id: Math.floor(Math.random() * 1e6) + 1,
          detector: { name: 'postgresql_credentials' },
          hmsl_hash: 'a'.repeat(64),
          severity: 'high',
          occurrences: [{ filepath: 'a.env', source: { full_name: 'acme/api' } }],
        },
      });
      return { body, headers: { 'content-type': 'application/json', ...ggSign(body) } };
    },
    sign: ggSign,
  });

  // A custom sender with an HMAC header.
  const customSecret = `c-${rnd()}`;
  env.FUZZ_CUSTOM_SECRETS = customSecret;
  sources.custom ??= [];
  (sources.custom as unknown[]).push({
    name: 'fuzz-platform',
    verify: {
      scheme: 'hmac-sha256',
      secretsEnv: 'FUZZ_CUSTOM_SECRETS',
      header: 'X-Signature',
      prefix: 'sha256=',
    },
    mapping: {
      items: 'findings',
      secret: 'value',
      credentialType: 'kind',
      typeMap: { pg: 'postgres_password' },
      location: { repository: 'repo', file: 'file', line: 'line' },
    },
    ...unlimited,
  });
  const customSign = (body: string) => ({
    'x-signature': `sha256=${createHmac('sha256', customSecret).update(Buffer.from(body, 'latin1')).digest('hex')}`,
  });
  samples.push({
    name: 'custom',
    path: '/webhooks/fuzz-platform',
    authHeaders: ['x-signature'],
    build() {
      const body = JSON.stringify({
        findings: [{ kind: 'pg', value: pgFinding(), repo: 'acme/api', file: 'a.env', line: 2 }],
      });
      return { body, headers: { 'content-type': 'application/json', ...customSign(body) } };
    },
    sign: customSign,
  });

  // GitLab's token revocation API: a pre-shared token.
  const glToken = `gl-${rnd()}${rnd()}`;
  env.GITLAB_TOKENS = glToken;
  sources.gitlab = { tokensEnv: 'GITLAB_TOKENS', ...unlimited };
  samples.push({
    name: 'gitlab',
    path: '/gitlab/v1/revoke_tokens',
    authHeaders: ['authorization'],
    build() {
      const body = JSON.stringify([
        {
          type: 'postgres_connection_string',
          token: pgFinding(),
          location: 'https://gitlab.example.com/a/b/-/blob/c/d',
        },
      ]);
      return { body, headers: { 'content-type': 'application/json', authorization: glToken } };
    },
    // The token does not sign the body: a mutated body is still authenticated.
    sign: () => ({ authorization: glToken }),
  });

  return { env, config, samples, servers: [keyServer] };
}

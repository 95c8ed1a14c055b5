/**
 * The Temporal connection settings (lib/temporal-connection.ts through loadConfig): TEMPORAL_*
 * variables, TOML profiles, TLS, mTLS and API keys, and every refusal naming its variable or
 * profile field without ever printing a secret. Certificates are real ones (openssl).
 */
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../lib/config';
import { describeTemporalConnection, explainConnectError } from '../../lib/temporal-connection';
import { makePki, type Pki } from '../helpers/tls-terminator';

let dir: string;
let pki: Pki;
const API_KEY = 'eyJhbGciOiJFUzI1NiJ9.test-api-key-value.c2lnbmF0dXJl';

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ks-temporal-conn-'));
  pki = makePki(dir);
});

/** The ConfigError's message for this environment. */
function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('loadConfig accepted the environment');
}

describe('Temporal connection settings', () => {
  it('without settings: no address (npm start runs a dev server), namespace default, plain gRPC', () => {
    const c = loadConfig({});
    expect(c.temporal.address).toBeUndefined();
    expect(c.temporal.namespace).toBe('default');
    expect(c.temporal.connection.tls).toBe('off');
    expect(c.temporal.connection.connectOptions()).toEqual({ address: 'localhost:7233' });
    expect(loadConfig({ TEMPORAL_ADDRESS: 'temporal:7233' }).temporal.connection.connectOptions()).toEqual({
      address: 'temporal:7233',
    });
  });

  it('an API key alone turns TLS on (system roots), as Temporal Cloud requires, and is never shown', () => {
    const c = loadConfig({
      TEMPORAL_ADDRESS: 'ks-prod.a1b2c.tmprl.cloud:7233',
      TEMPORAL_NAMESPACE: 'ks-prod.a1b2c',
      TEMPORAL_API_KEY: API_KEY,
    });
    const conn = c.temporal.connection;
    expect(conn).toMatchObject({ tls: 'tls', serverCa: 'system', apiKey: 'set', namespace: 'ks-prod.a1b2c' });
    expect(conn.connectOptions()).toEqual({
      address: 'ks-prod.a1b2c.tmprl.cloud:7233',
      tls: {},
      apiKey: API_KEY,
    });
    expect(JSON.stringify(c)).not.toContain(API_KEY);
    expect(JSON.stringify(describeTemporalConnection(conn))).not.toContain(API_KEY);
    const explained = explainConnectError(new Error(`16 UNAUTHENTICATED: bad key ${API_KEY}`), conn);
    expect(explained.message).not.toContain(API_KEY);
    expect(explained.message).toContain('TEMPORAL_API_KEY');
  });

  it('TLS with a pinned CA and a server name; mTLS with a client certificate and key', () => {
    const tls = loadConfig({
      TEMPORAL_ADDRESS: '127.0.0.1:7233',
      TEMPORAL_TLS: 'true',
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caFile,
      TEMPORAL_TLS_SERVER_NAME: 'localhost',
    }).temporal.connection;
    expect(tls).toMatchObject({ tls: 'tls', serverCa: 'pinned', serverName: 'localhost' });
    expect(tls.connectOptions().tls).toEqual({
      serverNameOverride: 'localhost',
      serverRootCACertificate: readFileSync(pki.caFile),
    });

    const mtls = loadConfig({
      TEMPORAL_ADDRESS: '127.0.0.1:7233',
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caFile,
      TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertFile,
      TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyFile,
    });
    const conn = mtls.temporal.connection;
    expect(conn).toMatchObject({ tls: 'mtls', serverCa: 'pinned' });
    expect(conn.clientCertificate).toContain('CN=kill-switch-test-client');
    expect(conn.connectOptions().tls?.clientCertPair).toEqual({
      crt: readFileSync(pki.clientCertFile),
      key: readFileSync(pki.clientKeyFile),
    });
    const keyPem = readFileSync(pki.clientKeyFile, 'utf8');
    const keyBody = keyPem.split('\n')[1]!;
    expect(JSON.stringify(mtls)).not.toContain(keyBody);
    expect(JSON.stringify(describeTemporalConnection(conn))).not.toContain(keyBody);
  });

  it.each([
    [
      'a client certificate file that does not exist',
      () => ({
        TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'missing.crt'),
        TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyFile,
      }),
      /TEMPORAL_TLS_CLIENT_CERT_PATH: cannot read .*missing\.crt \(ENOENT\)/,
    ],
    [
      'a key without a certificate',
      () => ({ TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientKeyFile }),
      /TEMPORAL_TLS_CLIENT_CERT_PATH: required with TEMPORAL_TLS_CLIENT_KEY_PATH/,
    ],
    [
      'a certificate without its key',
      () => ({ TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertFile }),
      /TEMPORAL_TLS_CLIENT_KEY_PATH: required with TEMPORAL_TLS_CLIENT_CERT_PATH/,
    ],
    [
      'a key of another certificate',
      () => ({
        TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertFile,
        TEMPORAL_TLS_CLIENT_KEY_PATH: pki.strangerKeyFile,
      }),
      /TEMPORAL_TLS_CLIENT_KEY_PATH: does not belong to the certificate of TEMPORAL_TLS_CLIENT_CERT_PATH/,
    ],
    [
      'an unreadable CA (a directory)',
      () => ({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: dir }),
      /TEMPORAL_TLS_SERVER_CA_CERT_PATH: cannot read .* \(EISDIR\)/,
    ],
    [
      'a CA file that is no certificate',
      () => ({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.clientKeyFile }),
      /TEMPORAL_TLS_SERVER_CA_CERT_PATH: not a PEM certificate/,
    ],
    [
      'a client key that is no key',
      () => ({
        TEMPORAL_TLS_CLIENT_CERT_PATH: pki.clientCertFile,
        TEMPORAL_TLS_CLIENT_KEY_PATH: pki.clientCertFile,
      }),
      /TEMPORAL_TLS_CLIENT_KEY_PATH: not an unencrypted PEM private key/,
    ],
    [
      'an API key with TLS switched off',
      () => ({ TEMPORAL_API_KEY: API_KEY, TEMPORAL_TLS: 'false' }),
      /TEMPORAL_API_KEY: would be sent in clear text: TLS is off \(TEMPORAL_TLS=false\)/,
    ],
    [
      'TLS files with TLS switched off',
      () => ({ TEMPORAL_TLS: '0', TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.caFile }),
      /TEMPORAL_TLS_SERVER_CA_CERT_PATH: set, but TLS is off/,
    ],
    ['TEMPORAL_TLS not a boolean', () => ({ TEMPORAL_TLS: 'yes' }), /TEMPORAL_TLS: must be true or false/],
    [
      'an address with a scheme',
      () => ({ TEMPORAL_ADDRESS: 'https://ks.a1b2c.tmprl.cloud:7233' }),
      /TEMPORAL_ADDRESS: host:port without a scheme/,
    ],
    [
      'an address without a port',
      () => ({ TEMPORAL_ADDRESS: 'temporal' }),
      /TEMPORAL_ADDRESS: must be host:port/,
    ],
    [
      'an API key without an address',
      () => ({ TEMPORAL_ADDRESS: '', TEMPORAL_API_KEY: API_KEY }),
      /TEMPORAL_ADDRESS: required with TEMPORAL_API_KEY/,
    ],
    [
      'an API key with a trailing newline',
      () => ({ TEMPORAL_API_KEY: `${API_KEY}\n` }),
      /TEMPORAL_API_KEY: contains whitespace or control characters/,
    ],
    [
      'host verification switched off',
      () => ({ TEMPORAL_TLS: 'true', TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' }),
      /TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: not supported .* set TEMPORAL_TLS_SERVER_NAME/,
    ],
    [
      'a config file that does not exist',
      () => ({ TEMPORAL_CONFIG_FILE: path.join(dir, 'nope.toml') }),
      /TEMPORAL_CONFIG_FILE: no such file: .*nope\.toml/,
    ],
    [
      'a bad namespace',
      () => ({ TEMPORAL_NAMESPACE: 'two words' }),
      /TEMPORAL_NAMESPACE: a namespace name: no whitespace/,
    ],
  ])('refuses %s, naming the variable', (_what, env, expected) => {
    const message = refusal({ TEMPORAL_ADDRESS: '127.0.0.1:7233', ...env() });
    expect(message).toMatch(expected);
    expect(message).not.toContain(API_KEY);
    expect(message).not.toContain(readFileSync(pki.clientKeyFile, 'utf8').split('\n')[1]!);
  });

  describe('profiles (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE)', () => {
    let file: string;
    beforeAll(() => {
      file = path.join(dir, 'temporal.toml');
      writeFileSync(
        file,
        [
          '[profile.default]',
          'address = "temporal.internal:7233"',
          'namespace = "kill-switch"',
          '',
          '[profile.cloud]',
          'address = "ks-prod.a1b2c.tmprl.cloud:7233"',
          'namespace = "ks-prod.a1b2c"',
          `api_key = "${API_KEY}"`,
          '',
          '[profile.mtls]',
          'address = "temporal.internal:7233"',
          '[profile.mtls.tls]',
          `server_ca_cert_path = "${pki.caFile}"`,
          `client_cert_path = "${pki.clientCertFile}"`,
          `client_key_path = "${pki.clientKeyFile}"`,
          '',
          '[profile.halfmtls]',
          'address = "temporal.internal:7233"',
          '[profile.halfmtls.tls]',
          `client_key_path = "${pki.clientKeyFile}"`,
          '',
        ].join('\n'),
      );
    });

    it('selects address, namespace, API key and TLS from the profile; variables override it', () => {
      const def = loadConfig({ TEMPORAL_CONFIG_FILE: file });
      expect(def.temporal).toMatchObject({ address: 'temporal.internal:7233', namespace: 'kill-switch' });
      expect(def.temporal.connection).toMatchObject({ tls: 'off', profile: 'default', configFile: file });

      const cloud = loadConfig({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'cloud' });
      expect(cloud.temporal).toMatchObject({
        address: 'ks-prod.a1b2c.tmprl.cloud:7233',
        namespace: 'ks-prod.a1b2c',
      });
      expect(cloud.temporal.connection).toMatchObject({ tls: 'tls', apiKey: 'set', profile: 'cloud' });
      expect(cloud.temporal.connection.connectOptions().apiKey).toBe(API_KEY);

      const mtls = loadConfig({
        TEMPORAL_CONFIG_FILE: file,
        TEMPORAL_PROFILE: 'mtls',
        TEMPORAL_NAMESPACE: 'other',
      });
      expect(mtls.temporal.namespace).toBe('other');
      expect(mtls.temporal.connection).toMatchObject({ tls: 'mtls', serverCa: 'pinned' });
    });

    it('names the profile field, the unknown profile, and a broken file without printing it', () => {
      expect(refusal({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'halfmtls' })).toContain(
        `tls.client_cert_path of [profile.halfmtls] in ${file}: required with tls.client_key_path of [profile.halfmtls] in ${file}`,
      );
      expect(refusal({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging' })).toMatch(
        /TEMPORAL_PROFILE: .* has no \[profile\.staging\]; its profiles: default, cloud, mtls, halfmtls/,
      );
      const broken = path.join(dir, 'broken.toml');
      writeFileSync(broken, `[profile.default]\napi_key = "${API_KEY}\n`);
      const message = refusal({ TEMPORAL_CONFIG_FILE: broken });
      expect(message).toMatch(
        /TEMPORAL_CONFIG_FILE: .*broken\.toml: not valid TOML \(line \d+, column \d+\)/,
      );
      expect(message).not.toContain(API_KEY);
    });

    it("reads the CLI's default file only when TEMPORAL_PROFILE asks for a profile", () => {
      const home = path.join(dir, 'xdg');
      mkdirSync(path.join(home, 'temporalio'), { recursive: true });
      writeFileSync(
        path.join(home, 'temporalio', 'temporal.toml'),
        '[profile.default]\naddress = "somewhere.else:7233"\n',
      );
      expect(loadConfig({ XDG_CONFIG_HOME: home }).temporal.address).toBeUndefined();
      expect(loadConfig({ XDG_CONFIG_HOME: home, TEMPORAL_PROFILE: 'default' }).temporal.address).toBe(
        'somewhere.else:7233',
      );
    });
  });
});

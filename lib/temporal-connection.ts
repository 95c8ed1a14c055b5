/**
 * The Temporal connection, resolved the way Temporal's CLI and SDKs resolve it
 * (`@temporalio/envconfig`): a profile of a TOML file under the standard `TEMPORAL_*` variables.
 * Validated once, at startup, with errors naming the variable or the profile field; one set of
 * options serves the client's `Connection` and the worker's `NativeConnection`. The API key, the
 * private key and gRPC metadata values live only inside `connectOptions()`: the resolved object
 * itself (what a log line could print) holds none of them.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TLSConfig } from '@temporalio/client';
import {
  loadClientConfig,
  loadClientConfigProfile,
  type ClientConfigProfile,
  type ConfigDataSource,
} from '@temporalio/envconfig';

/** What the SDKs connect to when no address is configured. */
export const DEFAULT_TEMPORAL_ADDRESS = 'localhost:7233';
const DEFAULT_PROFILE = 'default';

/** `off`: plain gRPC; `tls`: the server is verified; `mtls`: and this process shows a client certificate. */
export type TemporalTlsMode = 'off' | 'tls' | 'mtls';

/** Options accepted by both `Connection.connect`/`lazy` (client) and `NativeConnection.connect` (worker). */
export interface TemporalConnectOptions {
  address: string;
  tls?: TLSConfig;
  apiKey?: string;
  metadata?: Record<string, string>;
}

/** The resolved connection: safe to log as it is (no secret among its fields). */
export interface TemporalConnection {
  /** TEMPORAL_ADDRESS or the profile's; undefined: nothing configured (npm start runs a dev server). */
  readonly address: string | undefined;
  readonly namespace: string;
  readonly tls: TemporalTlsMode;
  /** Where the server's certificate is checked against: its pinned CA file, or the system's roots. */
  readonly serverCa: 'pinned' | 'system' | undefined;
  readonly serverName: string | undefined;
  /** The client certificate's subject (mTLS). */
  readonly clientCertificate: string | undefined;
  readonly apiKey: 'set' | undefined;
  /** Names of the extra gRPC headers (TEMPORAL_GRPC_META_*), never their values. */
  readonly grpcMeta: readonly string[];
  /** The profile and file the settings were read from; undefined when only variables were used. */
  readonly profile: string | undefined;
  readonly configFile: string | undefined;
  /** The options to connect with (address defaults to localhost:7233). Holds the secrets: never log it. */
  connectOptions(): TemporalConnectOptions;
}

export interface TemporalSettingsIssue {
  /** The variable (TEMPORAL_TLS_CLIENT_CERT_PATH) or profile field (`tls.client_cert_path of [profile.x] in file`). */
  readonly field: string;
  readonly message: string;
}

/** Every problem with the Temporal settings; lib/config.ts turns it into a ConfigError. */
export class TemporalSettingsError extends Error {
  override name = 'TemporalSettingsError';
  constructor(readonly issues: readonly TemporalSettingsIssue[]) {
    super(`invalid Temporal settings:\n${issues.map((i) => `  ${i.field}: ${i.message}`).join('\n')}`);
  }
}

type Env = Record<string, string | undefined>;

const hasControl = (v: string): boolean =>
  [...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

const set = (env: Env, name: string): boolean => (env[name] ?? '').trim() !== '';

/** `true`/`false`/`1`/`0` (any case); undefined when unset; `null` when not a boolean. */
function envBool(env: Env, name: string): boolean | undefined | null {
  if (!set(env, name)) return undefined;
  const v = env[name]!.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return null;
}

/** Where Temporal's CLI and SDKs keep their profiles when TEMPORAL_CONFIG_FILE is unset. */
export function defaultTemporalConfigFile(env: Env): string {
  if (process.platform === 'win32')
    return path.join(env.APPDATA ?? os.homedir(), 'temporalio', 'temporal.toml');
  if (process.platform === 'darwin')
    return path.join(
      env.HOME ?? os.homedir(),
      'Library',
      'Application Support',
      'temporalio',
      'temporal.toml',
    );
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(env.HOME ?? os.homedir(), '.config');
  return path.join(base, 'temporalio', 'temporal.toml');
}

/** A TOML parse error without its excerpt of the file (the line could hold an api_key). */
function tomlProblem(err: unknown): string {
  const e = err as { name?: string; line?: number; column?: number; code?: string; message?: string };
  if (e.name === 'TomlError' || typeof e.line === 'number')
    return `not valid TOML (line ${e.line}, column ${e.column})`;
  if (e.code) return `cannot read it (${e.code})`;
  // envconfig's own messages name keys only ("Cannot specify both client_cert_path and client_cert_data").
  return e.message ?? String(err);
}

const ADDRESS = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?):(\d{1,5})$/;

/**
 * Resolves the Temporal connection from the environment. A TOML profile is read only when
 * TEMPORAL_CONFIG_FILE or TEMPORAL_PROFILE is set, so a profile the `temporal` CLI keeps in the
 * default file never silently points `npm start` (or a test) at another cluster. Variables override
 * the profile, field by field, as in Temporal's CLI.
 */
export function resolveTemporalConnection(env: Env): TemporalConnection {
  const issues: TemporalSettingsIssue[] = [];
  const issue = (field: string, message: string) => issues.push({ field, message });

  // The profile file, on request only.
  const profileName = set(env, 'TEMPORAL_PROFILE') ? env.TEMPORAL_PROFILE!.trim() : undefined;
  const configFile = set(env, 'TEMPORAL_CONFIG_FILE')
    ? path.resolve(env.TEMPORAL_CONFIG_FILE!.trim())
    : profileName !== undefined
      ? defaultTemporalConfigFile(env)
      : undefined;
  const fileVar = set(env, 'TEMPORAL_CONFIG_FILE') ? 'TEMPORAL_CONFIG_FILE' : 'TEMPORAL_PROFILE';
  let useFile = false;
  if (configFile !== undefined) {
    if (!existsSync(configFile) || !statSync(configFile).isFile()) {
      issue(
        fileVar,
        fileVar === 'TEMPORAL_CONFIG_FILE'
          ? `no such file: ${configFile}`
          : `profile "${profileName}" asked for, but the default config file ${configFile} does not exist (set TEMPORAL_CONFIG_FILE)`,
      );
    } else {
      try {
        const profiles = Object.keys(loadClientConfig({ configSource: { path: configFile } }).profiles);
        const wanted = profileName ?? DEFAULT_PROFILE;
        if (!profiles.includes(wanted))
          issue(
            profileName ? 'TEMPORAL_PROFILE' : 'TEMPORAL_CONFIG_FILE',
            `${configFile} has no [profile.${wanted}]; its profiles: ${profiles.join(', ') || 'none'}`,
          );
        else useFile = true;
      } catch (err) {
        issue(fileVar, `${configFile}: ${tomlProblem(err)}`);
      }
    }
  }
  const profileLabel = profileName ?? DEFAULT_PROFILE;
  /** The variable that set a value, or else the profile field it came from. */
  const field = (vars: readonly string[], tomlKey: string): string =>
    vars.find((v) => set(env, v)) ??
    (useFile ? `${tomlKey} of [profile.${profileLabel}] in ${configFile}` : vars[0]!);

  // envconfig applies the TEMPORAL_* variables over the profile. TEMPORAL_TLS is read here instead,
  // strictly (`yes` is an error, not false); envconfig before 1.24 also inverted it (sdk-typescript#2271).
  const libEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith('TEMPORAL_') || v === undefined) continue;
    if (['TEMPORAL_TLS', 'TEMPORAL_PROFILE', 'TEMPORAL_CONFIG_FILE'].includes(k)) continue;
    if (v.trim() === '' && !k.startsWith('TEMPORAL_GRPC_META_')) continue;
    libEnv[k] = k.startsWith('TEMPORAL_GRPC_META_') || k === 'TEMPORAL_API_KEY' ? v : v.trim();
  }
  let profile: ClientConfigProfile = {};
  try {
    profile = loadClientConfigProfile({
      ...(useFile ? { configSource: { path: configFile! }, profile: profileLabel } : { disableFile: true }),
      overrideEnvVars: libEnv,
    });
  } catch (err) {
    issue(useFile ? fileVar : 'TEMPORAL_TLS_*', tomlProblem(err));
  }

  // Address and namespace.
  const address = profile.address?.trim() || undefined;
  const addressField = field(['TEMPORAL_ADDRESS'], 'address');
  if (address !== undefined) {
    const m = ADDRESS.exec(address);
    if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535)
      issue(
        addressField,
        /^[a-z]+:\/\//i.test(address)
          ? 'host:port without a scheme, e.g. my-namespace.a1b2c.tmprl.cloud:7233'
          : 'must be host:port, e.g. temporal.internal:7233',
      );
  }
  const namespace = profile.namespace?.trim() || 'default';
  if (namespace.length > 255 || /\s/.test(namespace) || hasControl(namespace))
    issue(
      field(['TEMPORAL_NAMESPACE'], 'namespace'),
      'a namespace name: no whitespace, at most 255 characters',
    );

  // The API key: a bearer token (Temporal Cloud); its value never enters a message.
  const apiKey = profile.apiKey;
  const apiKeyField = field(['TEMPORAL_API_KEY'], 'api_key');
  if (apiKey !== undefined && (apiKey === '' || /\s/.test(apiKey) || hasControl(apiKey)))
    issue(apiKeyField, 'contains whitespace or control characters (a trailing newline?); give the key alone');

  // Extra gRPC headers; values may be credentials too.
  const metadata =
    profile.grpcMeta && Object.keys(profile.grpcMeta).length ? { ...profile.grpcMeta } : undefined;
  if (metadata && apiKey !== undefined && 'authorization' in metadata)
    issue(
      'TEMPORAL_GRPC_META_AUTHORIZATION',
      'conflicts with TEMPORAL_API_KEY (both set the authorization header)',
    );

  // TLS: on when asked for, when any TLS setting is given, or with an API key (Temporal Cloud requires it).
  const tlsVar = envBool(env, 'TEMPORAL_TLS');
  if (tlsVar === null) issue('TEMPORAL_TLS', 'must be true or false (also 1 or 0)');
  const t = profile.tls ?? {};
  const material = {
    serverCa: {
      src: t.serverCACert,
      field: field(
        ['TEMPORAL_TLS_SERVER_CA_CERT_PATH', 'TEMPORAL_TLS_SERVER_CA_CERT_DATA'],
        t.serverCACert && 'data' in t.serverCACert ? 'tls.server_ca_cert_data' : 'tls.server_ca_cert_path',
      ),
    },
    clientCert: {
      src: t.clientCert,
      field: field(
        ['TEMPORAL_TLS_CLIENT_CERT_PATH', 'TEMPORAL_TLS_CLIENT_CERT_DATA'],
        t.clientCert && 'data' in t.clientCert ? 'tls.client_cert_data' : 'tls.client_cert_path',
      ),
    },
    clientKey: {
      src: t.clientKey,
      field: field(
        ['TEMPORAL_TLS_CLIENT_KEY_PATH', 'TEMPORAL_TLS_CLIENT_KEY_DATA'],
        t.clientKey && 'data' in t.clientKey ? 'tls.client_key_data' : 'tls.client_key_path',
      ),
    },
  };
  const serverName = t.serverName?.trim() || undefined;
  const serverNameField = field(['TEMPORAL_TLS_SERVER_NAME'], 'tls.server_name');
  const tlsSettingGiven =
    material.serverCa.src !== undefined ||
    material.clientCert.src !== undefined ||
    material.clientKey.src !== undefined ||
    serverName !== undefined;
  const fileDisabled = t.disabled === true;
  const tlsOn =
    tlsVar === true || tlsVar === false
      ? tlsVar
      : fileDisabled
        ? false
        : tlsSettingGiven || t.disabled === false || apiKey !== undefined;
  const offBecause =
    tlsVar === false
      ? 'TEMPORAL_TLS=false'
      : `tls.disabled = true of [profile.${profileLabel}] in ${configFile}`;

  const hostVerification = envBool(env, 'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION');
  if (hostVerification === null)
    issue('TEMPORAL_TLS_DISABLE_HOST_VERIFICATION', 'must be true or false (also 1 or 0)');
  else if (hostVerification === true)
    issue(
      'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION',
      "not supported by Temporal's TypeScript SDK: set TEMPORAL_TLS_SERVER_NAME to a name the server's certificate holds instead",
    );

  let tls: TLSConfig | undefined;
  let clientCertificate: string | undefined;
  if (!tlsOn) {
    if (apiKey !== undefined)
      issue(
        apiKeyField,
        `would be sent in clear text: TLS is off (${offBecause}); Temporal Cloud requires TLS`,
      );
    for (const m of Object.values(material))
      if (m.src !== undefined) issue(m.field, `set, but TLS is off (${offBecause})`);
    if (serverName !== undefined) issue(serverNameField, `set, but TLS is off (${offBecause})`);
  } else {
    const read = (m: { src: ConfigDataSource | undefined; field: string }): Buffer | undefined => {
      if (m.src === undefined) return undefined;
      if ('data' in m.src) return Buffer.from(m.src.data);
      try {
        return readFileSync(m.src.path);
      } catch (err) {
        issue(m.field, `cannot read ${m.src.path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        return undefined;
      }
    };
    const pem = (buf: Buffer, what: RegExp) => what.test(buf.toString('latin1'));
    const ca = read(material.serverCa);
    if (ca && (!pem(ca, /-----BEGIN CERTIFICATE-----/) || !parseCert(ca)))
      issue(material.serverCa.field, 'not a PEM certificate (-----BEGIN CERTIFICATE-----)');
    const crt = read(material.clientCert);
    const key = read(material.clientKey);
    if (material.clientKey.src !== undefined && material.clientCert.src === undefined)
      issue(material.clientCert.field, `required with ${material.clientKey.field} (mutual TLS needs both)`);
    if (material.clientCert.src !== undefined && material.clientKey.src === undefined)
      issue(material.clientKey.field, `required with ${material.clientCert.field} (mutual TLS needs both)`);
    let cert: X509Certificate | undefined;
    let privateKey: KeyObject | undefined;
    if (crt) {
      cert = pem(crt, /-----BEGIN CERTIFICATE-----/) ? parseCert(crt) : undefined;
      if (!cert) issue(material.clientCert.field, 'not a PEM certificate (-----BEGIN CERTIFICATE-----)');
      else if (Date.parse(cert.validTo) < Date.now())
        issue(material.clientCert.field, `the certificate expired on ${cert.validTo}`);
    }
    if (key) {
      try {
        if (!pem(key, /-----BEGIN [A-Z ]*PRIVATE KEY-----/)) throw new Error('not PEM');
        privateKey = createPrivateKey(key);
      } catch {
        // The key's bytes and the parser's detail stay out of the message.
        issue(material.clientKey.field, 'not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)');
      }
    }
    if (cert && privateKey && !cert.checkPrivateKey(privateKey))
      issue(material.clientKey.field, `does not belong to the certificate of ${material.clientCert.field}`);
    clientCertificate = cert?.subject.replace(/\n/g, ', ');
    tls = {
      ...(serverName ? { serverNameOverride: serverName } : {}),
      ...(ca ? { serverRootCACertificate: ca } : {}),
      ...(crt && key ? { clientCertPair: { crt, key } } : {}),
    };
  }

  if (address === undefined && (apiKey !== undefined || tlsOn))
    issue(
      addressField,
      `required with ${apiKey !== undefined ? apiKeyField : 'TLS settings'} (otherwise npm start would run a local dev server and ignore them)`,
    );

  if (issues.length) throw new TemporalSettingsError(issues);

  const resolved: TemporalConnection = {
    address,
    namespace,
    tls: !tlsOn ? 'off' : tls?.clientCertPair ? 'mtls' : 'tls',
    serverCa: !tlsOn ? undefined : tls?.serverRootCACertificate ? 'pinned' : 'system',
    serverName,
    clientCertificate,
    apiKey: apiKey !== undefined ? 'set' : undefined,
    grpcMeta: Object.freeze(Object.keys(metadata ?? {})),
    profile: useFile ? profileLabel : undefined,
    configFile: useFile ? configFile : undefined,
    connectOptions: () => ({
      address: address ?? DEFAULT_TEMPORAL_ADDRESS,
      ...(tls ? { tls: { ...tls } } : {}),
      ...(apiKey !== undefined ? { apiKey } : {}),
      ...(metadata ? { metadata: { ...metadata } } : {}),
    }),
  };
  return Object.freeze(resolved);
}

function parseCert(buf: Buffer): X509Certificate | undefined {
  try {
    return new X509Certificate(buf);
  } catch {
    return undefined;
  }
}

/**
 * A failed connect explained: where to, with which settings, and the likely fix. The cause's text is
 * kept (the SDK's, which names no secret) and any API key in it is masked all the same.
 */
export function explainConnectError(err: unknown, conn: TemporalConnection): Error {
  let cause = err instanceof Error ? err.message : String(err);
  const { apiKey } = conn.connectOptions();
  if (apiKey) cause = cause.split(apiKey).join('[redacted]');
  const hints: string[] = [];
  if (conn.tls === 'off') {
    if (/tls|ssl|handshake|wrong version|protocol|frame|reset|eof|h2|http2/i.test(cause))
      hints.push(
        'if the server expects TLS, set TEMPORAL_TLS=true (and TEMPORAL_TLS_SERVER_CA_CERT_PATH for a private CA)',
      );
  } else {
    if (/certificate.?required|alert.?116|CertificateRequired|handshake failure|bad certificate/i.test(cause))
      hints.push(
        conn.tls === 'mtls'
          ? 'the server refused the client certificate (TEMPORAL_TLS_CLIENT_CERT_PATH): is it signed by a CA the server trusts?'
          : 'the server asks for a client certificate (mutual TLS): set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH',
      );
    if (
      /UnknownIssuer|unable to (verify|get local issuer)|self.signed|certificate verify failed|invalid peer certificate|not trusted/i.test(
        cause,
      )
    )
      hints.push(
        "the server's certificate is not trusted: set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the CA that signed it",
      );
    if (/NotValidForName|altnames|hostname|does not match/i.test(cause))
      hints.push(
        "the server's certificate is for another name: set TEMPORAL_TLS_SERVER_NAME to a name it holds",
      );
  }
  // grpc-js reports a refused handshake as a missed deadline, without the TLS detail: name what to check.
  if (conn.tls !== 'off' && !hints.length && /deadline|UNAVAILABLE|transport error|connect/i.test(cause)) {
    if (conn.serverCa === 'system')
      hints.push(
        "if the server's certificate is from a private CA, set TEMPORAL_TLS_SERVER_CA_CERT_PATH to it",
      );
    if (conn.tls !== 'mtls')
      hints.push(
        'if the server requires mutual TLS, set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH',
      );
    else hints.push('check that the server trusts the CA of TEMPORAL_TLS_CLIENT_CERT_PATH');
  }
  if (/UNAUTHENTICATED|PERMISSION_DENIED|Unauthenticated|PermissionDenied|Request unauthorized/i.test(cause))
    hints.push(
      'the server refused the credentials: check TEMPORAL_API_KEY or the client certificate, and TEMPORAL_NAMESPACE',
    );
  const how = [
    `TLS ${conn.tls}`,
    conn.tls !== 'off' ? `server CA ${conn.serverCa}` : undefined,
    `API key ${conn.apiKey ?? 'none'}`,
    conn.profile ? `profile ${conn.profile}` : undefined,
  ]
    .filter(Boolean)
    .join(', ');
  const e = new Error(
    `cannot connect to Temporal at ${conn.address ?? DEFAULT_TEMPORAL_ADDRESS} (namespace ${conn.namespace}; ${how}): ${cause}${hints.length ? `\n  ${hints.join('\n  ')}` : ''}`,
  );
  e.name = 'TemporalConnectError';
  return e;
}

/** The connection's settings for a log line: where, how, and whether a key is set; no secret. */
export function describeTemporalConnection(conn: TemporalConnection): Record<string, unknown> {
  const { connectOptions: _secrets, ...safe } = conn;
  return Object.fromEntries(Object.entries(safe).filter(([, v]) => v !== undefined));
}

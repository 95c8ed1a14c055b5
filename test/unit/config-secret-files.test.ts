/** `<VAR>_FILE`: secrets read from files (Docker and Kubernetes secrets), lib/config.ts withSecretFiles. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, SECRET_FILE_VARS, withSecretFiles } from '../../lib/config';

const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-secret-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function secretFile(name: string, content: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

const serverKey = randomBytes(32).toString('base64');
const webhookSecret = `whsec_${randomBytes(24).toString('base64')}`;

describe('<VAR>_FILE', () => {
  it('reads each secret variable from the file it names, without the trailing newline', () => {
    const c = loadConfig({
      KILLSWITCH_SERVER_KEY_FILE: secretFile('server_key', `${serverKey}\n`),
      GENERIC_WEBHOOK_SECRETS_FILE: secretFile('webhook_secrets', `${webhookSecret}\n`),
      DATABASE_URL_FILE: secretFile('database_url', 'postgres://ks:pw@db:5432/ks\r\n'),
      CODEC_TOKENS_FILE: secretFile('codec_tokens', 'a'.repeat(32) + '\n' + 'b'.repeat(32) + '\n'),
      METRICS_TOKEN_FILE: secretFile('metrics_token', 'm'.repeat(30)),
      TEMPORAL_ADDRESS: 'temporal.example.com:7233',
      TEMPORAL_API_KEY_FILE: secretFile('temporal_api_key', 'api-key-123\n'),
    });
    expect(c.serverKey).toBe(serverKey);
    expect(c.webhook.genericSecrets).toEqual([webhookSecret]);
    expect(c.databaseUrl).toBe('postgres://ks:pw@db:5432/ks');
    expect(c.codec.tokens).toEqual(['a'.repeat(32), 'b'.repeat(32)]);
    expect(c.observability.metricsToken).toBe('m'.repeat(30));
    expect(c.temporal.connection.apiKey).toBe('set');
    expect(c.temporal.connection.connectOptions().apiKey).toBe('api-key-123');
  });

  it('treats an empty file as an unset variable, like an empty variable', () => {
    const c = loadConfig({ SLACK_BOT_TOKEN_FILE: secretFile('empty', '\n') });
    expect(c.slack.token).toBeUndefined();
  });

  it('names the variable and the path when the file cannot be read, never any content', () => {
    const missing = path.join(dir, 'nope');
    expect(() => loadConfig({ KILLSWITCH_SERVER_KEY_FILE: missing })).toThrow(ConfigError);
    expect(() => loadConfig({ KILLSWITCH_SERVER_KEY_FILE: missing })).toThrow(
      `KILLSWITCH_SERVER_KEY_FILE: cannot read ${missing} (ENOENT)`,
    );
    expect(() => loadConfig({ DATABASE_URL_FILE: dir })).toThrow(
      /DATABASE_URL_FILE: cannot read .* \(EISDIR\)/,
    );
  });

  it('refuses a variable set both ways, without printing either value', () => {
    const file = secretFile('server_key_2', serverKey);
    let message = '';
    try {
      loadConfig({ KILLSWITCH_SERVER_KEY: serverKey, KILLSWITCH_SERVER_KEY_FILE: file });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain(
      'KILLSWITCH_SERVER_KEY_FILE: set either KILLSWITCH_SERVER_KEY or KILLSWITCH_SERVER_KEY_FILE, not both',
    );
    expect(message).not.toContain(serverKey);
  });

  it('a bad value read from a file is reported under the variable, not echoed', () => {
    const bad = 'not-a-whsec-secret-value';
    let message = '';
    try {
      loadConfig({ GENERIC_WEBHOOK_SECRETS_FILE: secretFile('bad_whsec', bad) });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/GENERIC_WEBHOOK_SECRETS\[0\]/);
    expect(message).not.toContain(bad);
  });

  it('applies to the secret variables only (INVENTORY_FILE is a path, not a secret) and leaves the input alone', () => {
    const env = { INVENTORY_FILE: secretFile('inventory.yaml', 'systems: []\n'), PORT: '3001' };
    const out = withSecretFiles(env);
    expect(out).toEqual(env);
    expect(out).not.toHaveProperty('INVENTORY');
    const input = { KILLSWITCH_SERVER_KEY_FILE: secretFile('server_key_3', serverKey) };
    expect(withSecretFiles(input).KILLSWITCH_SERVER_KEY).toBe(serverKey);
    expect(input).not.toHaveProperty('KILLSWITCH_SERVER_KEY');
    expect(SECRET_FILE_VARS).toEqual(
      expect.arrayContaining([
        'KILLSWITCH_SERVER_KEY',
        'DATABASE_URL',
        'GENERIC_WEBHOOK_SECRETS',
        'TEMPORAL_API_KEY',
      ]),
    );
  });
});

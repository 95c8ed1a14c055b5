import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseByteSize } from '../../lib/config';

describe('loadConfig', () => {
  it('runs on embedded defaults when nothing is set', () => {
    const c = loadConfig({});
    expect(c.port).toBe(3000);
    expect(c.temporal).toMatchObject({
      address: undefined,
      namespace: 'default',
      taskQueue: 'kill-switch',
      uiUrl: 'http://127.0.0.1:8233',
      devPort: 7233,
      devUiPort: 8233,
    });
    expect(c.databaseUrl).toBeUndefined();
    expect(c.webhook.bodyLimitBytes).toBe(1024 * 1024);
    expect(c.slack).toMatchObject({ token: undefined, apiUrl: 'https://slack.com/api/' });
    expect(c.pagerduty.eventsUrl).toBe('https://events.pagerduty.com');
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ GENERIC_WEBHOOK_SECRETS: 'not-a-whsec' }, 'GENERIC_WEBHOOK_SECRETS'],
    [{ KILLSWITCH_SERVER_KEY: 'c2hvcnQ=' }, 'KILLSWITCH_SERVER_KEY'],
    [{ WEBHOOK_BODY_LIMIT: 'lots' }, 'WEBHOOK_BODY_LIMIT'],
    [{ TEMPORAL_UI_URL: 'ftp://ui' }, 'TEMPORAL_UI_URL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ SLACK_BOT_TOKEN: 'xoxb-1' }, 'SLACK_CHANNEL'],
    [{ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_CHANNEL: '#sec' }, 'SLACK_SIGNING_SECRET'],
    [{ SLACK_SIGNING_SECRET: 'not a secret!' }, 'SLACK_SIGNING_SECRET'],
    [{ SLACK_DIGEST_AFTER: 'sometimes' }, 'SLACK_DIGEST_AFTER'],
    [{ SLACK_DIGEST_AFTER: '0' }, 'SLACK_DIGEST_AFTER'],
    [{ SLACK_DIGEST_UPDATE_INTERVAL: '3 seconds' }, 'SLACK_DIGEST_UPDATE_INTERVAL'],
    [{ SLACK_DIGEST_UPDATE_INTERVAL: '100ms' }, 'SLACK_DIGEST_UPDATE_INTERVAL'],
    [{ SLACK_DIGEST_WINDOW: '2d' }, 'SLACK_DIGEST_WINDOW'],
  ])('names the bad variable: %o', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(new RegExp(`\\b${name}(\\[\\d+\\])?:`));
  });

  it('accepts several webhook secrets, comma or space separated', () => {
    const a = 'whsec_' + Buffer.alloc(24, 1).toString('base64');
    const b = 'whsec_' + Buffer.alloc(24, 2).toString('base64');
    expect(loadConfig({ GENERIC_WEBHOOK_SECRETS: `${a}, ${b}` }).webhook.genericSecrets).toEqual([a, b]);
    expect(loadConfig({ GENERIC_WEBHOOK_SECRETS: `${a} ${b}` }).webhook.genericSecrets).toEqual([a, b]);
  });

  it('burst digests: on by default, tunable, and off with SLACK_DIGEST_AFTER=off', () => {
    expect(loadConfig({}).slack.digest).toEqual({ after: 10, updateIntervalMs: 3000, windowMs: 600_000 });
    expect(
      loadConfig({
        SLACK_DIGEST_AFTER: '3',
        SLACK_DIGEST_UPDATE_INTERVAL: '500ms',
        SLACK_DIGEST_WINDOW: '1h',
      }).slack.digest,
    ).toEqual({
      after: 3,
      updateIntervalMs: 500,
      windowMs: 3_600_000,
    });
    expect(loadConfig({ SLACK_DIGEST_AFTER: 'off' }).slack.digest).toBeNull();
  });

  it('parses byte sizes', () => {
    expect(parseByteSize('1mb')).toBe(1048576);
    expect(parseByteSize('512kb')).toBe(524288);
    expect(parseByteSize('100')).toBe(100);
    expect(loadConfig({ WEBHOOK_BODY_LIMIT: '2mb' }).webhook.bodyLimitBytes).toBe(2 * 1048576);
  });
});

/**
 * Logs for people and machines: the format chosen (LOG_FORMAT, or a terminal), redaction in both
 * formats, and what the Temporal SDK's records become in pino (no task tokens, no webpack report
 * at info).
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../lib/config';
import { createLogger, resolveLogFormat } from '../../lib/logger';
import { forwardedRecord } from '../../lib/temporal-logging';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => lines.join('') };
}

const SECRET = 'hunter2-do-not-log-9f8e7d';

describe('log format', () => {
  it('is pretty on a terminal and JSON otherwise, unless LOG_FORMAT says', () => {
    expect(resolveLogFormat('auto', true)).toBe('pretty');
    expect(resolveLogFormat('auto', false)).toBe('json');
    expect(resolveLogFormat(undefined, true)).toBe('pretty');
    expect(resolveLogFormat('json', true)).toBe('json');
    expect(resolveLogFormat('pretty', false)).toBe('pretty');
  });

  it('LOG_FORMAT is validated, naming the variable', () => {
    expect(loadConfig({}).logFormat).toBe('auto');
    expect(loadConfig({ LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(() => loadConfig({ LOG_FORMAT: 'fancy' })).toThrow(ConfigError);
    expect(() => loadConfig({ LOG_FORMAT: 'fancy' })).toThrow(/LOG_FORMAT: must be auto, json or pretty/);
  });

  it('the health and metrics variables are validated, naming the variable', () => {
    expect(loadConfig({}).observability).toEqual({
      workerHealthPort: undefined,
      workerHealthHost: '0.0.0.0',
      metricsToken: undefined,
    });
    expect(loadConfig({ WORKER_HEALTH_PORT: '9464' }).observability.workerHealthPort).toBe(9464);
    expect(() => loadConfig({ WORKER_HEALTH_PORT: 'ninety' })).toThrow(/WORKER_HEALTH_PORT/);
    expect(() => loadConfig({ WORKER_HEALTH_PORT: '70000' })).toThrow(/WORKER_HEALTH_PORT/);
    expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN: must be at least 24/);
  });

  it('JSON: one object per line, secret-shaped fields redacted', () => {
    const out = capture();
    const log = createLogger({ level: 'info', destination: out.stream, format: 'json' });
    log.info({ password: SECRET, db: { connectionString: SECRET }, system: 'owned-db' }, 'rotated');
    const line = JSON.parse(out.text().trim());
    expect(line).toMatchObject({ msg: 'rotated', level: 30, system: 'owned-db', password: '[redacted]' });
    expect(line.db.connectionString).toBe('[redacted]');
    expect(out.text()).not.toContain(SECRET);
  });

  it('pretty: one compact line per record, not JSON, redaction holds', () => {
    const out = capture();
    const log = createLogger({ level: 'debug', destination: out.stream, format: 'pretty' });
    const child = log.child({ component: 'notifications' });
    child.info(
      { password: SECRET, req: { headers: { authorization: `Bearer ${SECRET}` } }, system: 'owned-db' },
      'rotated',
    );
    child.debug('a debug line');
    const text = out.text();
    expect(text).not.toContain(SECRET);
    expect(text).toContain('[redacted]');
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: \[notifications\] rotated /);
    expect(lines[0]).toContain('"system":"owned-db"');
    // Fields every line carries are left out of the compact line.
    expect(lines[0]).not.toMatch(/pid|hostname|secret-kill-switch/);
    expect(lines[1]).toMatch(/DEBUG: \[notifications\] a debug line$/);
    expect(() => JSON.parse(lines[0]!)).toThrow();
  });
});

describe("the Temporal SDK's records in pino", () => {
  it('drops the activity task token and keeps what says which task it was', () => {
    const taskToken = 'Cg'.repeat(100);
    const r = forwardedRecord({
      level: 'INFO',
      message: 'Activity completed',
      meta: { taskToken, activityId: '3', workflowId: 'killswitch-x', attempt: 1, sdkComponent: 'activity' },
    });
    expect(r).toEqual({
      level: 'info',
      message: 'Activity completed',
      meta: { activityId: '3', workflowId: 'killswitch-x', attempt: 1, sdkComponent: 'activity' },
    });
    expect(JSON.stringify(r)).not.toContain(taskToken);
  });

  it("webpack's multi-line bundle report goes to debug; one-line info stays info, warnings stay warnings", () => {
    const report = 'asset workflow-bundle-1a2b.js 1.2 MiB [emitted]\nruntime modules 2 KiB\nwebpack compiled';
    expect(forwardedRecord({ level: 'INFO', message: report, meta: {} }).level).toBe('debug');
    expect(forwardedRecord({ level: 'INFO', message: 'Workflow bundle created', meta: {} }).level).toBe(
      'info',
    );
    expect(forwardedRecord({ level: 'WARN', message: `a\nb`, meta: undefined }).level).toBe('warn');
  });
});

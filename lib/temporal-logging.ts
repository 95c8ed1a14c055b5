/**
 * The Temporal SDK's runtime, installed once per process: its own logs (worker, workflow `log`,
 * activity `log`) forwarded into pino, and, when the process serves /metrics, its worker metrics
 * (Prometheus) on an internal loopback port whose text lib/metrics.ts appends to every scrape.
 */
import { DefaultLogger, Runtime, type LogEntry, type LogLevel } from '@temporalio/worker';
import type { Logger } from './logger';
import { setSdkMetricsUrl } from './metrics';

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

let installed = false;

/**
 * A record of the SDK as pino gets it. The activity task token (an opaque ~200-character base64
 * string on every activity log line) is dropped: the workflow id, activity id and attempt say which
 * task it was. A multi-line message at info is webpack's report of a bundle built at start: debug.
 */
export function forwardedRecord(entry: Pick<LogEntry, 'level' | 'message' | 'meta'>): {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  meta: Record<string, unknown>;
  message: string;
} {
  const { taskToken: _taskToken, ...meta } = (entry.meta ?? {}) as Record<string, unknown>;
  const level = LEVELS[entry.level];
  return {
    level: level === 'info' && entry.message.includes('\n') ? 'debug' : level,
    meta,
    message: entry.message,
  };
}

export function installTemporalLogging(
  logger: Logger,
  opts: {
    /**
     * A free loopback port for the SDK's Prometheus exporter (worker metrics: slots, pollers, task
     * latencies), served through this process's /metrics; unset: no SDK metrics.
     */
    sdkMetricsPort?: number;
  } = {},
): void {
  if (installed) return;
  installed = true;
  const temporalLogger = logger.child({ component: 'temporal' });
  // The SDK filters before pino sees anything: its level follows the logger's (LOG_LEVEL), so debug
  // lines of activities and workflows appear when asked for and cost nothing otherwise.
  const level: LogLevel =
    ({ trace: 'TRACE', debug: 'DEBUG', info: 'INFO', warn: 'WARN' } as Record<string, LogLevel>)[
      logger.level
    ] ??
    (logger.level === 'silent'
      ? 'ERROR'
      : logger.level === 'error' || logger.level === 'fatal'
        ? 'ERROR'
        : 'INFO');
  const bindAddress = opts.sdkMetricsPort !== undefined ? `127.0.0.1:${opts.sdkMetricsPort}` : undefined;
  Runtime.install({
    logger: new DefaultLogger(level, (entry) => {
      const r = forwardedRecord(entry);
      temporalLogger[r.level](r.meta, r.message);
    }),
    ...(bindAddress
      ? {
          telemetryOptions: {
            metrics: {
              prometheus: {
                bindAddress,
                // Prometheus conventions: counters end in _total, durations are seconds with the unit in the name.
                countersTotalSuffix: true,
                unitSuffix: true,
                useSecondsForDurations: true,
              },
            },
          },
        }
      : {}),
  });
  if (bindAddress) setSdkMetricsUrl(`http://${bindAddress}/metrics`);
}

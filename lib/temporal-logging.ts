/** Forwards the Temporal SDK's own logs (worker, workflow `log`, activity `log`) into pino. */
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import type { Logger } from './logger';

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

let installed = false;

export function installTemporalLogging(logger: Logger): void {
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
  Runtime.install({
    logger: new DefaultLogger(level, (entry) => {
      const { message, meta } = entry;
      temporalLogger[LEVELS[entry.level]]({ ...(meta ?? {}) }, message);
    }),
  });
}

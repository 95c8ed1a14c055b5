/**
 * Structured logging with pino. Redaction covers every field name a secret could travel under,
 * as a second line of defence: the first is that secret values never reach a logger at all.
 *
 * Two formats of the same records: JSON lines for machines (the default when stdout is not a
 * terminal, or LOG_FORMAT=json) and one compact, coloured line per record for people (pino-pretty,
 * the default on a terminal, or LOG_FORMAT=pretty). Redaction happens in pino before either format
 * sees a record, so it holds in both.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };

/** LOG_FORMAT: `auto` is pretty on a terminal, JSON otherwise. */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export const REDACT_PATHS = [
  'secret',
  'password',
  'token',
  'authorization',
  '*.secret',
  '*.password',
  '*.token',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["webhook-signature"]',
  'req.headers["x-hub-signature-256"]',
  'routing_key',
  '*.routing_key',
  'connectionString',
  '*.connectionString',
];

/** The format a logger writes: `auto` is pretty when its output is a terminal. */
export function resolveLogFormat(format: LogFormat | undefined, isTty: boolean): 'json' | 'pretty' {
  if (format === 'json' || format === 'pretty') return format;
  return isTty ? 'pretty' : 'json';
}

/**
 * One line per record for people: time, level, the component (or the process's name) and the
 * message, then the record's other fields on the same line. Fields every line carries are left out.
 */
function prettyStream(destination: DestinationStream | undefined, colorize: boolean): DestinationStream {
  return PinoPretty({
    colorize,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,service,name,component',
    messageFormat: '{if component}[{component}] {end}{msg}',
    // Written synchronously, like pino's own destination: nothing is lost on process.exit.
    sync: true,
    ...(destination ? { destination: destination as NodeJS.WritableStream } : {}),
  });
}

export function createLogger(opts: {
  level: string;
  name?: string;
  destination?: DestinationStream;
  /** LOG_FORMAT; unset: `auto` (pretty when the output is a terminal). */
  format?: LogFormat;
}): Logger {
  const isTty = opts.destination === undefined && process.stdout.isTTY === true;
  const format = resolveLogFormat(opts.format, isTty);
  return pino(
    {
      name: opts.name ?? 'kill-switch',
      level: opts.level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { service: 'secret-kill-switch' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    format === 'pretty' ? prettyStream(opts.destination, isTty) : opts.destination,
  );
}

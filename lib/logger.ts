/**
 * Structured logging with pino. Redaction covers every field name a secret could travel under,
 * as a second line of defence: the first is that secret values never reach a logger at all.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

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

export function createLogger(opts: {
  level: string;
  name?: string;
  destination?: DestinationStream;
}): Logger {
  return pino(
    {
      name: opts.name ?? 'kill-switch',
      level: opts.level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { service: 'secret-kill-switch' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination,
  );
}

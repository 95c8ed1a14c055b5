/**
 * Every outbound format and how it is delivered: HTTP bodies (Formatters, POSTed by the shared HTTP
 * transport; `json` is built in, activities/outbound/http.ts) and Transports that own their delivery
 * (syslog, e-mail, jira). A new format is one file plus one line here.
 */
import type { EventFormat } from '../../contracts/events';
import type { Db } from '../../lib/db';
import { FORMATTERS } from './formats';
import { emailTransport } from './transports/email';
import { jiraTransport } from './transports/jira';
import { syslogTransport } from './transports/syslog';
import type { Formatter, Transport } from './types';

export const OUTBOUND_FORMATTERS: Partial<Record<EventFormat, Formatter>> = FORMATTERS;

/** The transports of one worker (they may hold connections: created once, closed with the worker). */
export function outboundTransports(
  env: Readonly<Record<string, string | undefined>>,
  db: Pick<Db, 'query'>,
): Partial<Record<EventFormat, Transport>> {
  return { syslog: syslogTransport(), email: emailTransport({ env }), jira: jiraTransport({ db }) };
}

/**
 * The `syslog` destination: one RFC 5424 message per event, over UDP (RFC 5426), TCP or TLS
 * (RFC 5425; both with RFC 6587 octet-counting framing, `LEN SP MSG`).
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [killswitch@32473 type="…" …] MSG
 *
 * PRI is the facility (`options.facility`, default authpriv) times 8 plus the severity of the
 * event's level (failure err, warning warning, success notice, info info). MSGID is the event type;
 * the structured data carries the event's identifiers (never a secret: the envelope holds none),
 * escaped per RFC 5424 §6.3.3; MSG is the summary, or a CEF line with `options.payload: 'cef'`.
 *
 * One connection per subscription is kept open and reused (`close()` ends them); a connection the
 * receiver closed or that failed is replaced on the next delivery. Connection errors and timeouts
 * are retryable; a configuration that cannot work is not. UDP has no acknowledgement: an ICMP
 * "port unreachable" arriving shortly after the datagram is reported, anything later is not seen.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { z } from 'zod';
import { EVENT_LEVELS, type EventLevel, type KillSwitchEvent } from '../../../contracts/events';
import { cefLine, cefOptions } from '../formats/cef';
import type { DeliveryResult, OutboundSubscription, Transport } from '../types';

/** RFC 5424 §6.2.1 facility codes. */
export const SYSLOG_FACILITIES = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  ntp: 12,
  audit: 13,
  alert: 14,
  clock: 15,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;
export type SyslogFacility = keyof typeof SYSLOG_FACILITIES;

/** RFC 5424 §6.2.1 severities of the event levels. */
export const SYSLOG_SEVERITY: Record<EventLevel, number> = { failure: 3, warning: 4, success: 5, info: 6 };

export const DEFAULT_SD_ID = 'killswitch@32473';

/** An SD-NAME (§6.3.2): 1 to 32 printable US-ASCII characters except `=`, space, `]` and `"`. */
const sdName = /^[!#-<>-\\^-~]{1,32}$/;

export const syslogConnectionSchema = z.object({
  protocol: z.enum(['udp', 'tcp', 'tls']),
  host: z.string().min(1).max(255),
  port: z.coerce.number().int().min(1).max(65535),
  /** tls: the PEM of the CA (or the self-signed certificate) to trust instead of the public roots. */
  ca: z.string().max(100_000).optional(),
  /** tls: false accepts any certificate (a lab only). */
  rejectUnauthorized: z.boolean().optional(),
});
export type SyslogConnection = z.infer<typeof syslogConnectionSchema>;

export const syslogOptionsSchema = z.object({
  facility: z
    .union([
      z.enum(Object.keys(SYSLOG_FACILITIES) as [SyslogFacility, ...SyslogFacility[]]),
      z.number().int().min(0).max(23),
    ])
    .default('authpriv'),
  appName: z
    .string()
    .regex(/^[!-~]{1,48}$/)
    .default('killswitch'),
  /** HOSTNAME of the messages; default this machine's name. */
  hostname: z
    .string()
    .regex(/^[!-~]{1,255}$/)
    .optional(),
  /** The SD-ID of the structured data element (`name@<private enterprise number>`). */
  sdId: z
    .string()
    .regex(sdName)
    .refine((s) => /^[^@]+@\d+(\.\d+)*$/.test(s), 'an SD-ID of the form name@enterprise-number')
    .default(DEFAULT_SD_ID),
  /** MSG: the event's summary, or its CEF line (`cefVendor`/`cefProduct` options apply). */
  payload: z.enum(['summary', 'cef']).default('summary'),
});
export type SyslogOptions = z.infer<typeof syslogOptionsSchema>;

/** §6.3.3: `"`, `\` and `]` escaped with a backslash; control characters flattened to spaces. */
export function sdParamEscape(value: string): string {
  return flatten(value).replace(/["\\\]]/g, '\\$&');
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/g;
function flatten(s: string): string {
  return s.replace(CONTROL, ' ');
}

/** HOSTNAME, APP-NAME, PROCID and MSGID: printable US-ASCII, bounded, `-` when empty. */
function headerField(s: string | undefined, max: number): string {
  const v = (s ?? '').replace(/[^!-~]/g, '_').slice(0, max);
  return v === '' ? '-' : v;
}

/** The structured data element of an event: its identifiers, absent ones left out. */
export function structuredData(event: KillSwitchEvent, sdId = DEFAULT_SD_ID): string {
  const d = event.data;
  const params: [string, string | undefined][] = [
    ['type', event.type],
    ['id', event.id],
    ['workflowId', event.run?.workflowId],
    ['runId', event.run?.runId],
    ['credentialType', d.credential?.type],
    ['owningSystem', d.owner?.system ?? d.breaker?.system],
    ['outcome', d.outcome],
    ['step', d.step ?? d.failure?.step],
    ['fingerprint', d.credential?.fingerprint],
  ];
  const body = params
    .filter((p): p is [string, string] => p[1] !== undefined && p[1] !== '')
    .map(([k, v]) => `${k}="${sdParamEscape(v)}"`)
    .join(' ');
  return `[${sdId} ${body}]`;
}

/** The RFC 5424 message of an event (without framing). */
export function syslogMessage(
  event: KillSwitchEvent,
  sub: Pick<OutboundSubscription, 'options'>,
  opts: SyslogOptions = syslogOptionsSchema.parse({}),
  env: { hostname?: string; pid?: number; now?: Date } = {},
): string {
  const facility = typeof opts.facility === 'number' ? opts.facility : SYSLOG_FACILITIES[opts.facility];
  const pri = facility * 8 + SYSLOG_SEVERITY[EVENT_LEVELS[event.type]];
  const at = Date.parse(event.occurredAt);
  const timestamp = (Number.isFinite(at) ? new Date(at) : (env.now ?? new Date())).toISOString();
  const msg = opts.payload === 'cef' ? cefLine(event, cefOptions(sub.options)) : flatten(event.summary);
  return [
    `<${pri}>1`,
    timestamp,
    headerField(opts.hostname ?? env.hostname ?? os.hostname(), 255),
    headerField(opts.appName, 48),
    headerField(String(env.pid ?? process.pid), 128),
    headerField(event.type, 32),
    structuredData(event, opts.sdId),
    msg,
  ].join(' ');
}

/** RFC 6587 §3.4.1 octet counting: the length in bytes, a space, the message. */
export function octetCounted(message: string): Buffer {
  const bytes = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length} `, 'ascii'), bytes]);
}

/** A failure whose text is short and safe to record. */
class SendError extends Error {}

interface Channel {
  readonly alive: boolean;
  send(frame: Buffer, timeoutMs: number, signal: AbortSignal): Promise<void>;
  close(): void;
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (err instanceof SendError) return e.message;
  return (e?.code ?? e?.message ?? 'error').slice(0, 120);
}

/** Runs `fn` until it settles, the timeout passes or the signal aborts (then `onGiveUp`). */
function bounded<T>(
  what: string,
  timeoutMs: number,
  signal: AbortSignal,
  onGiveUp: () => void,
  fn: (resolve: (v: T) => void, reject: (e: unknown) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (f: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      f();
    };
    const giveUp = (why: string) =>
      finish(() => {
        onGiveUp();
        reject(new SendError(why));
      });
    const onAbort = () => giveUp(`${what} aborted`);
    const timer = setTimeout(() => giveUp(`${what} timed out after ${timeoutMs} ms`), timeoutMs);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    fn(
      (v) => finish(() => resolve(v)),
      (e) => finish(() => reject(e)),
    );
  });
}

class StreamChannel implements Channel {
  private broken = false;
  constructor(private readonly socket: net.Socket) {
    // A receiver never answers; whatever it sends is dropped. Closing or failing ends the channel.
    socket.resume();
    socket.on('error', () => (this.broken = true));
    socket.on('end', () => (this.broken = true));
    socket.on('close', () => (this.broken = true));
  }
  get alive(): boolean {
    return !this.broken && !this.socket.destroyed && this.socket.writable;
  }
  static open(c: SyslogConnection, timeoutMs: number, signal: AbortSignal): Promise<StreamChannel> {
    const socket =
      c.protocol === 'tls'
        ? tls.connect({
            host: c.host,
            port: c.port,
            ...(c.ca ? { ca: c.ca } : {}),
            rejectUnauthorized: c.rejectUnauthorized ?? true,
            ...(net.isIP(c.host) ? {} : { servername: c.host }),
          })
        : net.connect({ host: c.host, port: c.port });
    return bounded<StreamChannel>(
      'connect',
      timeoutMs,
      signal,
      () => socket.destroy(),
      (resolve, reject) => {
        const onError = (err: Error) => {
          socket.destroy();
          reject(err);
        };
        socket.once('error', onError);
        socket.once(c.protocol === 'tls' ? 'secureConnect' : 'connect', () => {
          socket.off('error', onError);
          socket.setNoDelay(true);
          socket.setKeepAlive(true, 30_000);
          resolve(new StreamChannel(socket));
        });
      },
    );
  }
  send(frame: Buffer, timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (!this.alive) return Promise.reject(new SendError('connection closed'));
    return bounded<void>(
      'send',
      timeoutMs,
      signal,
      () => this.close(),
      (resolve, reject) =>
        this.socket.write(frame, (err) => {
          if (err) {
            this.close();
            reject(err);
          } else resolve();
        }),
    );
  }
  close(): void {
    this.broken = true;
    this.socket.destroy();
  }
}

class DatagramChannel implements Channel {
  private error: Error | undefined;
  private closed = false;
  private constructor(
    private readonly socket: dgram.Socket,
    private readonly errorWaitMs: number,
  ) {
    // ICMP errors of a connected socket arrive as 'error' events (ECONNREFUSED).
    socket.on('error', (err) => (this.error = err));
  }
  get alive(): boolean {
    return !this.closed && !this.error;
  }
  static async open(
    c: SyslogConnection,
    timeoutMs: number,
    signal: AbortSignal,
    errorWaitMs: number,
  ): Promise<DatagramChannel> {
    const address = net.isIP(c.host) ? c.host : (await lookup(c.host)).address;
    const socket = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
    return bounded<DatagramChannel>(
      'connect',
      timeoutMs,
      signal,
      () => socket.close(),
      (resolve, reject) => {
        const onError = (err: Error) => {
          socket.close();
          reject(err);
        };
        socket.once('error', onError);
        socket.connect(c.port, address, () => {
          socket.off('error', onError);
          resolve(new DatagramChannel(socket, errorWaitMs));
        });
      },
    );
  }
  send(frame: Buffer, timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (!this.alive) return Promise.reject(this.error ?? new SendError('socket closed'));
    return bounded<void>(
      'send',
      timeoutMs,
      signal,
      () => this.close(),
      (resolve, reject) =>
        this.socket.send(frame, (err) => {
          if (err) return reject(err);
          // No acknowledgement in syslog over UDP: wait a moment for an ICMP refusal.
          setTimeout(() => (this.error ? reject(this.error) : resolve()), this.errorWaitMs);
        }),
    );
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}

interface Entry {
  key: string;
  channel: Promise<Channel>;
}

export interface SyslogTransportOptions {
  /** HOSTNAME when the subscription sets none (default os.hostname()). */
  hostname?: string;
  /** How long a UDP send waits for an ICMP refusal before counting as sent (default 25 ms). */
  udpErrorWaitMs?: number;
}

export function syslogTransport(deps: SyslogTransportOptions = {}): Transport {
  const udpErrorWaitMs = deps.udpErrorWaitMs ?? 25;
  /** The open channel of each subscription, keyed by its connection settings. */
  const channels = new Map<string, Entry>();

  const drop = (subId: string, entry: Entry) => {
    if (channels.get(subId) === entry) channels.delete(subId);
    entry.channel.then(
      (c) => c.close(),
      () => undefined,
    );
  };

  /** The subscription's open channel, or a new one; `reused` says whether it was open already. */
  const channelFor = async (
    sub: OutboundSubscription,
    c: SyslogConnection,
    signal: AbortSignal,
  ): Promise<{ entry: Entry; channel: Channel; reused: boolean }> => {
    const key = JSON.stringify(c);
    const existing = channels.get(sub.id);
    if (existing) {
      const channel = existing.key === key ? await existing.channel.catch(() => undefined) : undefined;
      if (channel?.alive) return { entry: existing, channel, reused: true };
      drop(sub.id, existing);
    }
    const entry = {
      key,
      channel:
        c.protocol === 'udp'
          ? DatagramChannel.open(c, sub.timeoutMs, signal, udpErrorWaitMs)
          : StreamChannel.open(c, sub.timeoutMs, signal),
    };
    channels.set(sub.id, entry);
    entry.channel.catch(() => drop(sub.id, entry));
    return { entry, channel: await entry.channel, reused: false };
  };

  return {
    async deliver(
      event: KillSwitchEvent,
      sub: OutboundSubscription,
      signal: AbortSignal,
    ): Promise<DeliveryResult> {
      const conn = syslogConnectionSchema.safeParse(sub.connection ?? {});
      if (!conn.success)
        return { ok: false, retryable: false, error: `invalid syslog connection: ${issues(conn.error)}` };
      const opts = syslogOptionsSchema.safeParse(sub.options ?? {});
      if (!opts.success)
        return { ok: false, retryable: false, error: `invalid syslog options: ${issues(opts.error)}` };
      const c = conn.data;
      let frame: Buffer;
      try {
        const message = syslogMessage(event, sub, opts.data, { hostname: deps.hostname });
        frame = c.protocol === 'udp' ? Buffer.from(message, 'utf8') : octetCounted(message);
      } catch (err) {
        return { ok: false, retryable: false, error: `could not format the event: ${describe(err)}` };
      }
      const where = `syslog ${c.protocol}://${c.host}:${c.port}`;
      // A reused connection may have died since its last use: one more try on a fresh one.
      for (let attempt = 0; ; attempt++) {
        let got: Awaited<ReturnType<typeof channelFor>> | undefined;
        try {
          got = await channelFor(sub, c, signal);
          await got.channel.send(frame, sub.timeoutMs, signal);
          return { ok: true, retryable: false };
        } catch (err) {
          if (got) drop(sub.id, got.entry);
          if (got?.reused && attempt === 0 && !signal.aborted) continue;
          return { ok: false, retryable: true, error: `${where}: ${describe(err)}` };
        }
      }
    },
    async close() {
      for (const [id, entry] of [...channels]) drop(id, entry);
    },
  };
}

function issues(err: z.ZodError): string {
  return err.issues
    .map((i) => `${i.path.join('.') || '(root)'} ${i.message}`)
    .join('; ')
    .slice(0, 200);
}

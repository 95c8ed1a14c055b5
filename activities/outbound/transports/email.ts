/**
 * The `email` destination: one message per event over SMTP (nodemailer), with a text and an HTML
 * body (every value HTML-escaped) and the subject `[kill switch] <summary>`.
 *
 * Transport security: `starttls: 'required'` (default) refuses to send unless the session is
 * upgraded with STARTTLS; `'opportunistic'` upgrades when the server offers it; `'off'` never does;
 * `secure: true` is implicit TLS (port 465). The server's certificate is checked (`ca` to trust a
 * private CA). Login: `user` with the subscription's secret as password (or the variable named by
 * `passwordEnv`), sent only once the session is secured unless `starttls` says otherwise.
 *
 * Threading without state: each message's Message-ID derives from the event id, so a redelivery
 * carries the same one. A run is one thread: its first event (`detection.received`) opens it with
 * the run's root id, derived from the workflow and run ids; every later event of the run answers it
 * (In-Reply-To, References).
 *
 * Results: delivered when the server accepted the message for at least one recipient; an SMTP 5xx
 * is a refusal for good; a 4xx, a connection error or a timeout may pass later (retryable).
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import nodemailer from 'nodemailer';
import { z } from 'zod';
import type { KillSwitchEvent } from '../../../contracts/events';
import { EVENT_TITLES, LEVEL_COLORS, eventFacts, levelOf, runLink } from '../formats/facts';
import type { DeliveryResult, OutboundSubscription, Transport } from '../types';

const noLineBreak = /^[^\r\n]*$/;

export const emailConnectionSchema = z.object({
  host: z.string().min(1).max(255),
  /** Default 465 with `secure`, else 587. */
  port: z.coerce.number().int().min(1).max(65535).optional(),
  /** Implicit TLS from the first byte (SMTPS). */
  secure: z.boolean().default(false),
  starttls: z.enum(['required', 'opportunistic', 'off']).default('required'),
  user: z.string().min(1).max(320).regex(noLineBreak).optional(),
  /** The variable holding the password, when the subscription has no secret. */
  passwordEnv: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional(),
  from: z.string().min(3).max(320).regex(noLineBreak),
  to: z.array(z.email()).min(1).max(50),
  /** PEM of the CA (or self-signed certificate) to trust instead of the public roots. */
  ca: z.string().max(100_000).optional(),
  /** false accepts any certificate (a lab only). */
  rejectUnauthorized: z.boolean().optional(),
  /** The EHLO name (default: nodemailer's, the machine's name). */
  name: z
    .string()
    .max(255)
    .regex(/^[!-~]+$/)
    .optional(),
});
export type EmailConnection = z.infer<typeof emailConnectionSchema>;

export const MESSAGE_ID_DOMAIN = 'killswitch';

/** An id as a Message-ID local part: letters, digits, `_` and `-` kept, the rest `=XX` (injective). */
export function messageIdPart(id: string): string {
  const enc = Array.from(Buffer.from(id, 'utf8'))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9_-]/.test(c) ? c : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
  return enc.length <= 128 ? enc : `h=${createHash('sha256').update(id).digest('hex')}`;
}

/** The Message-ID of an event's mail. */
export function eventMessageId(event: KillSwitchEvent): string {
  return `<${messageIdPart(event.id)}@${MESSAGE_ID_DOMAIN}>`;
}

/** The root of a run's thread: the workflow id and, when known, the run id. */
export function runRootMessageId(run: NonNullable<KillSwitchEvent['run']>): string {
  const parts = [run.workflowId, ...(run.runId ? [run.runId] : [])].map(messageIdPart);
  return `<run.${parts.join('.')}@${MESSAGE_ID_DOMAIN}>`;
}

/** Message-ID, and In-Reply-To/References for the events of a run after its first. */
export function threadHeaders(event: KillSwitchEvent): {
  messageId: string;
  inReplyTo?: string;
  references?: string;
} {
  if (!event.run) return { messageId: eventMessageId(event) };
  const root = runRootMessageId(event.run);
  if (event.type === 'detection.received') return { messageId: root };
  return { messageId: eventMessageId(event), inReplyTo: root, references: root };
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function flatten(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
}

export function emailSubject(event: KillSwitchEvent): string {
  return `[kill switch] ${flatten(event.summary)}`.slice(0, 250);
}

export function emailText(event: KillSwitchEvent): string {
  const link = runLink(event);
  return [
    EVENT_TITLES[event.type],
    '',
    event.summary,
    '',
    ...eventFacts(event).map((f) => `${f.label}: ${f.value}`),
    ...(link ? ['', `Run: ${link}`] : []),
    '',
    `-- Secret Kill Switch, event ${event.type} (${event.id})`,
    '',
  ].join('\n');
}

export function emailHtml(event: KillSwitchEvent): string {
  const e = escapeHtml;
  const link = runLink(event);
  const rows = eventFacts(event)
    .map(
      (f) =>
        `<tr><th align="left" valign="top" style="padding:2px 12px 2px 0">${e(f.label)}</th><td style="padding:2px 0">${e(f.value)}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${e(EVENT_TITLES[event.type])}</title></head>
<body style="font-family:sans-serif;font-size:14px">
<h2 style="color:#${LEVEL_COLORS[levelOf(event)]};margin:0 0 8px">${e(EVENT_TITLES[event.type])}</h2>
<p>${e(event.summary)}</p>
<table cellspacing="0" cellpadding="0">
${rows}
</table>
${link ? `<p><a href="${e(link)}">Open the run</a></p>\n` : ''}<p style="color:#666;font-size:12px">Secret Kill Switch, event ${e(event.type)} (${e(event.id)})</p>
</body></html>
`;
}

export interface EmailTransportDeps {
  /** Where `passwordEnv` is looked up (the worker's parsed environment). */
  env?: Readonly<Record<string, string | undefined>>;
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
}

function redact(text: string, secret: string | undefined): string {
  if (!secret) return text;
  const forms = [secret, Buffer.from(secret).toString('base64')];
  return forms.reduce((t, f) => t.split(f).join('[redacted]'), text);
}

export function emailTransport(deps: EmailTransportDeps = {}): Transport {
  const env = deps.env ?? {};
  return {
    async deliver(
      event: KillSwitchEvent,
      sub: OutboundSubscription,
      signal: AbortSignal,
    ): Promise<DeliveryResult> {
      const parsed = emailConnectionSchema.safeParse(sub.connection ?? {});
      if (!parsed.success) {
        const why = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'} ${i.message}`).join('; ');
        return { ok: false, retryable: false, error: `invalid email connection: ${why}`.slice(0, 300) };
      }
      const c = parsed.data;
      const password = sub.secret ?? (c.passwordEnv ? env[c.passwordEnv] : undefined);
      if (c.user && !password) {
        return {
          ok: false,
          retryable: false,
          error: 'email connection has a user but no password (secret or passwordEnv)',
        };
      }
      const port = c.port ?? (c.secure ? 465 : 587);
      const transporter = nodemailer.createTransport({
        host: c.host,
        port,
        secure: c.secure,
        requireTLS: !c.secure && c.starttls === 'required',
        opportunisticTLS: !c.secure && c.starttls === 'opportunistic',
        ignoreTLS: !c.secure && c.starttls === 'off',
        ...(c.user && password ? { auth: { user: c.user, pass: password } } : {}),
        ...(c.name ? { name: c.name } : {}),
        tls: {
          ...(c.ca ? { ca: c.ca } : {}),
          rejectUnauthorized: c.rejectUnauthorized ?? true,
          minVersion: 'TLSv1.2',
          ...(net.isIP(c.host) ? {} : { servername: c.host }),
        },
        connectionTimeout: sub.timeoutMs,
        greetingTimeout: sub.timeoutMs,
        socketTimeout: sub.timeoutMs,
        logger: false,
        debug: false,
      });
      const at = Date.parse(event.occurredAt);
      try {
        const info = await transporter.sendMail({
          from: c.from,
          to: c.to,
          subject: emailSubject(event),
          text: emailText(event),
          html: emailHtml(event),
          ...threadHeaders(event),
          ...(Number.isFinite(at) ? { date: new Date(at) } : {}),
          headers: {
            'Auto-Submitted': 'auto-generated',
            'X-Killswitch-Event-Type': event.type,
            'X-Killswitch-Event-Id': event.id,
          },
          signal: AbortSignal.any([signal, AbortSignal.timeout(sub.timeoutMs)]),
        });
        if (info.accepted.length === 0)
          return { ok: false, retryable: true, error: 'no recipient accepted the message' };
        return { ok: true, retryable: false };
      } catch (err) {
        const e = err as SmtpError;
        const code = e.responseCode;
        const retryable = !(code !== undefined && code >= 500 && code < 600);
        const what = signal.aborted
          ? 'aborted'
          : e.name === 'AbortError' || e.name === 'TimeoutError' || e.code === 'EABORT'
            ? `no answer within ${sub.timeoutMs} ms`
            : e.message;
        const where = `smtp ${c.host}:${port}`;
        const text = `${where}: ${[e.code, code].filter(Boolean).join(' ')} ${flatten(what ?? '')}`;
        return { ok: false, retryable, error: redact(text, password).slice(0, 300) };
      } finally {
        transporter.close();
      }
    },
  };
}

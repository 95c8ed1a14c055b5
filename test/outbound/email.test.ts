/**
 * The e-mail transport against a real SMTP server (aiosmtpd from PyPI, tools/smtp.ts): one with
 * STARTTLS required and AUTH (self-signed certificate, the subscription's secret as password), one
 * plain. What arrived is read the way the server (Python's e-mail parser) saw it: both bodies,
 * the threading headers of two events of one run, STARTTLS used when required and refused to a
 * server without it, hostile values escaped in the HTML, 4xx retryable and 5xx not, no secret.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  emailTransport,
  escapeHtml,
  messageIdPart,
  runRootMessageId,
  threadHeaders,
} from '../../activities/outbound/transports/email';
import type { OutboundSubscription } from '../../activities/outbound/types';
import { EVENT_VERSION, eventEnvelopeSchema, type EventType } from '../../contracts/events';
import { startSmtp, type SmtpServer } from '../../tools/smtp';
import { freePort } from '../../tools/temporal-dev';

const PASSWORD = `smtp-pw-${randomUUID()}`;
const USER = 'killswitch';
const HOSTILE_SUMMARY = 'Escalated: <script>alert("x")</script> & <img src=x onerror=alert(1)> in payments';
const HOSTILE_SYSTEM = `pay<b onmouseover="steal()">ments</b>'db`;

function sample(
  type: EventType,
  run: { workflowId: string; runId?: string },
  over: { summary?: string; system?: string } = {},
) {
  return eventEnvelopeSchema.parse({
    id: `evt_${randomUUID().replace(/-/g, '')}`,
    type,
    version: EVENT_VERSION,
    occurredAt: '2025-12-02T18:26:40.123Z',
    source: 'secret-kill-switch',
    run: { ...run, url: 'https://temporal.example/namespaces/default/workflows/x/y/history' },
    summary: over.summary ?? `Contained: postgres_password (role=app_user) in payments-db`,
    data: {
      credential: {
        type: 'postgres_password',
        fingerprint: `hmac-sha256:${'ab'.repeat(32)}`,
        ref: { role: 'app_user' },
      },
      owner: { system: over.system ?? 'payments-db', kind: 'postgres', team: 'payments' },
      step: 'verify',
      outcome: 'contained',
    },
  });
}

function sub(
  connection: Record<string, unknown>,
  secret: string | undefined = PASSWORD,
): OutboundSubscription {
  return {
    id: `sub-${randomUUID()}`,
    name: 'secops-mail',
    format: 'email',
    connection: { from: 'Kill Switch <killswitch@example.org>', to: ['secops@example.org'], ...connection },
    ...(secret !== undefined ? { secret } : {}),
    eventTypes: ['*'],
    filters: {},
    options: {},
    retryCount: 3,
    timeoutMs: 5_000,
    failureThreshold: 10,
    isActive: true,
  };
}

const never = new AbortController().signal;
const header = (m: { headers: Record<string, string[]> }, name: string) => m.headers[name.toLowerCase()]?.[0];

describe('threading headers (pure)', () => {
  it('derives Message-IDs from ids, injectively and within RFC 5322 dot-atom text', () => {
    expect(messageIdPart('evt_0123abcd')).toBe('evt_0123abcd');
    expect(messageIdPart('ks:postgres/a.b c')).toBe('ks=3Apostgres=2Fa=2Eb=20c');
    expect(messageIdPart('a=3A')).not.toBe(messageIdPart('a:'));
    expect(messageIdPart('x'.repeat(500))).toMatch(/^h=[0-9a-f]{64}$/);
    const run = { workflowId: 'ks-postgres:app_user@db1', runId: 'r-1' };
    expect(runRootMessageId(run)).toBe('<run.ks-postgres=3Aapp_user=40db1.r-1@killswitch>');
    const first = sample('detection.received', run);
    const later = sample('run.contained', run);
    expect(threadHeaders(first)).toEqual({ messageId: runRootMessageId(run) });
    expect(threadHeaders(later)).toEqual({
      messageId: `<${later.id}@killswitch>`,
      inReplyTo: runRootMessageId(run),
      references: runRootMessageId(run),
    });
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;');
  });
});

describe('email transport against aiosmtpd', () => {
  let secure: SmtpServer; // STARTTLS required, AUTH required
  let plain: SmtpServer; // neither
  const transport = emailTransport();

  beforeAll(async () => {
    [secure, plain] = await Promise.all([
      startSmtp({
        starttls: true,
        auth: { user: USER, password: PASSWORD },
        logFile: 'test-results/smtp-secure.log',
      }),
      startSmtp({ logFile: 'test-results/smtp-plain.log' }),
    ]);
  });
  afterAll(async () => {
    await transport.close?.();
    await Promise.all([secure?.stop(), plain?.stop()]);
  });

  const secureConn = () => ({
    host: secure.host,
    port: secure.port,
    ca: secure.caPem,
    user: USER,
    starttls: 'required',
  });

  it('delivers over STARTTLS with a login: subject, text and HTML parts, two events of a run threaded', async () => {
    const run = { workflowId: `ks-postgres-${randomUUID()}`, runId: 'run-1' };
    const first = sample('detection.received', run, {
      summary: 'Detected: postgres_password in payments-db',
    });
    const second = sample('run.contained', run);
    const s = sub(secureConn());
    expect(await transport.deliver(first, s, never)).toEqual({ ok: true, retryable: false });
    expect(await transport.deliver(second, s, never)).toEqual({ ok: true, retryable: false });

    const got = (await secure.waitForCount(2)).filter(
      (m) => header(m, 'X-Killswitch-Event-Id') !== undefined,
    );
    const a = got.find((m) => header(m, 'X-Killswitch-Event-Id') === first.id)!;
    const b = got.find((m) => header(m, 'X-Killswitch-Event-Id') === second.id)!;
    for (const m of [a, b]) {
      expect(m.tls).toBe(true);
      expect(m.authenticated).toBe(true);
      expect(m.mailFrom).toBe('killswitch@example.org');
      expect(m.rcptTos).toEqual(['secops@example.org']);
      expect(m.contentType).toBe('multipart/alternative');
      expect(m.parts).toEqual(['multipart/alternative', 'text/plain', 'text/html']);
      expect(header(m, 'Auto-Submitted')).toBe('auto-generated');
    }
    expect(header(b, 'Subject')).toBe(`[kill switch] ${second.summary}`);
    expect(header(b, 'X-Killswitch-Event-Type')).toBe('run.contained');
    expect(b.text).toContain(second.summary);
    expect(b.text).toContain('Owning system: payments-db (team payments)');
    expect(b.html).toContain('<h2');
    expect(b.html).toContain('Run contained');
    expect(b.html).toContain('<a href="https://temporal.example/namespaces/default/workflows/x/y/history">');

    const root = runRootMessageId(run);
    expect(header(a, 'Message-ID')).toBe(root);
    expect(header(a, 'In-Reply-To')).toBeUndefined();
    expect(header(b, 'Message-ID')).toBe(`<${second.id}@killswitch>`);
    expect(header(b, 'In-Reply-To')).toBe(root);
    expect(header(b, 'References')).toBe(root);
  });

  it('escapes hostile values in the HTML body and keeps them as text in the text body', async () => {
    const e = sample(
      'run.escalated',
      { workflowId: 'ks-hostile', runId: 'r' },
      { summary: HOSTILE_SUMMARY, system: HOSTILE_SYSTEM },
    );
    expect(
      (
        await transport.deliver(
          e,
          sub({ host: plain.host, port: plain.port, starttls: 'off' }, undefined),
          never,
        )
      ).ok,
    ).toBe(true);
    const m = (await plain.waitForCount(1)).find((x) => header(x, 'X-Killswitch-Event-Id') === e.id)!;
    expect(m.html).not.toContain('<script');
    expect(m.html).not.toContain('<img');
    expect(m.html).not.toContain('<b onmouseover');
    expect(m.html).toContain(
      '&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; &#60;img src=x onerror=alert(1)&#62;',
    );
    expect(m.html).toContain('pay&#60;b onmouseover=&#34;steal()&#34;&#62;ments&#60;/b&#62;&#39;db');
    expect(m.text).toContain(HOSTILE_SUMMARY);
    expect(header(m, 'Subject')).toBe(`[kill switch] ${HOSTILE_SUMMARY}`);
  });

  it('STARTTLS required is refused by a server without it; opportunistic sends in the clear there', async () => {
    const before = plain.messages().length;
    const e = sample('run.contained', { workflowId: 'ks-plain', runId: 'r' });
    const refused = await transport.deliver(
      e,
      sub({ host: plain.host, port: plain.port, starttls: 'required' }, undefined),
      never,
    );
    expect(refused.ok).toBe(false);
    expect(refused.error).toMatch(/STARTTLS/);
    await new Promise((r) => setTimeout(r, 200));
    expect(plain.messages().length).toBe(before);

    const opp = await transport.deliver(
      e,
      sub({ host: plain.host, port: plain.port, starttls: 'opportunistic' }, undefined),
      never,
    );
    expect(opp.ok).toBe(true);
    const m = (await plain.waitForCount(before + 1)).at(-1)!;
    expect([header(m, 'X-Killswitch-Event-Id'), m.tls]).toEqual([e.id, false]);
  });

  it('a server that requires STARTTLS refuses a client that will not (5xx, not retryable)', async () => {
    const res = await transport.deliver(
      sample('run.contained', { workflowId: 'ks-off' }),
      sub({ ...secureConn(), starttls: 'off' }),
      never,
    );
    expect(res).toMatchObject({ ok: false, retryable: false });
    expect(res.error).toContain('530');
  });

  it('an untrusted certificate is refused before anything is sent (retryable)', async () => {
    const before = secure.messages().length;
    const { ca: _ca, ...noCa } = secureConn();
    const res = await transport.deliver(sample('run.contained', { workflowId: 'ks-ca' }), sub(noCa), never);
    expect(res).toMatchObject({ ok: false, retryable: true });
    expect(res.error).toMatch(/certificate/i);
    expect(secure.messages().length).toBe(before);
  });

  it('a wrong password is a 5xx refusal (not retryable) whose error does not carry the password', async () => {
    const wrong = `wrong-${PASSWORD}`;
    const res = await transport.deliver(
      sample('run.contained', { workflowId: 'ks-auth' }),
      sub(secureConn(), wrong),
      never,
    );
    expect(res).toMatchObject({ ok: false, retryable: false });
    expect(res.error).toContain('535');
    expect(res.error).not.toContain(wrong);
  });

  it('4xx is retryable, 5xx is not, a server that is down is retryable', async () => {
    const e = sample('run.contained', { workflowId: 'ks-codes' });
    const temp = await transport.deliver(
      e,
      sub({ host: plain.host, port: plain.port, starttls: 'off', to: ['tempfail@example.org'] }, undefined),
      never,
    );
    expect(temp).toMatchObject({ ok: false, retryable: true });
    expect(temp.error).toContain('451');
    const perm = await transport.deliver(
      e,
      sub({ host: plain.host, port: plain.port, starttls: 'off', to: ['reject@example.org'] }, undefined),
      never,
    );
    expect(perm).toMatchObject({ ok: false, retryable: false });
    expect(perm.error).toContain('550');
    const port = await freePort();
    const down = await transport.deliver(
      e,
      sub({ host: '127.0.0.1', port, starttls: 'off' }, undefined),
      never,
    );
    expect(down).toMatchObject({ ok: false, retryable: true });
    expect(down.error).toMatch(/ECONNREFUSED|ECONNECTION/);
    const bad = await transport.deliver(e, sub({ host: plain.host, to: ['not an address'] }), never);
    expect(bad).toMatchObject({ ok: false, retryable: false });
    expect(bad.error).toMatch(/^invalid email connection: to\.0/);
  });

  it('never writes the password into a message', () => {
    const all = [...secure.messages(), ...plain.messages()];
    expect(all.length).toBeGreaterThanOrEqual(4);
    for (const m of all) {
      expect(m.raw).not.toContain(PASSWORD);
      expect(m.raw).not.toContain(Buffer.from(PASSWORD).toString('base64'));
    }
  });
});

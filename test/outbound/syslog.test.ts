/**
 * The syslog transport against a real rsyslog (Debian's rsyslogd, private instance on loopback,
 * tools/rsyslog.ts): over UDP, TCP (octet counting) and TLS (OpenSSL driver, self-signed
 * certificate) an event arrives as an RFC 5424 message that rsyslog itself parses: PRI, version,
 * APP-NAME, MSGID = event type, the structured data unescaped by rsyslog's mmpstrucdata (a hostile
 * value with `"`, `]` and `\` round-trips), MSG the summary or a CEF line. A receiver that is down
 * gives a retryable failure without throwing; a restarted one is reconnected to.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  octetCounted,
  sdParamEscape,
  syslogMessage,
  syslogOptionsSchema,
  syslogTransport,
} from '../../activities/outbound/transports/syslog';
import type { OutboundSubscription } from '../../activities/outbound/types';
import {
  EVENT_VERSION,
  eventEnvelopeSchema,
  type EventType,
  type KillSwitchEvent,
} from '../../contracts/events';
import { startRsyslog, type ReceivedSyslog, type RsyslogServer } from '../../tools/rsyslog';
import { freePort } from '../../tools/temporal-dev';

const SECRET = `sk-live-${randomUUID()}`;
const HOSTILE = 'pay"ments] \\db\\"] [x="y"]';
const SD_ID = 'killswitch@32473';

function sample(
  type: EventType,
  over: { id?: string; system?: string; summary?: string } = {},
): KillSwitchEvent {
  return eventEnvelopeSchema.parse({
    id: over.id ?? `evt_${randomUUID().replace(/-/g, '')}`,
    type,
    version: EVENT_VERSION,
    occurredAt: '2025-12-02T18:26:40.123Z',
    source: 'secret-kill-switch',
    run: { workflowId: 'ks-postgres-abc', runId: 'run-1' },
    summary: over.summary ?? `Escalated: postgres_password in payments-db (RevokeFailed at revoke)`,
    data: {
      credential: {
        type: 'postgres_password',
        fingerprint: `hmac-sha256:${'ab'.repeat(32)}`,
        ref: { role: 'app_user' },
      },
      owner: { system: over.system ?? 'payments-db', kind: 'postgres' },
      step: 'revoke',
      outcome: 'escalated',
    },
  });
}

function sub(
  connection: Record<string, unknown>,
  options: Record<string, unknown> = {},
): OutboundSubscription {
  return {
    id: `sub-${randomUUID()}`,
    name: 'siem',
    format: 'syslog',
    connection,
    secret: SECRET,
    eventTypes: ['*'],
    filters: {},
    options,
    retryCount: 3,
    timeoutMs: 3_000,
    failureThreshold: 10,
    isActive: true,
  };
}

const never = new AbortController().signal;

describe('syslog message (pure)', () => {
  it('escapes ", \\ and ] in param values (RFC 5424 §6.3.3) and flattens line breaks', () => {
    expect(sdParamEscape('a"b\\c]d')).toBe('a\\"b\\\\c\\]d');
    expect(sdParamEscape('line\nbreak')).toBe('line break');
  });

  it('builds <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG', () => {
    const e = sample('run.escalated');
    const opts = syslogOptionsSchema.parse({ facility: 'local0' });
    const m = syslogMessage(e, { options: {} }, opts, { hostname: 'ks-worker', pid: 42 });
    // local0 (16) * 8 + err (3)
    expect(m).toBe(
      `<131>1 2025-12-02T18:26:40.123Z ks-worker killswitch 42 run.escalated ` +
        `[${SD_ID} type="run.escalated" id="${e.id}" workflowId="ks-postgres-abc" runId="run-1" ` +
        `credentialType="postgres_password" owningSystem="payments-db" outcome="escalated" step="revoke" ` +
        `fingerprint="hmac-sha256:${'ab'.repeat(32)}"] ${e.summary}`,
    );
    expect(octetCounted('é').toString('utf8')).toBe('2 é');
  });
});

describe('syslog transport against rsyslog', () => {
  let rsyslog: RsyslogServer;
  const transport = syslogTransport({ hostname: 'ks-worker' });

  beforeAll(async () => {
    rsyslog = await startRsyslog({ logFile: 'test-results/rsyslog.log' });
  });
  afterAll(async () => {
    await transport.close?.();
    await rsyslog?.stop();
  });

  const byId = (id: string) => (m: ReceivedSyslog) => m.sd[SD_ID]?.id === id;

  for (const protocol of ['udp', 'tcp', 'tls'] as const) {
    it(`delivers over ${protocol}: rsyslog parses PRI, version, app, msgid and the escaped structured data`, async () => {
      const port = { udp: rsyslog.udpPort, tcp: rsyslog.tcpPort, tls: rsyslog.tlsPort }[protocol];
      const s = sub({
        protocol,
        host: rsyslog.host,
        port,
        ...(protocol === 'tls' ? { ca: rsyslog.caPem } : {}),
      });
      const e = sample('run.escalated', { system: HOSTILE });
      const res = await transport.deliver(e, s, never);
      expect(res).toEqual({ ok: true, retryable: false });

      const m = await rsyslog.waitFor(byId(e.id));
      expect(m.input).toBe(protocol);
      expect(m.pri).toBe(10 * 8 + 3); // authpriv.err
      expect(m.version).toBe('1');
      expect(m.hostname).toBe('ks-worker');
      expect(m.appName).toBe('killswitch');
      expect(m.procid).toBe(String(process.pid));
      expect(m.msgid).toBe('run.escalated');
      expect(m.msg).toBe(e.summary);
      expect(m.sd[SD_ID]).toEqual({
        type: 'run.escalated',
        id: e.id,
        workflowId: 'ks-postgres-abc',
        runId: 'run-1',
        credentialType: 'postgres_password',
        owningSystem: HOSTILE,
        outcome: 'escalated',
        step: 'revoke',
        fingerprint: `hmac-sha256:${'ab'.repeat(32)}`,
      });
      expect(m.raw).toContain(`owningSystem="${sdParamEscape(HOSTILE)}"`);
      expect(m.raw.startsWith('<83>1 2025-12-02T18:26:40.123Z ks-worker killswitch ')).toBe(true);
    });
  }

  it('maps levels to severities and options.facility to the facility; reuses one connection', async () => {
    const s = sub(
      { protocol: 'tcp', host: rsyslog.host, port: rsyslog.tcpPort },
      { facility: 'local0', appName: 'ks-prod' },
    );
    const cases: [EventType, number][] = [
      ['run.contained', 5],
      ['approval.requested', 4],
      ['run.started', 6],
      ['breaker.tripped', 3],
    ];
    const events = cases.map(([type]) => sample(type));
    for (const e of events) expect((await transport.deliver(e, s, never)).ok).toBe(true);
    for (const [i, [type, severity]] of cases.entries()) {
      const m = await rsyslog.waitFor(byId(events[i]!.id));
      expect([m.msgid, m.pri, m.appName]).toEqual([type, 16 * 8 + severity, 'ks-prod']);
    }
  });

  it('sends a CEF line as MSG with options.payload cef', async () => {
    const s = sub({ protocol: 'udp', host: rsyslog.host, port: rsyslog.udpPort }, { payload: 'cef' });
    const e = sample('run.contained');
    expect((await transport.deliver(e, s, never)).ok).toBe(true);
    const m = await rsyslog.waitFor(byId(e.id));
    expect(m.msg).toMatch(/^CEF:0\|[^|]+\|[^|]+\|1\|/);
    expect(m.msg).toContain(`externalId=${e.id} cat=run.contained`);
    expect(m.msg).toContain('cs4Label=workflowId cs4=ks-postgres-abc');
  });

  it('a receiver that is down gives a retryable failure, for each protocol, without throwing', async () => {
    const port = await freePort();
    for (const protocol of ['udp', 'tcp', 'tls'] as const) {
      const res = await transport.deliver(
        sample('run.contained'),
        sub({ protocol, host: '127.0.0.1', port }),
        never,
      );
      expect(res.ok).toBe(false);
      expect(res.retryable).toBe(true);
      expect(res.error).toContain(`syslog ${protocol}://127.0.0.1:${port}: ECONNREFUSED`);
    }
  });

  it('reconnects after the receiver restarts (no event lost), failing retryably while it is down', async () => {
    for (const protocol of ['tcp', 'tls'] as const) {
      const port = protocol === 'tcp' ? rsyslog.tcpPort : rsyslog.tlsPort;
      const s = sub({ protocol, host: rsyslog.host, port, ca: rsyslog.caPem });
      const first = sample('run.started');
      expect((await transport.deliver(first, s, never)).ok).toBe(true);
      await rsyslog.waitFor(byId(first.id));

      await rsyslog.kill();
      const down = await transport.deliver(sample('run.contained'), s, never);
      expect(down).toMatchObject({ ok: false, retryable: true });

      await rsyslog.restart();
      const after = sample('run.contained');
      expect(await transport.deliver(after, s, never)).toEqual({ ok: true, retryable: false });
      await rsyslog.waitFor(byId(after.id));

      // A restart between two deliveries: the closed connection is noticed, the event not lost.
      await rsyslog.restart();
      const next = sample('run.acknowledged');
      expect(await transport.deliver(next, s, never)).toEqual({ ok: true, retryable: false });
      await rsyslog.waitFor(byId(next.id));
    }
  });

  it('refuses a TLS receiver whose certificate it does not trust (retryable, nothing sent)', async () => {
    const e = sample('run.contained');
    const res = await transport.deliver(
      e,
      sub({ protocol: 'tls', host: rsyslog.host, port: rsyslog.tlsPort }),
      never,
    );
    expect(res).toMatchObject({ ok: false, retryable: true });
    expect(res.error).toMatch(/SELF_SIGNED|CERT/);
    await new Promise((r) => setTimeout(r, 300));
    expect(rsyslog.messages().some(byId(e.id))).toBe(false);
  });

  it('a timeout is retryable; an invalid connection is not', async () => {
    // A TCP listener that never completes a TLS handshake.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (silent.address() as { port: number }).port;
      const s = { ...sub({ protocol: 'tls', host: '127.0.0.1', port }), timeoutMs: 300 };
      const res = await transport.deliver(sample('run.contained'), s, never);
      expect(res).toMatchObject({ ok: false, retryable: true });
      expect(res.error).toContain('timed out after 300 ms');
    } finally {
      silent.close();
    }
    const bad = await transport.deliver(
      sample('run.contained'),
      sub({ protocol: 'smtp', host: 'x', port: 1 }),
      never,
    );
    expect(bad).toMatchObject({ ok: false, retryable: false });
    expect(bad.error).toMatch(/^invalid syslog connection: protocol/);
  });

  it('never writes the subscription secret to the receiver', () => {
    const all = rsyslog.messages();
    expect(all.length).toBeGreaterThan(5);
    expect(JSON.stringify(all)).not.toContain(SECRET);
  });
});

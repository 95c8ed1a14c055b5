/**
 * What the admin API and the inventory store for a subscription is what its transport reads: the
 * connection and options a subscription is saved with parse under the transport's own schema, and
 * format options take effect. (The e-mail schema once stored `starttls: true`, which the transport
 * refused: no e-mail could ever be delivered.)
 */
import { describe, expect, it } from 'vitest';
import { EVENT_VERSION, eventEnvelopeSchema } from '../../contracts/events';
import { cef } from '../../activities/outbound/formats/cef';
import { teams } from '../../activities/outbound/formats/teams';
import { emailConnectionSchema } from '../../activities/outbound/transports/email';
import { syslogConnectionSchema, syslogOptionsSchema } from '../../activities/outbound/transports/syslog';
import type { OutboundSubscription } from '../../activities/outbound/types';
import { subscriptionSchema } from '../../lib/subscriptions';

const saved = (input: Record<string, unknown>) => subscriptionSchema.parse({ name: 'contract', ...input });

const event = eventEnvelopeSchema.parse({
  id: 'evt_contract',
  type: 'run.contained',
  version: EVENT_VERSION,
  occurredAt: '2026-12-01T10:00:00.000Z',
  source: 'secret-kill-switch',
  summary: 'Contained',
  data: {},
});
const asSub = (s: ReturnType<typeof saved>): OutboundSubscription =>
  ({
    ...s,
    id: 'sub_contract',
    url: s.url,
    connection: s.connection,
    options: s.options,
  }) as OutboundSubscription;

describe('a saved subscription is what its transport reads', () => {
  it('email: every starttls form and the defaults parse under the transport schema', () => {
    for (const starttls of [undefined, true, false, 'required', 'opportunistic', 'off']) {
      const s = saved({
        format: 'email',
        connection: {
          host: 'smtp.example.com',
          from: 'ks@example.com',
          to: ['sec@example.com'],
          ...(starttls === undefined ? {} : { starttls }),
        },
      });
      const r = emailConnectionSchema.safeParse(s.connection);
      expect(r.success, `starttls ${String(starttls)}: ${JSON.stringify(r.error?.issues)}`).toBe(true);
    }
    expect(
      emailConnectionSchema.parse(
        saved({
          format: 'email',
          connection: {
            host: 'smtp.example.com',
            from: 'ks@example.com',
            to: ['a@example.com'],
            starttls: false,
          },
        }).connection,
      ).starttls,
    ).toBe('off');
  });

  it('syslog: the connection (with a tls CA) and every option parse under the transport schemas', () => {
    const s = saved({
      format: 'syslog',
      connection: {
        protocol: 'tls',
        host: 'siem.example.com',
        ca: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----',
      },
      options: {
        facility: 'local0',
        appName: 'ks',
        hostname: 'ks-1',
        sdId: 'killswitch@32473',
        payload: 'cef',
        vendor: 'Acme',
        product: 'KS',
      },
    });
    expect(syslogConnectionSchema.parse(s.connection)).toMatchObject({ protocol: 'tls', port: 6514 });
    expect(syslogOptionsSchema.parse(s.options)).toMatchObject({
      facility: 'local0',
      payload: 'cef',
      sdId: 'killswitch@32473',
    });
  });

  it('cef: vendor and product options reach the CEF header', () => {
    const s = saved({
      format: 'cef',
      url: 'https://siem.example.com/cef',
      options: { vendor: 'Acme Security', product: 'Leak Guard' },
    });
    expect(cef(event, asSub(s)).body).toMatch(/^CEF:0\|Acme Security\|Leak Guard\|/);
  });

  it('teams: card adaptive sends the Workflows payload', () => {
    const s = saved({
      format: 'teams',
      url: 'https://example.webhook.office.com/x',
      options: { card: 'adaptive' },
    });
    expect(JSON.parse(teams(event, asSub(s)).body)).toMatchObject({ type: 'message' });
  });
});

/**
 * The HTTP-delivered outbound formats against their documented wire contracts: Slack's secondary
 * attachments, Teams' MessageCard and the Workflows Adaptive Card message (JSON schemas written from
 * the vendors' references), ArcSight CEF (parsed back by a small CEF parser, hostile values
 * round-tripping) and Splunk HEC (the exact envelope and header). Pure functions, no servers.
 */
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import type { OutboundSubscription } from '../../activities/outbound/types';
import { FORMATTERS } from '../../activities/outbound/formats';
import { CEF_FIELD_MAP, CEF_SIGNATURE_IDS, cefLine } from '../../activities/outbound/formats/cef';
import {
  EVENT_LEVELS,
  EVENT_TYPE_NAMES,
  EVENT_VERSION,
  eventEnvelopeSchema,
  type EventFormat,
  type EventType,
  type KillSwitchEvent,
} from '../../contracts/events';

const RUN_URL = 'https://temporal.example/namespaces/default/workflows/ks-postgres-abc/run-1/history';
const OCCURRED = '2025-12-02T18:26:40.123Z';

function sample(
  over: {
    type?: EventType;
    summary?: string;
    data?: Record<string, unknown>;
    run?: Record<string, unknown>;
  } = {},
) {
  const type = over.type ?? 'run.escalated';
  return eventEnvelopeSchema.parse({
    id: 'evt_0123456789abcdef0123456789abcdef',
    type,
    version: EVENT_VERSION,
    occurredAt: OCCURRED,
    source: 'secret-kill-switch',
    run: { workflowId: 'ks-postgres-abc', runId: 'run-1', url: RUN_URL, ...over.run },
    summary:
      over.summary ??
      'Escalated: postgres_password (role=app_user host=db1) in payments-db (RevokeFailed at revoke)',
    data: {
      credential: {
        type: 'postgres_password',
        fingerprint: 'hmac-sha256:' + 'ab'.repeat(32),
        ref: { role: 'app_user', host: 'db1' },
      },
      detection: {
        id: 'det-1',
        source: 'github',
        scanner: 'secret_scanning',
        severity: 'critical',
        location: { repository: 'acme/payments', file: 'config/db.env', line: 12 },
      },
      owner: { system: 'payments-db', kind: 'postgres', team: 'payments' },
      policy: { action: 'auto_rotate', rule: 'default', dryRun: false },
      step: 'revoke',
      outcome: 'escalated',
      failure: { step: 'revoke', type: 'RevokeFailed', message: 'permission denied for role app_user' },
      ...over.data,
    },
  });
}

function sub(
  format: EventFormat,
  options: Record<string, unknown> = {},
  secret?: string,
): OutboundSubscription {
  return {
    id: 'sub-1',
    name: 'test',
    format,
    url: 'https://hooks.example/endpoint',
    ...(secret ? { secret } : {}),
    eventTypes: ['*'],
    filters: {},
    options,
    retryCount: 3,
    timeoutMs: 5000,
    failureThreshold: 5,
    isActive: true,
  };
}

function format(
  f: EventFormat,
  event: KillSwitchEvent,
  options: Record<string, unknown> = {},
  secret?: string,
) {
  const formatter = FORMATTERS[f];
  if (!formatter) throw new Error(`no formatter for ${f}`);
  return formatter(event, sub(f, options, secret));
}

function json(f: EventFormat, event: KillSwitchEvent, options: Record<string, unknown> = {}) {
  const req = format(f, event, options);
  expect(req.contentType).toBe('application/json');
  return JSON.parse(req.body) as Record<string, any>;
}

/** Every string value in a JSON value, with its path. */
function strings(v: unknown, path = '$'): [string, string][] {
  if (typeof v === 'string') return [[path, v]];
  if (Array.isArray(v)) return v.flatMap((x, i) => strings(x, `${path}[${i}]`));
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => strings(x, `${path}.${k}`));
  return [];
}

const ajv = new Ajv({ strict: true, allErrors: true });
addFormats(ajv);

function expectValid(schema: object, value: unknown) {
  const validate = ajv.compile(schema);
  const ok = validate(value);
  expect(validate.errors ?? [], JSON.stringify(value)).toEqual([]);
  expect(ok).toBe(true);
}

const str = { type: 'string' } as const;
const nonEmpty = { type: 'string', minLength: 1 } as const;

/** Slack incoming webhook with secondary attachments (api.slack.com/reference/messaging/attachments). */
const SLACK_SCHEMA = {
  type: 'object',
  required: ['text', 'attachments'],
  additionalProperties: false,
  properties: {
    text: nonEmpty,
    attachments: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['fallback', 'color', 'title', 'fields'],
        additionalProperties: false,
        properties: {
          fallback: nonEmpty,
          color: { type: 'string', pattern: '^(good|warning|danger|#[0-9A-Fa-f]{6})$' },
          pretext: str,
          author_name: str,
          title: nonEmpty,
          title_link: { type: 'string', format: 'uri', pattern: '^https?://' },
          text: str,
          fields: {
            type: 'array',
            items: {
              type: 'object',
              required: ['title', 'value', 'short'],
              additionalProperties: false,
              properties: { title: nonEmpty, value: nonEmpty, short: { type: 'boolean' } },
            },
          },
          footer: str,
          ts: { type: 'integer' },
        },
      },
    },
  },
};

/** Legacy actionable message card (connectors): learn.microsoft.com/outlook/actionable-messages/card-reference. */
const MESSAGE_CARD_SCHEMA = {
  type: 'object',
  required: ['@type', '@context', 'summary'],
  additionalProperties: false,
  properties: {
    '@type': { const: 'MessageCard' },
    '@context': { const: 'https://schema.org/extensions' },
    summary: nonEmpty,
    themeColor: { type: 'string', pattern: '^[0-9A-Fa-f]{6}$' },
    title: str,
    text: str,
    sections: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          activityTitle: str,
          activitySubtitle: str,
          text: str,
          markdown: { type: 'boolean' },
          facts: {
            type: 'array',
            items: {
              type: 'object',
              required: ['name', 'value'],
              additionalProperties: false,
              properties: { name: nonEmpty, value: nonEmpty },
            },
          },
        },
      },
    },
    potentialAction: {
      type: 'array',
      maxItems: 4,
      items: {
        type: 'object',
        required: ['@type', 'name', 'targets'],
        additionalProperties: false,
        properties: {
          '@type': { const: 'OpenUri' },
          name: nonEmpty,
          targets: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              required: ['os', 'uri'],
              additionalProperties: false,
              properties: {
                os: { enum: ['default', 'iOS', 'android', 'windows'] },
                uri: { type: 'string', format: 'uri' },
              },
            },
          },
        },
      },
    },
  },
};

/** Teams Workflows webhook message carrying an Adaptive Card (adaptivecards.io schema explorer). */
const ADAPTIVE_MESSAGE_SCHEMA = {
  type: 'object',
  required: ['type', 'attachments'],
  additionalProperties: false,
  properties: {
    type: { const: 'message' },
    attachments: {
      type: 'array',
      minItems: 1,
      maxItems: 1,
      items: {
        type: 'object',
        required: ['contentType', 'content'],
        additionalProperties: false,
        properties: {
          contentType: { const: 'application/vnd.microsoft.card.adaptive' },
          contentUrl: { type: 'null' },
          content: {
            type: 'object',
            required: ['type', 'version', 'body'],
            additionalProperties: false,
            properties: {
              $schema: { const: 'http://adaptivecards.io/schemas/adaptive-card.json' },
              type: { const: 'AdaptiveCard' },
              version: { enum: ['1.4', '1.5'] },
              body: {
                type: 'array',
                minItems: 1,
                items: {
                  oneOf: [
                    {
                      type: 'object',
                      required: ['type', 'text'],
                      additionalProperties: false,
                      properties: {
                        type: { const: 'TextBlock' },
                        text: nonEmpty,
                        size: { enum: ['Default', 'Small', 'Medium', 'Large', 'ExtraLarge'] },
                        weight: { enum: ['Default', 'Lighter', 'Bolder'] },
                        color: {
                          enum: ['Default', 'Dark', 'Light', 'Accent', 'Good', 'Warning', 'Attention'],
                        },
                        wrap: { type: 'boolean' },
                      },
                    },
                    {
                      type: 'object',
                      required: ['type', 'facts'],
                      additionalProperties: false,
                      properties: {
                        type: { const: 'FactSet' },
                        facts: {
                          type: 'array',
                          minItems: 1,
                          items: {
                            type: 'object',
                            required: ['title', 'value'],
                            additionalProperties: false,
                            properties: { title: nonEmpty, value: nonEmpty },
                          },
                        },
                      },
                    },
                  ],
                },
              },
              actions: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['type', 'url'],
                  additionalProperties: false,
                  properties: {
                    type: { const: 'Action.OpenUrl' },
                    url: { type: 'string', format: 'uri' },
                    title: nonEmpty,
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};

const HOSTILE_FILE = '[click](https://evil.example) <script>alert(1)</script> <!channel> & *bold* `x`.env';

describe('registry', () => {
  it('registers the five HTTP formats', () => {
    for (const f of ['slack', 'teams', 'teams_adaptive', 'cef', 'splunk_hec'] as const) {
      expect(typeof FORMATTERS[f], f).toBe('function');
    }
  });
});

describe('slack', () => {
  it('is a valid incoming-webhook message with attachments for every event type', () => {
    for (const type of EVENT_TYPE_NAMES) expectValid(SLACK_SCHEMA, json('slack', sample({ type })));
  });

  it('colours by level, titles, links the run and lists the facts', () => {
    const colours = { failure: '#D62828', warning: '#F77F00', success: '#2B9348', info: '#1F6FEB' };
    for (const type of EVENT_TYPE_NAMES) {
      expect(json('slack', sample({ type })).attachments[0].color, type).toBe(colours[EVENT_LEVELS[type]]);
    }
    const msg = json('slack', sample());
    const a = msg.attachments[0];
    expect(a.title).toBe('Run escalated');
    expect(a.title_link).toBe(RUN_URL);
    expect(a.ts).toBe(Math.floor(Date.parse(OCCURRED) / 1000));
    expect(msg.text).toContain('Escalated: postgres_password');
    const fields = Object.fromEntries(
      a.fields.map((f: { title: string; value: string }) => [f.title, f.value]),
    );
    expect(fields).toMatchObject({
      'Credential type': 'postgres_password',
      'Owning system': 'payments-db (team payments)',
      Source: 'github (secret_scanning)',
      Outcome: 'escalated',
      Step: 'revoke',
      Failure: 'RevokeFailed at revoke: permission denied for role app_user',
      Location: 'acme/payments config/db.env:12',
      Workflow: 'ks-postgres-abc',
    });
  });

  it('escapes &, < and > in every string taken from the event', () => {
    const msg = json(
      'slack',
      sample({
        summary: 'Leak <!channel> & <https://evil.example|click here>',
        data: {
          step: '<@U123>',
          detection: { id: 'd', source: 'a&b', severity: 'high', location: { file: HOSTILE_FILE } },
        },
      }),
    );
    expect(msg.text).toBe(
      'Run escalated: Leak &lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;',
    );
    for (const [path, s] of strings(msg)) {
      if (path.endsWith('.title_link')) continue;
      expect(s, path).not.toMatch(/[<>]/);
      expect(s, path).not.toMatch(/&(?!amp;|lt;|gt;)/);
    }
    const location = msg.attachments[0].fields.find((f: { title: string }) => f.title === 'Location');
    expect(location.value).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt; &amp;');
  });

  it('offers only an http(s) run URL as a link', () => {
    const a = json('slack', sample({ run: { url: 'javascript:alert(1)' } })).attachments[0];
    expect(a).not.toHaveProperty('title_link');
  });
});

describe('teams (MessageCard)', () => {
  it('is a valid connector MessageCard for every event type', () => {
    for (const type of EVENT_TYPE_NAMES) expectValid(MESSAGE_CARD_SCHEMA, json('teams', sample({ type })));
  });

  it('sets themeColor by level, facts and an OpenUri action to the run', () => {
    const card = json('teams', sample());
    expect(card.themeColor).toBe('D62828');
    expect(json('teams', sample({ type: 'run.contained' })).themeColor).toBe('2B9348');
    expect(json('teams', sample({ type: 'approval.requested' })).themeColor).toBe('F77F00');
    expect(json('teams', sample({ type: 'run.started' })).themeColor).toBe('1F6FEB');
    expect(card.summary).toBe(`Run escalated: ${sample().summary}`);
    expect(card.potentialAction).toEqual([
      { '@type': 'OpenUri', name: 'Open the run', targets: [{ os: 'default', uri: RUN_URL }] },
    ]);
    const facts = Object.fromEntries(
      card.sections[0].facts.map((f: { name: string; value: string }) => [f.name, f.value]),
    );
    expect(facts).toMatchObject({
      'Credential type': 'postgres\\_password',
      Outcome: 'escalated',
      Step: 'revoke',
    });
  });

  it('escapes Markdown so a hostile file name cannot become a link', () => {
    const card = json(
      'teams',
      sample({
        data: { detection: { id: 'd', source: 's', severity: 'low', location: { file: HOSTILE_FILE } } },
      }),
    );
    const location = card.sections[0].facts.find((f: { name: string }) => f.name === 'Location');
    expect(location.value).toBe(
      '\\[click\\](https://evil.example) \\<script\\>alert(1)\\</script\\> \\<!channel\\> & \\*bold\\* \\`x\\`.env',
    );
    for (const [path, s] of strings(card)) {
      if (path.includes('potentialAction') || path.endsWith('.summary') || path.startsWith('$.@')) continue;
      expect(s, path).not.toMatch(/(^|[^\\])[[\]]/);
    }
  });

  it("sends the Workflows Adaptive Card when options.card is 'adaptive'", () => {
    expectValid(ADAPTIVE_MESSAGE_SCHEMA, json('teams', sample(), { card: 'adaptive' }));
  });
});

describe('teams_adaptive (Workflows webhook)', () => {
  it('is a valid message with one Adaptive Card for every event type', () => {
    for (const type of EVENT_TYPE_NAMES)
      expectValid(ADAPTIVE_MESSAGE_SCHEMA, json('teams_adaptive', sample({ type })));
  });

  it('has the title coloured by level, a FactSet and an Action.OpenUrl to the run', () => {
    const card = json('teams_adaptive', sample()).attachments[0].content;
    expect(card.type).toBe('AdaptiveCard');
    expect(card.version).toBe('1.4');
    expect(card.body[0]).toMatchObject({ type: 'TextBlock', text: 'Run escalated', color: 'Attention' });
    const factSet = card.body.find((b: { type: string }) => b.type === 'FactSet');
    expect(factSet.facts).toContainEqual({ title: 'Owning system', value: 'payments-db (team payments)' });
    expect(card.actions).toEqual([{ type: 'Action.OpenUrl', title: 'Open the run', url: RUN_URL }]);
    const ok = json('teams_adaptive', sample({ type: 'run.contained' })).attachments[0].content;
    expect(ok.body[0].color).toBe('Good');
  });

  it('leaves the action out when the run has no http(s) URL', () => {
    const card = json('teams_adaptive', sample({ run: { url: 'file:///etc/passwd' } })).attachments[0]
      .content;
    expect(card).not.toHaveProperty('actions');
  });
});

/** A small CEF parser: header split on unescaped pipes, extension split on unescaped `key=`. */
function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  if (!line.startsWith('CEF:')) throw new Error('not CEF');
  const header: string[] = [];
  let cur = '';
  let i = 4;
  while (header.length < 7) {
    const c = line[i];
    if (c === undefined) throw new Error('truncated header');
    if (c === '\\') {
      const n = line[i + 1];
      if (n !== '\\' && n !== '|') throw new Error(`bad header escape at ${i}`);
      cur += n;
      i += 2;
    } else if (c === '|') {
      header.push(cur);
      cur = '';
      i += 1;
    } else {
      cur += c;
      i += 1;
    }
  }
  const rest = line.slice(i);
  // A key starts the extension or follows a space and ends at an '=' not preceded by a backslash.
  const keys = [...rest.matchAll(/(?:^| )([A-Za-z0-9_]+)=/g)];
  const ext: Record<string, string> = {};
  keys.forEach((m, k) => {
    const start = m.index + m[0].length;
    const end = k + 1 < keys.length ? keys[k + 1]!.index : rest.length;
    const raw = rest.slice(start, end);
    ext[m[1]!] = raw.replace(/\\(.)/g, (_, e: string) => {
      const map: Record<string, string> = { '\\': '\\', '=': '=', n: '\n', r: '\r' };
      if (!(e in map)) throw new Error(`bad extension escape \\${e}`);
      return map[e]!;
    });
    if (/(^|[^\\])=/.test(raw.replace(/\\\\/g, ''))) throw new Error(`unescaped = in ${m[1]}`);
  });
  return { header, ext };
}

describe('cef', () => {
  it('writes the header and the documented field map', () => {
    const event = sample();
    const req = format('cef', event);
    expect(req.contentType).toBe('text/plain; charset=utf-8');
    expect(req.body).not.toMatch(/[\r\n]/);
    const { header, ext } = parseCef(req.body);
    expect(header).toEqual([
      '0',
      'Secret Kill Switch',
      'Kill Switch',
      '1',
      'ks-run-escalated',
      'Run escalated',
      '9',
    ]);
    expect(ext).toEqual({
      rt: String(Date.parse(OCCURRED)),
      externalId: event.id,
      cat: 'run.escalated',
      msg: event.summary,
      outcome: 'escalated',
      act: 'auto_rotate',
      reason: 'RevokeFailed at revoke: permission denied for role app_user',
      request: RUN_URL,
      cs1Label: 'owningSystem',
      cs1: 'payments-db',
      cs2Label: 'credentialType',
      cs2: 'postgres_password',
      cs3Label: 'fingerprint',
      cs3: event.data.credential!.fingerprint,
      cs4Label: 'workflowId',
      cs4: 'ks-postgres-abc',
      cs5Label: 'detectionSource',
      cs5: 'github',
      cs6Label: 'step',
      cs6: 'revoke',
      flexString1Label: 'repository',
      flexString1: 'acme/payments',
      flexString2Label: 'owningTeam',
      flexString2: 'payments',
      filePath: 'config/db.env',
    });
  });

  it('maps every documented field when the event carries it', () => {
    const line = cefLine(
      sample({
        type: 'approval.decided',
        data: { by: 'alice', decision: 'approve', breaker: { system: 's', count: 7, window: '10m' } },
      }),
    );
    const { ext } = parseCef(line);
    for (const f of CEF_FIELD_MAP) expect(ext, f.key).toHaveProperty(f.key);
    expect(ext).toMatchObject({ suser: 'alice', act: 'approve', cnt: '7' });
  });

  it('grades severity by level and gives each type a stable, distinct signature id', () => {
    const bySeverity = { failure: '9', warning: '6', success: '3', info: '1' };
    for (const type of EVENT_TYPE_NAMES) {
      const { header } = parseCef(cefLine(sample({ type })));
      expect(header[6], type).toBe(bySeverity[EVENT_LEVELS[type]]);
      expect(header[4], type).toBe(CEF_SIGNATURE_IDS[type]);
    }
    const ids = Object.values(CEF_SIGNATURE_IDS);
    expect(new Set(ids).size).toBe(EVENT_TYPE_NAMES.length);
    for (const id of ids) expect(id).toMatch(/^ks-[a-z]+(-[a-z]+)*$/);
    expect(CEF_SIGNATURE_IDS['run.escalated']).toBe('ks-run-escalated');
  });

  it('round-trips hostile values: pipes, backslashes, equals, newlines, markup and unicode', () => {
    const hostile = 'a|b\\c=d\ne\r\nf <script>alert(1)</script> Ünïcødé ✓ 🔑 key=value \\= \\n end\\';
    const event = sample({
      summary: hostile,
      data: {
        by: 'x=y|z',
        detection: {
          id: 'd',
          source: 'src= cs1=forged',
          severity: 'low',
          location: { file: 'C:\\dir\\a=b.env', repository: 'r|r' },
        },
      },
    });
    const req = format('cef', event, { cefVendor: 'Ac|me\\Corp\nX', cefProduct: 'P|=' });
    expect(req.body).not.toMatch(/[\r\n]/);
    const { header, ext } = parseCef(req.body);
    expect(header.slice(0, 3)).toEqual(['0', 'Ac|me\\Corp X', 'P|=']);
    expect(ext.msg).toBe(hostile);
    expect(ext.suser).toBe('x=y|z');
    expect(ext.cs5).toBe('src= cs1=forged');
    expect(ext.cs1).toBe('payments-db');
    expect(ext.filePath).toBe('C:\\dir\\a=b.env');
    expect(ext.flexString1).toBe('r|r');
  });

  it('the parser tells a naive (unescaped) line from a correct one', () => {
    const naive = 'CEF:0|V|P|1|ks-x|N|1|msg=a cs1=forged b=c suser=bob';
    expect(parseCef(naive).ext).toHaveProperty('cs1', 'forged');
    const good = cefLine(sample({ summary: 'a cs1=forged b=c' }));
    expect(parseCef(good).ext.msg).toBe('a cs1=forged b=c');
    expect(parseCef(good).ext.cs1).toBe('payments-db');
  });

  it('falls back to the default vendor and product for empty or non-string options', () => {
    const { header } = parseCef(format('cef', sample(), { cefVendor: '', cefProduct: 42 }).body);
    expect(header.slice(1, 3)).toEqual(['Secret Kill Switch', 'Kill Switch']);
  });
});

describe('splunk_hec', () => {
  it('sends the exact HEC event envelope with the token in the Authorization header', () => {
    const event = sample();
    const req = format('splunk_hec', event, {}, 'hec-token-123');
    expect(req.contentType).toBe('application/json');
    expect(req.headers).toEqual({ Authorization: 'Splunk hec-token-123' });
    expect(JSON.parse(req.body)).toEqual({
      time: 1764700000.123,
      source: 'secret-kill-switch',
      sourcetype: '_json',
      event,
    });
    expect(req.body).toContain('"time":1764700000.123');
  });

  it('carries sourcetype, index and host options', () => {
    const body = JSON.parse(
      format(
        'splunk_hec',
        sample(),
        { sourcetype: 'killswitch:event', index: 'security', host: 'ks-worker-1' },
        't',
      ).body,
    );
    expect(body).toMatchObject({ sourcetype: 'killswitch:event', index: 'security', host: 'ks-worker-1' });
  });

  it('refuses to format without a token, naming the subscription and not the event', () => {
    expect(() => format('splunk_hec', sample())).toThrow(/sub-1 has no HEC token/);
  });
});

describe('only envelope fields leave', () => {
  it('a property outside the contract never reaches any format', () => {
    const event = sample();
    const planted = structuredClone(event) as KillSwitchEvent & { debug?: string };
    (planted.data.credential as Record<string, unknown>).value = 'PLANTED-SECRET-1';
    (planted.data as Record<string, unknown>).raw = 'PLANTED-SECRET-2';
    planted.debug = 'PLANTED-SECRET-3';
    for (const f of ['slack', 'teams', 'teams_adaptive', 'cef', 'splunk_hec'] as const) {
      const req = format(f, planted, {}, 'tok');
      expect(req.body, f).not.toContain('PLANTED-SECRET');
      expect(JSON.stringify(req.headers ?? {}), f).not.toContain('PLANTED-SECRET');
      // The same request as for the clean envelope: nothing was added from outside the contract.
      expect(req, f).toEqual(format(f, event, {}, 'tok'));
    }
  });
});

/**
 * Hostile bytes against every body route of the real ingress over loopback (docs/sources.md, "Hostile
 * bytes"): a Content-Encoding the body does not have, secrets planted as keys and values, a
 * `webhook-timestamp` with trailing garbage, invalid UTF-8, a charset other than UTF-8, and strings
 * PostgreSQL or Slack cannot store (U+0000, lone UTF-16 surrogates). Each gets a 4xx naming the
 * problem, never a 5xx, never an echo of a key or value, and starts nothing.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { WorkflowNotFoundError } from '@temporalio/client';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killSwitchWorkflowId } from '../../contracts/run';
import { capturedLogs, startHarness, type Harness } from '../helpers/harness';
import { fuzzSamples, type FuzzSample } from './fuzz-samples';

const ADMIN = `admin-${randomBytes(16).toString('hex')}`;

let h: Harness;
let samples: FuzzSample[];
let genericSecret: string;
let servers: Array<{ close(): Promise<void> }> = [];
beforeAll(async () => {
  const setup = await fuzzSamples();
  genericSecret = setup.env.GENERIC_WEBHOOK_SECRETS!;
  h = await startHarness({
    worker: false,
    env: { ...setup.env, API_TOKENS: `admin:${ADMIN}` },
    config: setup.config,
  });
  samples = setup.samples;
  servers = setup.servers;
});
afterAll(async () => {
  await h?.close();
  await Promise.all(servers.map((s) => s.close()));
});

interface Answer {
  status: number;
  text: string;
  json: any;
  logs: string;
}

async function send(
  path: string,
  body: Buffer | string,
  headers: Record<string, string>,
  method = 'POST',
): Promise<Answer> {
  const before = capturedLogs.length;
  const res = await fetch(`${h.baseUrl}${path}`, { method, headers, body });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  // The ingress logs after it answered: wait for the request's completion line.
  const rid = res.headers.get('x-request-id') ?? '';
  for (
    let i = 0;
    i < 50 &&
    !capturedLogs.slice(before).some((l) => l.includes(rid) && /request (completed|errored)/.test(l));
    i++
  ) {
    await new Promise((r) => setTimeout(r, 10));
  }
  return { status: res.status, text, json, logs: capturedLogs.slice(before).join('') };
}

/** One of the sample's documents, changed by `fn`; NDJSON reports change their first line. */
function mutated(
  sample: FuzzSample,
  fn: (doc: any) => void,
): { body: string; headers: Record<string, string> } {
  const base = sample.build();
  const lines = base.body.split('\n');
  const doc = JSON.parse(lines[0]!);
  fn(doc);
  lines[0] = JSON.stringify(doc);
  const body = lines.join('\n');
  return { body, headers: { ...base.headers, ...sample.sign(body) } };
}

const first = (doc: any): any => (Array.isArray(doc) ? doc[0] : doc);

/** The object of the sample's first finding that holds a free-text location field, and that field. */
function textField(name: string, doc: any): { obj: any; key: string } {
  const d = first(doc);
  switch (name) {
    case 'generic':
      return { obj: d.location, key: 'file' };
    case 'trufflehog':
      return { obj: d.SourceMetadata.Data.Git, key: 'file' };
    case 'gitleaks':
      return { obj: d, key: 'File' };
    case 'kingfisher':
      return { obj: d.findings[0].finding, key: 'path' };
    case 'github':
      return { obj: d.alert, key: 'secret_type' };
    case 'github_partner':
      return { obj: d, key: 'url' };
    case 'gitguardian':
      return { obj: d.incident.occurrences[0], key: 'filepath' };
    case 'custom':
      return { obj: d.findings[0], key: 'file' };
    case 'gitlab':
      return { obj: d, key: 'location' };
    default:
      throw new Error(`no text field known for ${name}`);
  }
}

/** Accepted as sent: 202 (a run or an enrichment started) or 204 (partner, GitLab). */
const ACCEPTED = [202, 204];

function expectProblem(a: Answer, status: number, slug: string) {
  expect(a.status, a.text).toBe(status);
  expect(a.json?.type).toBe(`urn:secret-kill-switch:problem:${slug}`);
}

describe('Content-Encoding the body does not have', () => {
  const routes = () => [
    ...samples.map((s) => ({ name: s.name, path: s.path, headers: s.build().headers, method: 'POST' })),
    { name: 'slack', path: '/slack/events', headers: { 'content-type': 'application/json' }, method: 'POST' },
    {
      name: 'codec',
      path: '/codec/decode',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${h.codecToken}`,
        'x-namespace': h.config.temporal.namespace,
      },
      method: 'POST',
    },
    {
      name: 'admin dry-run',
      path: '/admin/dry-run',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      method: 'PUT',
    },
    {
      name: 'admin sources',
      path: '/admin/sources/generic',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      method: 'PUT',
    },
  ];

  it('answers 400 (gzip, deflate, br) or 415 (unknown coding) on every body route, logged at warn, never 5xx', async () => {
    const got: Record<string, string> = {};
    const want: Record<string, string> = {};
    for (const r of routes()) {
      for (const coding of ['gzip', 'deflate', 'br']) {
        const a = await send(
          r.path,
          '{"enabled":true,"payloads":[]}',
          { ...r.headers, 'content-encoding': coding },
          r.method,
        );
        // GitLab's router answers its problems itself (its own contract); everything else logs at warn.
        const warned = r.name === 'gitlab' || /"level":40[^\n]*undecodable-body/.test(a.logs);
        got[`${r.name} ${coding}`] =
          `${a.status} ${a.json?.type} ${a.json?.detail?.includes(coding)} error-log:${/"level":50/.test(a.logs)} stack:${a.logs.includes('"stack"')} warned:${warned}`;
        want[`${r.name} ${coding}`] =
          `400 urn:secret-kill-switch:problem:undecodable-body true error-log:false stack:false warned:true`;
      }
      const unknown = await send(r.path, '{}', { ...r.headers, 'content-encoding': 'x-snappy' }, r.method);
      got[`${r.name} x-snappy`] =
        `${unknown.status} ${unknown.json?.type} error-log:${/"level":50/.test(unknown.logs)}`;
      want[`${r.name} x-snappy`] =
        `415 urn:secret-kill-switch:problem:unsupported-content-encoding error-log:false`;
    }
    expect(got).toEqual(want);
  });

  it('still takes a body that really is gzip-compressed', async () => {
    const generic = samples.find((s) => s.name === 'generic')!;
    const { body, headers } = generic.build();
    const a = await send(generic.path, gzipSync(body), { ...headers, 'content-encoding': 'gzip' });
    expect(a.status, a.text).toBe(202);
    await h.client.workflow.getHandle(a.json.workflowId).terminate('test cleanup');
  });
});

describe('secrets planted as keys and values are never echoed', () => {
  const key = () => `ghp_${randomBytes(18).toString('hex')}`;
  const value = () => `sk_live_${randomBytes(18).toString('hex')}`;

  /** Plants secret-shaped keys at the top, inside a nested object and in a record, plus a value in a typed field. */
  const plant: Record<string, (doc: any, k: () => string, v: () => string) => void> = {
    generic: (d, k, v) => {
      d[k()] = 1;
      d.credentialRef = { [`${k()}-x`]: v() };
      d.location[k()] = v();
      d.severity = v();
    },
    trufflehog: (d, k, v) => {
      d[k()] = v();
      d.SourceMetadata.Data[k()] = { line: v() };
      d.Verified = v();
    },
    gitleaks: (d, k, v) => {
      d[0][k()] = v();
      d[0].StartLine = v();
    },
    kingfisher: (d, k, v) => {
      d.findings[0][k()] = v();
      d.findings[0].finding.line = v();
    },
    github: (d, k, v) => {
      d[k()] = v();
      d.alert.number = v();
    },
    github_partner: (d, k, v) => {
      d[0][k()] = v();
      d[0].type = { [k()]: v() };
    },
    gitguardian: (d, k, v) => {
      d[k()] = v();
      d.incident.id = v();
    },
    custom: (d, k, v) => {
      delete d.findings[0].value;
      d.findings[0][k()] = v();
    },
    gitlab: (d, k, v) => {
      d[0][k()] = v();
      d[0].type = v();
    },
  };

  it('in every source: a 4xx that names neither the keys nor the values, in the answer or the log', async () => {
    const got: Record<string, string> = {};
    const want: Record<string, string> = {};
    for (const s of samples) {
      const keys: string[] = [];
      const values: string[] = [];
      const k = () => {
        keys.push(key());
        return keys.at(-1)!;
      };
      const v = () => {
        values.push(value());
        return values.at(-1)!;
      };
      const { body, headers } = mutated(s, (d) => plant[s.name]!(d, k, v));
      const a = await send(s.path, body, headers);
      const echoed = [...keys, ...values].filter((p) => a.text.includes(p) || a.logs.includes(p)).length;
      got[s.name] = `${a.status === 400 || a.status === 422 ? '4xx' : a.status} echoed:${echoed}`;
      want[s.name] = '4xx echoed:0';
    }
    expect(got).toEqual(want);
  });

  it('names an unknown key by its position', async () => {
    const generic = samples.find((s) => s.name === 'generic')!;
    const k = key();
    const { body, headers } = mutated(generic, (d) => {
      d.credentialRef = { role: 'app_x', [`${k}-x`]: 'y' };
      d[k] = 1;
    });
    const a = await send(generic.path, body, headers);
    expectProblem(a, 422, 'invalid-detection');
    const fields = (a.json.errors as Array<{ field: string }>).map((e) => e.field).sort();
    expect(fields).toEqual(['<key#8>', 'credentialRef.<key#2>']);
    expect(a.text).not.toContain(k);
  });

  it('the admin and read APIs and the codec do not echo unknown keys either', async () => {
    const k = key();
    const admin = await send(
      '/admin/dry-run',
      JSON.stringify({ enabled: true, scope: 'global', [k]: 1 }),
      { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      'PUT',
    );
    expectProblem(admin, 422, 'invalid-request');
    expect(admin.json.errors).toEqual([{ field: '<key#3>', message: 'unknown field' }]);
    expect(admin.text + admin.logs).not.toContain(k);

    const query = await fetch(`${h.baseUrl}/api/detections?${k}=1`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    const qText = await query.text();
    expect(query.status).toBe(422);
    expect(JSON.parse(qText).errors).toEqual([{ field: '<key#1>', message: 'unknown field' }]);
    expect(qText).not.toContain(k);

    const codec = await send(
      '/codec/decode',
      JSON.stringify({ payloads: [{ metadata: { [k]: '!not base64!' } }] }),
      {
        'content-type': 'application/json',
        authorization: `Bearer ${h.codecToken}`,
        'x-namespace': h.config.temporal.namespace,
      },
    );
    expectProblem(codec, 422, 'invalid-request');
    expect(codec.json.errors[0].field).toBe('payloads[0].metadata.<key#1>');
    expect(codec.text + codec.logs).not.toContain(k);
  });

  it('nor a secret in the query string, a Content-Type or a path segment: not in the answer, not in the log', async () => {
    const k = key();
    const generic = samples.find((x) => x.name === 'generic')!.build();
    const q = await send(`/webhooks/generic?token=${k}`, generic.body, generic.headers);
    expect(q.status).toBe(202);
    expect(q.logs).toContain('/webhooks/generic');
    expect(q.text + q.logs).not.toContain(k);

    const ct = await send('/webhooks/generic', '{}', { 'content-type': `text/${k}; x=${k}` });
    expectProblem(ct, 415, 'unsupported-media-type');
    expect(ct.json.detail).toMatch(/got another media type$/);
    expect(ct.text + ct.logs).not.toContain(k);
    const plain = await send('/webhooks/generic', '{}', { 'content-type': 'text/plain' });
    expect(plain.json.detail).toMatch(/got text\/plain$/);
    const odd = await send('/webhooks/generic', '{}', { 'content-type': `${k} secret` });
    expectProblem(odd, 415, 'unsupported-media-type');
    expect(odd.text + odd.logs).not.toContain(k);

    const path = await send(
      `/admin/sources/${k}`,
      JSON.stringify({ enabled: false }),
      { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      'PUT',
    );
    expectProblem(path, 404, 'unknown-source');
    expect(path.text).not.toContain(k);
  });
});

describe('webhook-timestamp and webhook-id', () => {
  it('refuses a timestamp with trailing garbage (400) that the signature library would read as a number', async () => {
    const body = samples.find((s) => s.name === 'generic')!.build().body;
    const id = `msg_${randomBytes(6).toString('hex')}`;
    const ts = new Date();
    const signature = new Webhook(genericSecret).sign(id, ts, body);
    const headers = { 'content-type': 'application/json', 'webhook-id': id, 'webhook-signature': signature };
    const bad = await send('/webhooks/generic', body, {
      ...headers,
      'webhook-timestamp': `${Math.floor(ts.getTime() / 1000)}xyz`,
    });
    expectProblem(bad, 400, 'invalid-signature-headers');
    expect(bad.json.detail).toContain('webhook-timestamp');
    // The same delivery with the timestamp as digits is accepted: only the garbage made the difference.
    const good = await send('/webhooks/generic', body, {
      ...headers,
      'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
    });
    expect(good.status, good.text).toBe(202);
    await h.client.workflow.getHandle(good.json.workflowId).terminate('test cleanup');
  });

  it('refuses a webhook-id that is not printable ASCII (400), without echoing it', async () => {
    const body = samples.find((s) => s.name === 'generic')!.build().body;
    const id = `msg_\u00e9${randomBytes(6).toString('hex')}`;
    const ts = new Date();
    const a = await send('/webhooks/generic', body, {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)),
      'webhook-signature': new Webhook(genericSecret).sign(id, ts, body),
    });
    expectProblem(a, 400, 'invalid-header');
    expect(a.json.detail).toContain('webhook-id');
  });
});

/** The sample's body with one byte of a location string replaced by 0xFF (never valid UTF-8), signed over its bytes. */
function invalidUtf8(s: FuzzSample): { body: Buffer; headers: Record<string, string> } {
  const marker = 'QQQQ';
  const { body } = mutated(s, (d) => {
    const f = textField(s.name, d);
    f.obj[f.key] = `${f.obj[f.key]}${marker}`;
  });
  const bytes = Buffer.from(body, 'latin1');
  bytes[bytes.indexOf(marker) + 1] = 0xff;
  return { body: bytes, headers: { ...s.build().headers, ...s.sign(bytes.toString('latin1')) } };
}

describe('invalid UTF-8', () => {
  it('every source answers 400 "not valid UTF-8" (before authentication), never 401 or 2xx', async () => {
    const got: Record<string, string> = {};
    const want: Record<string, string> = {};
    for (const s of samples) {
      const { body, headers } = invalidUtf8(s);
      const a = await send(s.path, body, headers);
      got[s.name] = `${a.status} ${a.json?.type} ${a.json?.detail}`;
      want[s.name] = '400 urn:secret-kill-switch:problem:invalid-utf8 the body is not valid UTF-8';
    }
    expect(got).toEqual(want);
  });

  it('Slack events too', async () => {
    const body = Buffer.concat([
      Buffer.from('{"type":"event_callback","x":"a'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}'),
    ]);
    const a = await send('/slack/events', body, slackHeaders(body.toString('latin1')));
    expectProblem(a, 400, 'invalid-utf8');
  });
});

function slackHeaders(body: string, contentType = 'application/json'): Record<string, string> {
  const ts = String(Math.floor(Date.now() / 1000));
  return {
    'content-type': contentType,
    'x-slack-request-timestamp': ts,
    'x-slack-signature': `v0=${createHmac('sha256', h.slack.signingSecret).update(`v0:${ts}:${body}`).digest('hex')}`,
  };
}

describe('charsets other than UTF-8', () => {
  it('every source answers 415 naming the charset; charset=utf-8 and us-ascii are taken', async () => {
    const got: Record<string, string> = {};
    const want: Record<string, string> = {};
    for (const s of samples) {
      const { body, headers } = s.build();
      const type = headers['content-type']!;
      const a = await send(s.path, body, { ...headers, 'content-type': `${type}; charset=utf-16` });
      const ok = await send(s.path, body, {
        ...headers,
        ...s.sign(body),
        'content-type': `${type}; charset=${s.name === 'gitlab' ? 'us-ascii' : 'UTF-8'}`,
      });
      got[s.name] =
        `${a.status} ${a.json?.type} names:${String(a.json?.detail).includes('utf-16')} utf-8:${ACCEPTED.includes(ok.status) ? 'accepted' : ok.status}`;
      want[s.name] = '415 urn:secret-kill-switch:problem:unsupported-charset names:true utf-8:accepted';
    }
    expect(got).toEqual(want);
  });

  it('the admin API, the codec and Slack events too', async () => {
    const utf16 = Buffer.from('{"enabled":true,"scope":"global"}', 'utf16le');
    const admin = await send(
      '/admin/dry-run',
      utf16,
      { 'content-type': 'application/json; charset=utf-16le', authorization: `Bearer ${ADMIN}` },
      'PUT',
    );
    expectProblem(admin, 415, 'unsupported-charset');
    const codec = await send('/codec/decode', utf16, {
      'content-type': 'application/json; charset=utf-16',
      authorization: `Bearer ${h.codecToken}`,
      'x-namespace': h.config.temporal.namespace,
    });
    expectProblem(codec, 415, 'unsupported-charset');
    const slack = await send(
      '/slack/events',
      '{}',
      slackHeaders('{}', 'application/json; charset=iso-8859-1'),
    );
    expectProblem(slack, 415, 'unsupported-charset');
  });
});

describe('strings PostgreSQL or Slack cannot store', () => {
  /**
   * The run a sample's delivery would have started does not exist: the kill switch run of its
   * leaked PostgreSQL password, or GitHub's enrichment run. GitGuardian's deliveries carry no
   * secret and name the run by a keyed hash of the incident; their 4xx is the proof.
   */
  async function expectNothingStarted(s: FuzzSample, doc: any, headers: Record<string, string>) {
    if (s.name === 'gitguardian') return;
    const password = /postgres:\/\/[^:]+:(pw-[0-9a-f]+)@/.exec(JSON.stringify(doc))?.[1];
    const id =
      s.name === 'github'
        ? `enrich-github-${headers['x-github-delivery']}`
        : killSwitchWorkflowId('postgres_password', h.keys.fingerprint(password!));
    await expect(h.client.workflow.getHandle(id).describe(), s.name).rejects.toBeInstanceOf(
      WorkflowNotFoundError,
    );
  }

  const cases: Array<[string, (o: any, key: string) => void]> = [
    ['a lone high surrogate in a value', (o, key) => (o[key] = `${o[key]}\ud800`)],
    ['a lone low surrogate in a value', (o, key) => (o[key] = `\udc00${o[key]}`)],
    ['U+0000 in a value', (o, key) => (o[key] = `${o[key]}\u0000x`)],
    ['a lone surrogate in a key', (o) => (o['note\ud800'] = 'x')],
    ['U+0000 in a key', (o) => (o['note\u0000'] = 'x')],
  ];

  it.each(cases)(
    'every source refuses %s with 422 (GitLab: 400, its contract) naming the field, and starts nothing',
    async (_what, change) => {
      const got: Record<string, string> = {};
      const want: Record<string, string> = {};
      const sent: Array<[FuzzSample, any, Record<string, string>]> = [];
      for (const s of samples) {
        let doc: any;
        const { body, headers } = mutated(s, (d) => {
          const f = textField(s.name, d);
          change(f.obj, f.key);
          doc = d;
        });
        const a = await send(s.path, body, headers);
        got[s.name] =
          `${a.status} ${a.json?.type} ${/cannot be stored/.test(a.json?.errors?.[0]?.message) ? 'named' : 'unnamed'}`;
        want[s.name] =
          `${s.name === 'gitlab' ? 400 : 422} urn:secret-kill-switch:problem:unstorable-string named`;
        sent.push([s, doc, headers]);
      }
      expect(got).toEqual(want);
      for (const [s, doc, headers] of sent) await expectNothingStarted(s, doc, headers);
    },
  );

  it('names the field by its path, and an unknown key by its position', async () => {
    const generic = samples.find((s) => s.name === 'generic')!;
    const v = mutated(generic, (d) => (d.location.file = 'a\ud800'));
    const value = await send(generic.path, v.body, v.headers);
    expect(value.json.errors).toEqual([
      { field: 'location.file', message: 'contains a lone UTF-16 surrogate, which cannot be stored' },
    ]);
    const k = mutated(generic, (d) => (d.credentialRef = { role: 'app_x', 'r\u0000': 'y' }));
    const key = await send(generic.path, k.body, k.headers);
    expect(key.json.errors).toEqual([
      { field: 'credentialRef.<key#2>', message: 'key contains U+0000, which cannot be stored' },
    ]);
  });

  it('Slack events, the admin API and the codec refuse them too', async () => {
    const slackBody = JSON.stringify({ type: 'block_actions', user: { id: 'U1\ud800' } });
    const slack = await send('/slack/events', slackBody, slackHeaders(slackBody));
    expectProblem(slack, 422, 'unstorable-string');
    const form = `payload=${encodeURIComponent('{"type":"x"}')}&team_domain=a%00b`;
    const slackForm = await send(
      '/slack/events',
      form,
      slackHeaders(form, 'application/x-www-form-urlencoded'),
    );
    expectProblem(slackForm, 422, 'unstorable-string');

    const admin = await send(
      '/admin/dry-run',
      JSON.stringify({ enabled: true, scope: 'global', by: 'eve\ud800' }),
      { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      'PUT',
    );
    expectProblem(admin, 422, 'unstorable-string');
    expect(admin.json.errors).toEqual([
      { field: 'by', message: 'contains a lone UTF-16 surrogate, which cannot be stored' },
    ]);
    const sources = await send(
      '/admin/sources/generic',
      JSON.stringify({ enabled: true, by: 'eve\u0000' }),
      { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      'PUT',
    );
    expectProblem(sources, 422, 'unstorable-string');

    const codec = await send(
      '/codec/encode',
      JSON.stringify({ payloads: [{ metadata: { 'k\ud800': 'AA==' } }] }),
      {
        'content-type': 'application/json',
        authorization: `Bearer ${h.codecToken}`,
        'x-namespace': h.config.temporal.namespace,
      },
    );
    expectProblem(codec, 422, 'unstorable-string');
  });
});

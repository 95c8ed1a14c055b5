/**
 * Fuzzing the ingress over loopback: at least 10,000 mutated bodies and headers across every
 * source. Invariants: never a 5xx; a request whose authentication was broken by the mutation is
 * never accepted; neither is one holding U+0000 or a lone surrogate; every workflow that exists
 * afterwards was answered to an authenticated request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturedLogs, startHarness, type Harness } from '../helpers/harness';
import { fuzzSamples, type FuzzSample } from './fuzz-samples';

const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

/** mulberry32: small, seedable, good enough to pick mutations reproducibly. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let h: Harness;
let samples: FuzzSample[];
let servers: Array<{ close(): Promise<void> }> = [];
beforeAll(async () => {
  const setup = await fuzzSamples();
  h = await startHarness({ worker: false, env: setup.env, config: setup.config });
  samples = setup.samples;
  servers = setup.servers;
});
afterAll(async () => {
  await h?.close();
  await Promise.all(servers.map((s) => s.close()));
});

/** `unstorable`: the body holds U+0000 or a lone surrogate (JSON escapes), which no source may accept. */
type Mutant = {
  body: Buffer;
  headers: Record<string, string>;
  authenticated: boolean;
  path: string;
  unstorable?: boolean;
};

function mutate(sample: FuzzSample, next: () => number): Mutant {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const base = sample.build();
  const body = Buffer.from(base.body);
  const headers = { ...base.headers };
  const strategy = Math.floor(next() * 7);
  switch (strategy) {
    case 0: {
      // Flip bytes, keep the signature: the signature no longer matches.
      const n = 1 + Math.floor(next() * 5);
      for (let i = 0; i < n; i++) {
        const at = Math.floor(next() * body.length);
        body[at] = (body[at]! + 1 + Math.floor(next() * 254)) % 256;
      }
      return {
        body,
        headers,
        authenticated: sample.name === 'gitlab' || body.equals(Buffer.from(base.body)),
        path: sample.path,
      };
    }
    case 1: {
      // Truncate, keep the signature.
      const cut = body.subarray(0, Math.floor(next() * body.length));
      return {
        body: cut,
        headers,
        authenticated: sample.name === 'gitlab' || cut.equals(Buffer.from(base.body)),
        path: sample.path,
      };
    }
    case 2: {
      // Drop or garble one authentication header.
      const names = sample.authHeaders;
      const name = pick(names);
      if (next() < 0.5) delete headers[name];
      else
        headers[name] = pick([
          '',
          'v1,AAAA',
          'sha256=00',
          'x'.repeat(5000),
          '\u00ff\u00fe',
          headers[name]!.split('').reverse().join(''),
        ]);
      return { body, headers, authenticated: false, path: sample.path };
    }
    case 3: {
      // Odd content types and header noise; the signature stays valid, so 2xx is allowed.
      headers['content-type'] = pick([
        'application/json',
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/json; charset=latin1',
        'application/json; charset=utf-16',
        '',
        'multipart/form-data; boundary=x',
      ]);
      // A Content-Encoding the body does not have (the body is never compressed here).
      if (next() < 0.3) headers['content-encoding'] = pick(['gzip', 'deflate', 'br', 'x-snappy', 'gzip, br']);
      headers['x-request-id'] = pick(['ok-1', '../../etc/passwd', 'a'.repeat(300), '%00']);
      return { body, headers, authenticated: true, path: sample.path };
    }
    case 4:
    case 5: {
      // Structural JSON mutation, then re-signed: authenticated but possibly nonsense.
      let doc: unknown;
      try {
        doc = JSON.parse(base.body);
      } catch {
        doc = base.body;
      }
      const weird: unknown[] = [
        null,
        0,
        -1,
        1e308,
        true,
        '',
        'x'.repeat(10_000),
        [],
        {},
        [[[[[[[[[[]]]]]]]]]],
        { __proto__: { polluted: 1 } },
        '\u0000',
        '😀',
        { constructor: { prototype: { x: 1 } } },
        'x\ud800',
        '\udc00',
        { 'k\ud800': 1, 'n\u0000': 'x\u0000' },
      ];
      const walk = (v: unknown, depth: number): unknown => {
        if (depth > 6) return v;
        if (Array.isArray(v)) return next() < 0.2 ? pick(weird) : v.map((x) => walk(x, depth + 1));
        if (v && typeof v === 'object') {
          const out: Record<string, unknown> = {};
          for (const [k, x] of Object.entries(v)) {
            const r = next();
            if (r < 0.1) continue; // drop a key
            out[r < 0.15 ? `${k}_x` : k] = r < 0.35 ? pick(weird) : walk(x, depth + 1);
          }
          if (next() < 0.1) out[pick(['__proto__', 'constructor', 'extra', ''])] = pick(weird);
          return out;
        }
        return next() < 0.3 ? pick(weird) : v;
      };
      const mutated = sample.serialize ? sample.serialize(walk(doc, 0)) : JSON.stringify(walk(doc, 0));
      const signed = sample.sign(mutated);
      return {
        body: Buffer.from(mutated),
        headers: { ...headers, ...signed },
        authenticated: true,
        path: sample.path,
        unstorable: /\\u0000|\\ud[89a-f][0-9a-f]{2}/.test(mutated),
      };
    }
    default: {
      // Random bytes, properly signed.
      const len = Math.floor(next() * 512);
      const bytes = Buffer.from(Array.from({ length: len }, () => Math.floor(next() * 256)));
      return {
        body: bytes,
        headers: { ...headers, ...sample.sign(bytes.toString('latin1')) },
        authenticated: true,
        path: sample.path,
      };
    }
  }
}

describe(`fuzzing every source (${ITERATIONS} requests, seed ${SEED})`, () => {
  it('never answers 5xx, never accepts a broken signature, never starts a workflow for an unauthenticated request', async () => {
    const next = prng(SEED);
    const statuses = new Map<number, number>();
    const acceptedIds = new Set<string>();
    const violations: string[] = [];
    const budget = new Map<string, number>();
    let i = 0;
    const worker = async () => {
      while (i < ITERATIONS) {
        const n = i++;
        const sample = samples[n % samples.length]!;
        const m = mutate(sample, next);
        let res: Response;
        try {
          res = await fetch(`${h.baseUrl}${m.path}`, { method: 'POST', headers: m.headers, body: m.body });
        } catch (err) {
          violations.push(`#${n} ${sample.name}: transport error ${(err as Error).message}`);
          continue;
        }
        const text = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status >= 500) {
          // Name the cause from the server's own log line for this request id.
          const rid = res.headers.get('x-request-id') ?? '';
          const line = capturedLogs.find((l) => l.includes(rid) && l.includes('unhandled error')) ?? '';
          const cause = /"message":"([^"]{0,200})/.exec(line)?.[1] ?? text.slice(0, 200);
          violations.push(`#${n} ${sample.name}: ${res.status} ${cause}`);
        }
        if (!m.authenticated && res.status < 300)
          violations.push(`#${n} ${sample.name}: accepted an unauthenticated request (${res.status})`);
        if (m.unstorable && res.status < 300)
          violations.push(`#${n} ${sample.name}: accepted a string PostgreSQL cannot store (${res.status})`);
        if (res.status === 204) {
          // Sources that answer 204 name no run: bound their runs by the findings they accepted.
          try {
            const sent = JSON.parse(m.body.toString('utf8')) as unknown;
            budget.set(sample.name, (budget.get(sample.name) ?? 0) + (Array.isArray(sent) ? sent.length : 1));
          } catch {
            /* an unparseable body cannot have been accepted */
          }
        }
        if (res.status < 300 && text) {
          try {
            const j = JSON.parse(text) as { workflowId?: string; runs?: Array<{ workflowId: string }> };
            if (j.workflowId) acceptedIds.add(j.workflowId);
            for (const r of j.runs ?? []) acceptedIds.add(r.workflowId);
          } catch {
            /* 204 and friends */
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const summary = [...statuses.entries()]
      .sort(([a], [b]) => a - b)
      .map(([s, c]) => `${s}×${c}`)
      .join(' ');
    process.stdout.write(`fuzz: ${ITERATIONS} requests, seed ${SEED}: ${summary}\n`);
    expect(violations.slice(0, 20)).toEqual([]);
    expect([...statuses.keys()].every((s) => s < 500)).toBe(true);

    // Every workflow on this task queue was answered to an authenticated request.
    const started: Array<{ id: string; source: string }> = [];
    for await (const wf of h.client.workflow.list({ query: `TaskQueue = "${h.taskQueue}"` })) {
      started.push({
        id: wf.workflowId,
        source: String((wf.searchAttributes as Record<string, unknown[]>).KillSwitchSource?.[0] ?? ''),
      });
    }
    const noContent = new Set(['gitlab', 'github_partner']);
    const unexplained = started.filter((w) => !acceptedIds.has(w.id) && !noContent.has(w.source));
    expect(unexplained).toEqual([]);
    for (const source of noContent) {
      const runs = new Set(
        started.filter((w) => w.source === source && !acceptedIds.has(w.id)).map((w) => w.id),
      ).size;
      expect(
        runs,
        `${source}: runs beyond the findings its authenticated requests delivered`,
      ).toBeLessThanOrEqual(budget.get(source) ?? 0);
    }
    // The fuzzer did reach the dispatch path, so the check above means something.
    expect(acceptedIds.size).toBeGreaterThan(0);
  });
});

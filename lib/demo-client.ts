/**
 * The demo's client side, shared by `npm run send-test-detection` and `killswitch send-test
 * --demo`: mint a fresh key (with live sessions) from the running demo service, send a signed
 * detection of it to the generic webhook, follow the run to its end and check, from outside, that
 * the key and its sessions are dead. Prints what happened; never prints the key (only its prefix).
 */
import { randomUUID } from 'node:crypto';
import { DEMO_SYSTEM, readDemoEndpoint, type DemoEndpoint } from './demo-service';
import { describeFetchError, postSigned } from './webhook-client';

/** Steps where a run waits for a person (approval, a held breaker, a retry after an escalation). */
export const HUMAN_WAIT_STEPS: ReadonlySet<string> = new Set([
  'awaiting_approval',
  'held_by_breaker',
  'awaiting_retry',
]);

export class DemoError extends Error {}

export interface DemoRunOptions {
  /** The ingress's base URL, e.g. http://localhost:3000. */
  ingress: string;
  /** The generic webhook; default `<ingress>/webhooks/generic`. */
  webhookUrl?: string;
  dataDir: string;
  signingSecret: string;
  /** A viewer or admin token of the read API: with it the run is followed to its audit row. */
  apiToken?: string;
  out: (text: string) => void;
  sleep?: (ms: number) => Promise<void>;
  /** How long to wait for the run (default 60 s). */
  timeoutMs?: number;
  /** Sessions to open with the key before it leaks (default 2). */
  sessions?: number;
}

export interface DemoRunReport {
  workflowId: string;
  /** The audit row's outcome; undefined when the run was followed without the read API. */
  outcome?: string;
  keyStatus: number;
  sessionStatuses: number[];
  temporalUiUrl?: string;
  /** True when the run ended contained and the key and every session are refused. */
  contained: boolean;
}

interface AuditRow {
  outcome: string;
  owningSystem: string | null;
  policyAction: string | null;
  policyRule: string | null;
  sessionsTerminated: number | null;
  verificationMethod: string | null;
  revokedAt: string | null;
  verifiedDeadAt: string | null;
  failureType: string | null;
  failureMessage: string | null;
  id: string;
}
interface Detail {
  live: { status: string; step?: string; temporalUiUrl?: string } | null;
  audit: AuditRow[];
}

async function call(
  what: string,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: unknown },
): Promise<{ status: number; body: Record<string, unknown> }> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: init.method ?? 'GET',
      headers: {
        ...init.headers,
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new DemoError(`${what}: ${describeFetchError(new URL(url).origin, err)}`);
  }
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { detail: text.slice(0, 200) };
  }
  return { status: res.status, body };
}

/** GET /api/whoami with an API key or a session: the status only. */
export async function demoWhoami(baseUrl: string, auth: { key: string } | { session: string }) {
  const r = await call('the demo service', `${baseUrl}/api/whoami`, {
    headers:
      'key' in auth ? { authorization: `Bearer ${auth.key}` } : { cookie: `demo_session=${auth.session}` },
  });
  return r.status;
}

/** A fresh key and `sessions` sessions opened with it. */
export async function mintDemoKey(
  ep: DemoEndpoint,
  sessions: number,
): Promise<{ id: string; prefix: string; value: string; sessions: string[] }> {
  const what = `the demo service at ${ep.url} (is npm start still running?)`;
  const r = await call(what, `${ep.url}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ep.adminToken}` },
    body: { owner: 'send-test-detection' },
  });
  if (r.status !== 201)
    throw new DemoError(`the demo service refused to mint a key: ${r.status} ${String(r.body.error ?? '')}`);
  const { id, prefix, secret } = r.body as { id: string; prefix: string; secret: string };
  const opened: string[] = [];
  for (let i = 0; i < sessions; i++) {
    const s = await call(what, `${ep.url}/api/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}` },
    });
    if (s.status !== 201) throw new DemoError(`the demo service refused a login: ${s.status}`);
    opened.push(String(s.body.session));
  }
  return { id, prefix, value: secret, sessions: opened };
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const line = (label: string, text: string) => `${label.padEnd(10)}  ${text}\n`;

/** The whole demo round trip; throws a DemoError naming the URL and the cause when a step cannot be done. */
export async function sendDemoDetection(o: DemoRunOptions): Promise<DemoRunReport> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const ingress = o.ingress.replace(/\/+$/, '');
  const webhookUrl = o.webhookUrl ?? `${ingress}/webhooks/generic`;
  let ep: DemoEndpoint;
  try {
    ep = readDemoEndpoint(o.dataDir);
  } catch (err) {
    throw new DemoError((err as Error).message);
  }

  const key = await mintDemoKey(ep, o.sessions ?? 2);
  const before = await demoWhoami(ep.url, { key: key.value });
  o.out(
    line(
      DEMO_SYSTEM,
      `minted demo key demo_${key.prefix}_… at ${ep.url} and logged in ${key.sessions.length} session(s); whoami answers ${before}`,
    ),
  );

  const detection = {
    scanner: 'send-test-detection',
    findingId: randomUUID(),
    credentialType: 'generic',
    secret: key.value,
    credentialRef: { service: DEMO_SYSTEM, keyPrefix: key.prefix },
    location: { repository: 'acme/demo-service', file: 'config/api-keys.env', line: 3 },
    severity: 'high',
  };
  const sentAt = Date.now();
  let res: Awaited<ReturnType<typeof postSigned>>;
  try {
    res = await postSigned(webhookUrl, detection, o.signingSecret);
  } catch (err) {
    throw new DemoError(
      `${describeFetchError(webhookUrl, err)} (is npm start running? set PORT or KILLSWITCH_URL to its port)`,
    );
  }
  const accepted = res.body as { workflowId?: string; temporalUiUrl?: string; detail?: string };
  if (res.status !== 202 || !accepted.workflowId)
    throw new DemoError(
      `${webhookUrl} refused the detection: ${res.status} ${accepted.detail ?? res.text.slice(0, 300)}`,
    );
  const workflowId = accepted.workflowId;
  o.out(line('sent', `a signed detection of the leaked key to ${webhookUrl}: ${res.status} accepted`));
  o.out(line('workflow', workflowId));

  const deadline = sentAt + (o.timeoutMs ?? 60_000);
  let audit: AuditRow | undefined;
  let uiUrl = accepted.temporalUiUrl;
  let waitingFor: string | undefined;
  let followApi = !!o.apiToken;
  if (!o.apiToken)
    o.out(line('note', 'no API token (KILLSWITCH_API_TOKEN or the data folder): watching the key instead'));
  for (;;) {
    if (followApi) {
      const r = await call('the read API', `${ingress}/api/detections/${encodeURIComponent(workflowId)}`, {
        headers: { authorization: `Bearer ${o.apiToken}`, accept: 'application/json' },
      });
      if (r.status === 200) {
        const d = r.body as unknown as Detail;
        uiUrl = d.live?.temporalUiUrl ?? uiUrl;
        const open = d.live?.status === 'RUNNING';
        audit = d.audit?.[d.audit.length - 1];
        if (open && d.live?.step && HUMAN_WAIT_STEPS.has(d.live.step)) waitingFor = d.live.step;
        if ((audit && !open) || waitingFor) break;
      } else if (r.status !== 404) {
        // 404: not recorded yet. Anything else (the API off, a refused token): watch the key.
        o.out(
          line(
            'note',
            `the read API answered ${r.status} ${String(r.body.detail ?? '')}: watching the key instead`,
          ),
        );
        followApi = false;
      }
    } else if ((await demoWhoami(ep.url, { key: key.value })) === 401) {
      await sleep(1000); // the run still expires sessions and verifies after the revocation
      break;
    }
    if (Date.now() > deadline) break;
    await sleep(500);
  }
  const elapsed = Date.now() - sentAt;

  const keyStatus = await demoWhoami(ep.url, { key: key.value });
  const sessionStatuses: number[] = [];
  for (const s of key.sessions) sessionStatuses.push(await demoWhoami(ep.url, { session: s }));
  const sessionsDead = sessionStatuses.every((s) => s === 401);

  if (audit) {
    o.out(
      line(
        'outcome',
        `${audit.outcome} after ${seconds(elapsed)} (system ${audit.owningSystem ?? '-'}, policy ${audit.policyAction ?? '-'}, rule ${audit.policyRule ?? '-'}; audit row ${audit.id})`,
      ),
    );
    if (audit.revokedAt) o.out(line('revoked', audit.revokedAt));
    o.out(line('sessions', `${audit.sessionsTerminated ?? 0} expired`));
    if (audit.verifiedDeadAt)
      o.out(line('verified', `dead at ${audit.verifiedDeadAt} (${audit.verificationMethod ?? '-'})`));
    if (audit.failureType) o.out(line('failure', `${audit.failureType}: ${audit.failureMessage ?? ''}`));
  } else if (waitingFor) {
    o.out(line('waiting', `the run waits for a person (step ${waitingFor}) after ${seconds(elapsed)}`));
  } else if (followApi) {
    o.out(line('timeout', `no audit row after ${seconds(elapsed)}`));
  }
  o.out(
    line(
      'check',
      `whoami with the leaked key: ${keyStatus}${keyStatus === 401 ? ' (dead)' : ''}; with its sessions: ${sessionStatuses.join(', ') || '-'}${sessionStatuses.length && sessionsDead ? ' (expired)' : ''}`,
    ),
  );
  o.out(
    line(
      'slack',
      "the run's message is posted to SLACK_CHANNEL, or logged by npm start when Slack is not configured",
    ),
  );
  if (uiUrl) o.out(line('open', `${uiUrl}  (first open the login link npm start printed)`));
  o.out(line('follow', `killswitch status ${workflowId}`));

  const contained = (audit ? audit.outcome === 'contained' : !followApi) && keyStatus === 401 && sessionsDead;
  return {
    workflowId,
    ...(audit ? { outcome: audit.outcome } : {}),
    keyStatus,
    sessionStatuses,
    ...(uiUrl ? { temporalUiUrl: uiUrl } : {}),
    contained,
  };
}

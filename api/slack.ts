/**
 * Slack as the control surface: a Bolt app behind the ingress at POST /slack/events.
 *
 * The ingress is its receiver (Bolt's custom-receiver contract): the route reads the raw body,
 * Bolt's verifySlackRequest checks Slack's v0 signature with the signing secret (plus a 5-minute
 * window both ways), failures become problem+json 401s, and verified requests go to
 * `app.processEvent` with an `ack` that answers the HTTP request. Buttons on the run's message map
 * to the workflow's own messages (decide / retry / markFalsePositive updates, acknowledge signal)
 * through the ingress's Temporal client, with `by` = the Slack user; only approvers may approve,
 * deny, retry or mark a false positive. `/killswitch status|recent` answers from the audit table and
 * the live `currentStep` query. Every answer to a person is ephemeral.
 */
import {
  App,
  verifySlackRequest,
  type BlockAction,
  type Logger as BoltLogger,
  type LogLevel,
} from '@slack/bolt';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import type { Db } from '../lib/db';
import { isTemporalUnavailable, type TemporalTarget } from '../lib/dispatch';
import type { Logger } from '../lib/logger';
import { temporalUiRunUrl } from '../lib/config';
import { SlackAction } from '../contracts/slack-actions';
import {
  acknowledgeSignal,
  currentStepQuery,
  decideUpdate,
  falsePositiveUpdate,
  retryUpdate,
  type StepStatus,
} from '../contracts/run';
import { auditLinesOf, recentAuditLines, type AuditLine } from '../store/audit';
import { workflowIdByDetection, workflowIdByFingerprint } from '../store/sightings';
import { readRawBody } from './body';
import { HttpProblem } from '../contracts/errors';
import { assertStorable, parseJsonText } from './sources/validate';

export interface SlackControlDeps {
  botToken: string;
  signingSecret: string;
  apiUrl: string;
  temporal: TemporalTarget;
  db: Db;
  /** policy.approvers: Slack user ids or e-mails; empty means anyone who can click. */
  approvers: readonly string[];
  logger: Logger;
  now?: () => Date;
}

const TOLERANCE_S = 5 * 60;
const SLACK_USER = /^[UW][A-Z0-9]{2,20}$/;
const buttonValue = z.object({
  w: z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/),
  r: z.string().regex(/^[A-Za-z0-9-]{1,64}$/),
});
const statusArg = z.string().regex(/^[A-Za-z0-9._:#/@+=-]{1,300}$/);

type HumanActionId = Exclude<
  (typeof SlackAction)[keyof typeof SlackAction],
  typeof SlackAction.openTemporalUi
>;
const APPROVER_ONLY: ReadonlySet<string> = new Set([
  SlackAction.approve,
  SlackAction.deny,
  SlackAction.retry,
  SlackAction.falsePositive,
]);

function boltLogger(log: Logger): BoltLogger {
  let level = 'info';
  return {
    debug: (...m: unknown[]) => log.debug({ bolt: true }, m.map(String).join(' ')),
    info: (...m: unknown[]) => log.info({ bolt: true }, m.map(String).join(' ')),
    warn: (...m: unknown[]) => log.warn({ bolt: true }, m.map(String).join(' ')),
    error: (...m: unknown[]) => log.error({ bolt: true }, m.map(String).join(' ')),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level as LogLevel,
    setName: () => undefined,
  };
}

/** Reasons a workflow gives for refusing an update, as a person should read them. */
function refusalReason(err: unknown): string {
  if (err instanceof WorkflowUpdateFailedError) return err.cause?.message ?? err.message;
  if (err instanceof WorkflowNotFoundError || (err as { name?: string })?.name === 'WorkflowNotFoundError')
    return 'this run is over; nothing waits for a decision any more';
  if (isTemporalUnavailable(err)) return 'Temporal cannot be reached right now; try again in a moment';
  return 'the request failed; see the kill switch log';
}

function isRunOver(err: unknown): boolean {
  return (
    err instanceof WorkflowNotFoundError ||
    /already completed|not found/i.test((err as { message?: string })?.message ?? '')
  );
}

/** Builds the /slack/events route: raw body, signature, then Bolt. */
export function createSlackEvents(deps: SlackControlDeps): RequestHandler[] {
  const now = deps.now ?? (() => new Date());
  const log = deps.logger.child({ component: 'slack-control' });
  const temporal = deps.temporal;
  const approvers = [...deps.approvers];
  const approverEmails = approvers.filter((a) => a.includes('@')).map((a) => a.toLowerCase());

  const bolt = new App({
    token: deps.botToken,
    // The ingress is the receiver: it verifies, parses and calls processEvent itself.
    receiver: { init: () => undefined, start: () => Promise.resolve(), stop: () => Promise.resolve() },
    tokenVerificationEnabled: false,
    clientOptions: { slackApiUrl: deps.apiUrl, retryConfig: { retries: 1 }, timeout: 5_000 },
    logger: boltLogger(log),
  });

  const withDeadline = <T>(fn: () => Promise<T>) =>
    temporal.client.connection.withDeadline(Date.now() + temporal.deadlineMs, fn);

  /** Who acts: the identity the approvers list knows the user by (id, else e-mail), or null when not an approver. */
  async function approverIdentity(userId: string, client: (typeof bolt)['client']): Promise<string | null> {
    if (approvers.length === 0 || approvers.includes(userId)) return userId;
    if (approverEmails.length === 0) return null;
    try {
      const info = await client.users.info({ user: userId });
      const email = (
        info.user as { profile?: { email?: string } } | undefined
      )?.profile?.email?.toLowerCase();
      if (email && approverEmails.includes(email)) return approvers.find((a) => a.toLowerCase() === email)!;
    } catch (err) {
      log.warn(
        { user: userId, error: (err as Error).message },
        'users.info failed; treating the user as not an approver',
      );
    }
    return null;
  }

  bolt.action(SlackAction.openTemporalUi, async ({ ack }) => {
    await ack();
  });

  bolt.action<BlockAction>(
    {
      type: 'block_actions',
      action_id: new RegExp(
        `^(${[SlackAction.approve, SlackAction.deny, SlackAction.retry, SlackAction.acknowledge, SlackAction.falsePositive].join('|')})$`,
      ),
    },
    async ({ ack, body, action, respond, client }) => {
      await ack();
      const say = (text: string) => respond({ response_type: 'ephemeral', replace_original: false, text });
      const actionId = action.action_id as HumanActionId;
      const userId = body.user?.id;
      const parsed = buttonValue.safeParse(
        (() => {
          try {
            return JSON.parse((action as { value?: string }).value ?? '');
          } catch {
            return undefined;
          }
        })(),
      );
      if (!userId || !SLACK_USER.test(userId) || !parsed.success) {
        log.warn({ actionId }, 'Slack action without a valid user or run reference');
        await say(':warning: This button does not name a kill switch run.');
        return;
      }
      const { w: workflowId, r: runId } = parsed.data;
      let by = userId;
      if (APPROVER_ONLY.has(actionId)) {
        const identity = await approverIdentity(userId, client);
        if (!identity) {
          log.warn({ user: userId, actionId, workflowId }, 'refused: not an approver');
          await say(
            `:no_entry: You are not an approver of kill switch runs, so this was not sent. Approvers: ${approvers.map((a) => (a.includes('@') ? a : `<@${a}>`)).join(', ')}.`,
          );
          return;
        }
        by = identity;
      }
      const handle = temporal.client.workflow.getHandle(workflowId, runId);
      const reason = `via Slack (${body.team?.domain ?? body.team?.id ?? 'workspace'})`;
      try {
        let done: string;
        switch (actionId) {
          case SlackAction.approve:
            await withDeadline(() =>
              handle.executeUpdate(decideUpdate, { args: [{ decision: 'approve', by, reason }] }),
            );
            done = ':white_check_mark: Approved: containment starts now. The message follows the run.';
            break;
          case SlackAction.deny:
            await withDeadline(() =>
              handle.executeUpdate(decideUpdate, { args: [{ decision: 'deny', by, reason }] }),
            );
            done = ':no_entry: Denied: the credential is left as it is and the run ends as denied.';
            break;
          case SlackAction.retry:
            await withDeadline(() => handle.executeUpdate(retryUpdate, { args: [{ by, reason }] }));
            done = ':repeat: Retrying the rotation. The message follows the run.';
            break;
          case SlackAction.falsePositive:
            await withDeadline(() => handle.executeUpdate(falsePositiveUpdate, { args: [{ by, reason }] }));
            done = ':white_circle: Marked a false positive: nothing is rotated.';
            break;
          case SlackAction.acknowledge: {
            const status = await withDeadline(() => handle.query(currentStepQuery));
            if (status.step !== 'awaiting_retry') {
              await say(`Nothing to acknowledge: the run is ${status.step.replace(/_/g, ' ')}.`);
              return;
            }
            await withDeadline(() => handle.signal(acknowledgeSignal, { by }));
            done = ':eyes: Acknowledged: PagerDuty knows someone is on it.';
            break;
          }
        }
        log.info({ user: userId, by, actionId, workflowId, runId }, 'Slack action sent to the run');
        await say(done);
      } catch (err) {
        const why =
          isRunOver(err) && !(err instanceof WorkflowUpdateFailedError)
            ? 'this run is over; nothing waits for a decision any more'
            : refusalReason(err);
        log.warn({ user: userId, actionId, workflowId, reason: why }, 'Slack action refused');
        await say(`:warning: Not done: ${why}`);
      }
    },
  );

  bolt.command('/killswitch', async ({ command, ack }) => {
    const [sub = '', ...rest] = command.text.trim().split(/\s+/);
    let answer: { text: string; blocks?: unknown[] };
    try {
      if (sub === 'recent' && rest.length === 0) answer = await recent();
      else if (sub === 'status' && rest.length === 1 && statusArg.safeParse(rest[0]).success)
        answer = await status(rest[0]!);
      else
        answer = {
          text: 'Usage: `/killswitch status <detection id | workflow id | credential fingerprint>` or `/killswitch recent`',
        };
    } catch (err) {
      log.error({ err: (err as Error).message }, '/killswitch failed');
      answer = { text: ':warning: The kill switch could not answer; see its log.' };
    }
    await ack({
      response_type: 'ephemeral',
      text: answer.text,
      ...(answer.blocks ? { blocks: answer.blocks as never } : {}),
    });
  });

  const ref = (r: Record<string, unknown>) =>
    Object.entries(r)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(', ');
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const line = (a: AuditLine) =>
    `• \`${a.outcome}\` ${esc(a.credential_type)} (${esc(ref(a.credential_ref))}) · ${esc(a.owning_system ?? 'no owner')}${a.failure_type ? ` · ${esc(a.failure_type)}` : ''} · ${new Date(a.recorded_at).toISOString()} · <${temporalUiRunUrl(temporal.uiUrl, temporal.namespace, a.workflow_id, a.run_id)}|run>`;

  async function recent() {
    const rows = await recentAuditLines(deps.db);
    if (rows.length === 0) return { text: 'No audit rows yet.' };
    const text = `*Last ${rows.length} outcomes*\n${rows.map(line).join('\n')}`;
    return {
      text: text.slice(0, 3900),
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 2900) } }],
    };
  }

  /** A detection id, a workflow id or a fingerprint (hmac-sha256:<hex>) -> the run's workflow id. */
  async function workflowIdOf(arg: string): Promise<string | null> {
    if (/^killswitch-[a-z_]+-[0-9a-f]{32}$/.test(arg)) return arg;
    const hex = arg.replace(/^hmac-sha256:/, '');
    if (/^[0-9a-f]{32,}$/.test(hex)) {
      const like = `killswitch-%-${hex.slice(0, 32)}`;
      const found = await workflowIdByFingerprint(deps.db, like, `hmac-sha256:${hex}`);
      if (found) return found;
    }
    return (await workflowIdByDetection(deps.db, arg)) ?? null;
  }

  async function status(arg: string) {
    const workflowId = await workflowIdOf(arg);
    if (!workflowId) return { text: `No run found for \`${esc(arg)}\`.` };
    const rows = await auditLinesOf(deps.db, workflowId);
    let live: StepStatus | null = null;
    let liveNote = '';
    try {
      live = await withDeadline(() => temporal.client.workflow.getHandle(workflowId).query(currentStepQuery));
    } catch (err) {
      liveNote = isTemporalUnavailable(err)
        ? 'Temporal unreachable'
        : 'no live run (finished and past retention, or never started)';
    }
    const parts = [`*Run* \`${workflowId}\``];
    if (live) {
      parts.push(
        `*Live step:* ${live.step.replace(/_/g, ' ')}${live.outcome ? ` · outcome ${live.outcome}` : ''}${live.owner ? ` · owner ${esc(live.owner.system)}` : ''}${live.failure ? ` · ${esc(live.failure.type)} at ${live.failure.step}` : ''} · ${live.sightings.length} sighting(s)`,
      );
    } else parts.push(`*Live step:* ${liveNote}`);
    parts.push(rows.length ? `*Audit*\n${rows.map(line).join('\n')}` : '*Audit:* no row yet');
    const text = parts.join('\n');
    return {
      text: text.slice(0, 3900),
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 2900) } }],
    };
  }

  // Strict UTF-8 before the signature: Bolt's verifier signs the decoded string (see app.ts).
  const rawBody = readRawBody({ limit: '256kb', utf8: true });

  const verify: RequestHandler = (req, _res, next) => {
    const sig = req.headers['x-slack-signature'];
    const tsHeader = req.headers['x-slack-request-timestamp'];
    if (typeof sig !== 'string' || typeof tsHeader !== 'string') {
      return next(
        new HttpProblem(
          401,
          'missing-signature',
          'Missing signature',
          'X-Slack-Signature and X-Slack-Request-Timestamp are required',
        ),
      );
    }
    const ts = /^\d{1,12}$/.test(tsHeader) ? Number(tsHeader) : NaN;
    const nowS = Math.floor(now().getTime() / 1000);
    if (!Number.isFinite(ts) || Math.abs(nowS - ts) > TOLERANCE_S) {
      return next(
        new HttpProblem(
          401,
          'stale-timestamp',
          'Stale timestamp',
          'X-Slack-Request-Timestamp is more than 5 minutes away from the server time',
        ),
      );
    }
    const body = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
    try {
      verifySlackRequest({
        signingSecret: deps.signingSecret,
        body,
        headers: { 'x-slack-signature': sig, 'x-slack-request-timestamp': ts },
        nowMilliseconds: now().getTime(),
      });
    } catch {
      return next(
        new HttpProblem(
          401,
          'invalid-signature',
          'Invalid signature',
          'the X-Slack-Signature does not match this app',
        ),
      );
    }
    next();
  };

  const dispatch = async (req: Request, res: Response, next: NextFunction) => {
    const raw = (req.body as Buffer).toString('utf8');
    let body: Record<string, unknown>;
    // The ingress's rules for strings: none PostgreSQL or Slack cannot store (422), none echoed.
    try {
      if (req.is('application/x-www-form-urlencoded')) {
        const form = Object.fromEntries(new URLSearchParams(raw));
        assertStorable(form);
        body =
          typeof form.payload === 'string'
            ? (parseJsonText(form.payload, 'the payload field') as Record<string, unknown>)
            : form;
      } else if (req.is('application/json')) {
        body = parseJsonText(raw, 'the signed body') as Record<string, unknown>;
      } else {
        return next(
          new HttpProblem(
            415,
            'unsupported-media-type',
            'Unsupported media type',
            'Slack sends application/x-www-form-urlencoded or application/json',
          ),
        );
      }
    } catch (problem) {
      return next(problem);
    }
    if (!body || typeof body !== 'object' || Array.isArray(body))
      return next(new HttpProblem(400, 'malformed-payload', 'Malformed payload', 'not a Slack request'));
    if (body.ssl_check) return void res.status(200).end();
    if (body.type === 'url_verification' && typeof body.challenge === 'string')
      return void res.json({ challenge: body.challenge });

    let answered = false;
    const ack = async (response?: unknown) => {
      if (answered) return;
      answered = true;
      if (response === undefined || response === '') res.status(200).end();
      else if (typeof response === 'string') res.status(200).type('text/plain').send(response);
      else res.status(200).json(response);
    };
    const retryNum = Number(req.headers['x-slack-retry-num']);
    try {
      await bolt.processEvent({
        body,
        ack,
        ...(Number.isInteger(retryNum) ? { retryNum } : {}),
        ...(typeof req.headers['x-slack-retry-reason'] === 'string'
          ? { retryReason: req.headers['x-slack-retry-reason'] }
          : {}),
      });
    } catch (err) {
      if (!answered) return next(err);
      log.error({ error: (err as Error).message }, 'Slack interaction failed after it was acknowledged');
      return;
    }
    if (!answered)
      next(
        new HttpProblem(
          404,
          'unhandled-slack-request',
          'Unhandled Slack request',
          'the kill switch has no handler for this Slack request',
        ),
      );
  };

  return [rawBody, verify, dispatch];
}

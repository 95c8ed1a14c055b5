/**
 * Slack through the Web API client (@slack/web-api, the one Bolt uses): ONE Block Kit message per run, posted at its first
 * milestone and kept current with chat.update (see slack-message.ts for the ledger that orders the
 * updates). The message shows the outcome, the credential reference (never a value), the owner, the
 * step, timings, and the buttons that apply to the run's state; the ingress handles the clicks
 * (api/slack.ts). 429 is retried by Temporal after Retry-After.
 */
import * as webApi from '@slack/web-api';
import { ApplicationFailure } from '@temporalio/common';
import { durationToMs } from '../contracts/durations';
import { ErrorType } from '../contracts/errors';
import { type RunSummary, type Step } from '../contracts/run';
import { describeCredential, describeLocation, describeTimings } from './describe';
import { SlackAction } from '../contracts/slack-actions';

export interface SlackMessage {
  text: string;
  blocks: unknown[];
}

export interface SlackSender {
  /** False when no bot token / channel is set: messages are logged instead. */
  readonly configured: boolean;
  /** `sent` with the message ts and the channel id Slack answered with, or `logged`. */
  post(
    message: SlackMessage,
    opts?: { channel?: string | undefined },
  ): Promise<{ status: 'sent' | 'logged'; ts?: string; channel?: string }>;
  /** Replaces the message `ts` in `channel` (the channel id from post). */
  update(channel: string, ts: string, message: SlackMessage): Promise<void>;
  /** How long this worker still holds back chat.postMessage after a 429 (0: not throttled). */
  throttledForMs?(): number;
}

/** What a button carries: the run it acts on (never anything secret). */
export interface SlackButtonValue {
  w: string;
  r: string;
}

/** Which activity renders the message: each milestone, the approval request, the outcome. */
export type MessageKind = 'progress' | 'approval' | 'outcome';

/** A summary may carry the workflow's current step; without it the step is derived from the milestones. */
export type SlackSummary = RunSummary & { step?: Step };

interface Phase {
  /** Shown as the Step field. */
  label: string;
  /** Which humans the run waits for: a decision (approval, breaker) or a retry after an escalation. */
  waiting: 'decision' | 'retry' | null;
  /** Still moving (not a final outcome). */
  inFlight: boolean;
}

/** Slack mrkdwn treats &, < and > as control characters; scanner-supplied text must not inject links or mentions. */
export function mrkdwnEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const STEP_LABELS: Partial<Record<Step, string>> = {
  received: 'received',
  assessing: 'looking up the owner and the policy',
  checking_prior: 'checking earlier runs',
  resolving_owner: 'resolving the owner',
  deciding: 'applying the policy',
  awaiting_approval: 'waiting for approval',
  held_by_breaker: 'held by the mass-leak breaker',
  revoking: 'revoking',
  issuing_replacement: 'issuing the replacement',
  overlap: 'overlap: both values valid until the old one is revoked',
  expiring_sessions: 'expiring sessions',
  expiring_user_sessions: 'expiring user sessions',
  verifying: 'verifying the leaked value is dead',
  closing_loop: 'telling the scanners',
  escalating: 'paging PagerDuty',
  auditing: 'recording the audit row',
  notifying: 'notifying',
  awaiting_retry: 'escalated: waiting for a human (retry, acknowledge, false positive)',
  done: 'done',
};

function retryWindowOpen(s: RunSummary): boolean {
  if (s.outcome !== 'escalated' || !s.policy || s.policy.dryRun) return false;
  try {
    return durationToMs(s.policy.retryWindow) > 0;
  } catch {
    return false;
  }
}

/** Where the run is, from the activity that renders it and the milestones in the summary. */
export function phaseOf(s: SlackSummary, kind: MessageKind): Phase {
  if (kind === 'approval') {
    return {
      label: STEP_LABELS[s.heldByBreaker ? 'held_by_breaker' : 'awaiting_approval']!,
      waiting: 'decision',
      inFlight: true,
    };
  }
  if (kind === 'outcome') {
    // An escalation with a retry window open keeps the run waiting for a human.
    if (retryWindowOpen(s)) return { label: STEP_LABELS.awaiting_retry!, waiting: 'retry', inFlight: false };
    return { label: `done: ${s.outcome.replace(/_/g, ' ')}`, waiting: null, inFlight: false };
  }
  // A waiting step named by the workflow wins; otherwise the milestone reached says more than the
  // step (progress is reported right after a milestone, before the next step is entered).
  if (s.step === 'awaiting_approval' || s.step === 'held_by_breaker')
    return { label: STEP_LABELS[s.step]!, waiting: 'decision', inFlight: true };
  // Progress during the retry window (the failure is still on the summary) waits for a human.
  if (s.step === 'awaiting_retry' || (!s.step && s.failure && s.outcome === 'escalated')) {
    return { label: STEP_LABELS.awaiting_retry!, waiting: 'retry', inFlight: false };
  }
  const t = s.timeline;
  const label = t.verifiedDeadAt
    ? 'verified dead; recording'
    : t.sessionsExpiredAt || s.sessions
      ? 'sessions expired; verifying'
      : t.rotatedAt || t.revokedAt
        ? `${s.rotation?.mode === 'quarantine' ? 'quarantined' : 'revoked'}; expiring sessions`
        : s.decidedBy
          ? `${s.decidedBy.startsWith('approve') ? 'approved' : 'decided'}; containing`
          : `owner resolved${s.owner ? ` (${s.owner.system})` : ''}; containing`;
  return { label, waiting: null, inFlight: true };
}

function button(
  text: string,
  actionId: string,
  value: SlackButtonValue,
  extra: Record<string, unknown> = {},
) {
  return {
    type: 'button',
    text: { type: 'plain_text', text },
    action_id: actionId,
    value: JSON.stringify(value),
    ...extra,
  };
}

function confirm(title: string, text: string, yes: string) {
  return {
    title: { type: 'plain_text', text: title },
    text: { type: 'mrkdwn', text },
    confirm: { type: 'plain_text', text: yes },
    deny: { type: 'plain_text', text: 'Cancel' },
  };
}

/** The run's one message in any state: the same builder for every milestone, the approval request and the outcome. */
export function buildRunMessage(s: SlackSummary, kind: MessageKind, runUrl: string): SlackMessage {
  const d = s.detection;
  const cred = describeCredential(d);
  const phase = phaseOf(s, kind);
  const held = kind === 'approval' && s.heldByBreaker && s.owner;
  const titles: Record<RunSummary['outcome'], string> = {
    contained: `:white_check_mark: Leaked credential contained: ${cred}`,
    escalated: `:rotating_light: Containment failed, escalated: ${cred}`,
    dry_run: `:test_tube: Dry run${s.failure ? ' (containment would fail)' : ''}: ${cred}`,
    notified: `:mega: Leaked credential reported, no action by policy: ${cred}`,
    denied: `:no_entry: Containment denied by a human: ${cred}`,
    already_contained: `:white_check_mark: Already contained, seen again: ${cred}`,
    ignored: `Ignored by policy: ${cred}`,
    false_positive: `:white_circle: Marked a false positive${s.falsePositiveBy ? ` by ${s.falsePositiveBy}` : ''}, nothing rotated: ${cred}`,
  };
  const title =
    kind === 'approval'
      ? held
        ? `:rotating_light: Mass-leak breaker tripped for ${s.owner!.system}: approval needed to rotate ${cred}`
        : `:raised_hand: Approval needed to rotate ${cred}`
      : kind === 'progress' && phase.inFlight
        ? `:hourglass_flowing_sand: Containing leaked credential (${phase.label}): ${cred}`
        : titles[s.outcome];

  const status =
    kind === 'outcome' || !phase.inFlight
      ? `${s.outcome}${s.failure ? ` (${s.failure.type} at ${s.failure.step})` : ''}`
      : kind === 'approval'
        ? 'waiting for a decision'
        : 'in progress';
  const fields = [
    `*Outcome*\n${status}`,
    `*Step*\n${phase.label}`,
    `*Owner*\n${s.owner ? `${s.owner.system}${s.owner.team ? ` (team ${s.owner.team})` : ''}` : 'no owning system found'}`,
    `*Source*\n${d.source}${d.scanner ? ` / ${d.scanner}` : ''} · ${d.severity}`,
    `*Timings*\n${describeTimings(s)}`,
  ];
  const loc = describeLocation(d);
  if (loc) fields.push(`*Found at*\n${loc}`);
  if (s.sessions)
    fields.push(
      `*Sessions terminated*\n${s.sessions.terminated}${s.userSessions ? ` (+${s.userSessions.expired} user sessions)` : ''}`,
    );
  if (s.verification) fields.push(`*Verification*\n${s.verification.method}`);
  if (s.pagerduty)
    fields.push(
      `*PagerDuty*\n${s.pagerduty.status}${s.resolvedIncident ? ', resolved' : ''} (dedup ${s.pagerduty.dedupKey})`,
    );
  if (s.policy)
    fields.push(`*Policy*\n${s.policy.action} (${s.policy.rule})${s.policy.dryRun ? ', dry run' : ''}`);
  const people = [
    s.decidedBy && `decided: ${s.decidedBy}`,
    s.acknowledgedBy && `acknowledged by ${s.acknowledgedBy}`,
    s.retriedBy?.length && `retried by ${s.retriedBy.join(', ')}`,
    s.falsePositiveBy && `false positive: ${s.falsePositiveBy}`,
  ].filter((x): x is string => typeof x === 'string');
  if (people.length) fields.push(`*Humans*\n${people.join('\n')}`);
  if (s.sightings && s.sightings.length > 1)
    fields.push(
      `*Sightings*\n${s.sightings.length} (${[...new Set(s.sightings.map((x) => x.scanner ?? x.source))].join(', ')})`,
    );

  const blocks: unknown[] = [
    { type: 'section', text: { type: 'mrkdwn', text: `*${mrkdwnEscape(title)}*`.slice(0, 3000) } },
    {
      type: 'section',
      fields: fields
        .slice(0, 10)
        .map((text) => ({ type: 'mrkdwn', text: mrkdwnEscape(text).slice(0, 2000) })),
    },
  ];
  if (kind === 'approval') {
    const why = held
      ? `Too many detections for ${s.owner!.system} within ${s.owner!.breaker.window}: automatic rotation is paused. Without a decision within ${s.owner!.breaker.holdTimeout} the run escalates to PagerDuty.`
      : `Policy rule \`${s.policy?.rule ?? 'default'}\`; without a decision within ${s.policy?.approvalTimeout ?? '30m'} the run will ${s.policy?.onTimeout === 'rotate' ? 'rotate anyway' : s.policy?.onTimeout === 'quarantine' ? 'quarantine the credential' : 'escalate to PagerDuty'}.`;
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: mrkdwnEscape(why).slice(0, 2900) } });
  }
  if (s.failure)
    blocks.push({
      type: 'section',
      text: { type: 'mrkdwn', text: `> ${mrkdwnEscape(s.failure.message).slice(0, 2900)}` },
    });
  if (s.enrichedRun) {
    // An early escalation of a finding fetched late: the credential's own run took over.
    const e = s.enrichedRun;
    const text = `:link: The finding was fetched late and joined <${mrkdwnEscape(e.temporalUiUrl.replace(/\|/g, '%7C'))}|the run of its credential>: ${mrkdwnEscape(e.outcome.replace(/_/g, ' '))}.`;
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 2900) } });
  }
  if (s.auditError) {
    blocks.push({
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: mrkdwnEscape(`:warning: The audit row could not be written: ${s.auditError}`).slice(0, 2900),
        },
      ],
    });
  }
  if (s.rotation && !s.rotation.newValueDelivered && !phase.inFlight) {
    blocks.push({
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: mrkdwnEscape(`No new value was delivered: ${s.rotation.note}`).slice(0, 2900),
        },
      ],
    });
  }

  const v: SlackButtonValue = { w: s.workflowId, r: s.runId };
  const buttons: unknown[] = [];
  if (phase.waiting === 'decision') {
    buttons.push(button('Approve', SlackAction.approve, v, { style: 'primary' }));
    buttons.push(
      button('Deny', SlackAction.deny, v, {
        style: 'danger',
        confirm: confirm(
          'Deny containment?',
          'The credential stays as it is and the run ends as *denied*.',
          'Deny',
        ),
      }),
    );
  }
  if (phase.waiting === 'retry') {
    buttons.push(button('Retry rotation', SlackAction.retry, v, { style: 'primary' }));
    if (!s.acknowledgedBy) buttons.push(button('Acknowledge', SlackAction.acknowledge, v));
  }
  if (phase.waiting) {
    buttons.push(
      button('Mark false positive', SlackAction.falsePositive, v, {
        confirm: confirm(
          'Mark a false positive?',
          'Nothing is rotated; the run ends as *false_positive* with your name on it.',
          'Mark false positive',
        ),
      }),
    );
  }
  buttons.push({
    type: 'button',
    text: { type: 'plain_text', text: 'Open in Temporal UI' },
    url: runUrl,
    action_id: SlackAction.openTemporalUi,
  });
  blocks.push({ type: 'actions', block_id: 'killswitch_actions', elements: buttons });
  return { text: `${title}. Step: ${phase.label}. Run: ${runUrl}`.slice(0, 3900), blocks };
}

/** The outcome message (final state of the run's message). */
export function buildSlackMessage(s: RunSummary, runUrl: string): SlackMessage {
  return buildRunMessage(s, 'outcome', runUrl);
}

/** Asks a human to approve or deny a require_approval run or one held by the breaker. */
export function buildApprovalMessage(s: RunSummary, runUrl: string): SlackMessage {
  return buildRunMessage(s, 'approval', runUrl);
}

export function createSlackSender(opts: {
  token: string | undefined;
  channel: string | undefined;
  apiUrl: string;
  log: (message: SlackMessage) => void;
}): SlackSender {
  if (!opts.token || !opts.channel) {
    return {
      configured: false,
      post: async (message) => {
        opts.log(message);
        return { status: 'logged' };
      },
      update: async (_channel, _ts, message) => {
        opts.log(message);
      },
    };
  }
  const client = new webApi.WebClient(opts.token, {
    slackApiUrl: opts.apiUrl,
    // Temporal owns retries (bounded, visible in history); the client fails fast so it can.
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: 10_000,
  });
  const channel = opts.channel;
  /**
   * After a 429 no activity of this worker calls that Slack method until Retry-After has passed
   * (Slack's limits are per method and workspace, chat.postMessage's also per channel, not per
   * call): the others wait the remaining time, as a retry. chat.update has a limit of its own, so a
   * throttled chat.postMessage does not hold back the updates (burst digests rely on them).
   */
  const quietUntil = { post: 0, update: 0 };
  const call = async <T>(method: keyof typeof quietUntil, fn: () => Promise<T>): Promise<T> => {
    const wait = quietUntil[method] - Date.now();
    if (wait > 0) throw rateLimited(Math.ceil(wait / 1000));
    try {
      return await fn();
    } catch (err) {
      const e = err as { code?: string; retryAfter?: number };
      if (e.code === webApi.ErrorCode.RateLimitedError) {
        quietUntil[method] = Math.max(quietUntil[method], Date.now() + Math.max(1, e.retryAfter ?? 1) * 1000);
      }
      throw classifySlackError(err);
    }
  };
  return {
    configured: true,
    async post(message, to) {
      const target = to?.channel || channel;
      const r = await call('post', () =>
        client.chat.postMessage({
          channel: target,
          text: message.text,
          blocks: message.blocks as never,
          unfurl_links: false,
        }),
      );
      return { status: 'sent', ts: r.ts, channel: r.channel ?? target };
    },
    async update(channelId, ts, message) {
      await call('update', () =>
        client.chat.update({ channel: channelId, ts, text: message.text, blocks: message.blocks as never }),
      );
    },
    throttledForMs: () => Math.max(0, quietUntil.post - Date.now()),
  };
}

function rateLimited(retryAfterSeconds: number): ApplicationFailure {
  return ApplicationFailure.create({
    message: 'Slack rate limited the message',
    type: 'SlackRateLimited',
    nextRetryDelay: `${Math.max(1, retryAfterSeconds)}s`,
  });
}

export function classifySlackError(err: unknown): Error {
  const e = err as { code?: string; retryAfter?: number; data?: { error?: string }; message?: string };
  if (e.code === webApi.ErrorCode.RateLimitedError) return rateLimited(e.retryAfter ?? 1);
  if (e.code === webApi.ErrorCode.PlatformError) {
    const permanent = [
      'channel_not_found',
      'not_in_channel',
      'invalid_auth',
      'account_inactive',
      'token_revoked',
      'invalid_blocks',
      'missing_scope',
      'message_not_found',
      'cant_update_message',
      'edit_window_closed',
      'msg_too_long',
    ];
    const code = e.data?.error ?? 'unknown';
    return ApplicationFailure.create({
      message: `Slack refused the message: ${code}`,
      type: permanent.includes(code) ? ErrorType.NOTIFICATION_REJECTED : 'SlackError',
      nonRetryable: permanent.includes(code),
    });
  }
  return new Error(`Slack request failed: ${e.message ?? String(err)}`);
}

/**
 * Slack confirmation through @slack/bolt's Web API client. One Block Kit message per run outcome;
 * a ledger row makes a retried activity a no-op; 429 is retried by Temporal after Retry-After.
 */
import { webApi } from '@slack/bolt';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType, type RunSummary } from '../workflows/shared';
import { describeCredential, describeLocation, describeTimings } from './describe';

export interface SlackMessage {
  text: string;
  blocks: unknown[];
}

export interface SlackSender {
  /** `sent` with the message ts, or `logged` when Slack is not configured. */
  post(message: SlackMessage): Promise<{ status: 'sent' | 'logged'; ts?: string }>;
  /** TEMPORARY (the Slack engineer replaces it): keep the run's one message current. */
  progress(summary: RunSummary, seq: number, runUrl: string): Promise<{ status: 'sent' | 'logged' | 'skipped' }>;
}

export function buildSlackMessage(s: RunSummary, runUrl: string): SlackMessage {
  const d = s.detection;
  const cred = describeCredential(d);
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
  const title = titles[s.outcome];
  const fields = [
    `*Outcome*\n${s.outcome}${s.failure ? ` (${s.failure.type} at ${s.failure.step})` : ''}`,
    `*Owner*\n${s.owner?.system ?? 'no owning system found'}`,
    `*Source*\n${d.source}${d.scanner ? ` / ${d.scanner}` : ''}`,
    `*Timings*\n${describeTimings(s)}`,
  ];
  const loc = describeLocation(d);
  if (loc) fields.push(`*Found at*\n${loc}`);
  if (s.sessions) fields.push(`*Sessions terminated*\n${s.sessions.terminated}`);
  if (s.verification) fields.push(`*Verification*\n${s.verification.method}`);
  if (s.pagerduty) fields.push(`*PagerDuty*\n${s.pagerduty.status} (dedup ${s.pagerduty.dedupKey})`);
  if (s.policy) fields.push(`*Policy*\n${s.policy.action} (${s.policy.rule})${s.policy.dryRun ? ', dry run' : ''}`);
  if (s.sightings && s.sightings.length > 1) fields.push(`*Sightings*\n${s.sightings.length} (${[...new Set(s.sightings.map((x) => x.scanner ?? x.source))].join(', ')})`);
  if (s.decidedBy) fields.push(`*Decided*\n${s.decidedBy}`);
  const blocks: unknown[] = [
    { type: 'section', text: { type: 'mrkdwn', text: `*${title}*` } },
    { type: 'section', fields: fields.slice(0, 10).map((text) => ({ type: 'mrkdwn', text: text.slice(0, 2000) })) },
  ];
  if (s.failure) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `> ${s.failure.message.slice(0, 2900)}` } });
  if (s.rotation && !s.rotation.newValueDelivered) {
    blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `No new value was delivered: ${s.rotation.note}` }] });
  }
  blocks.push({
    type: 'actions',
    elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open in Temporal UI' }, url: runUrl, action_id: 'open_temporal_ui' }],
  });
  return { text: `${title}. Run: ${runUrl}`, blocks };
}

/** Asks a human to approve or deny a require_approval run (buttons come with the Slack control surface). */
export function buildApprovalMessage(s: RunSummary, runUrl: string): SlackMessage {
  const d = s.detection;
  const held = s.heldByBreaker && s.owner;
  const title = held
    ? `:rotating_light: Mass-leak breaker tripped for ${s.owner!.system}: approval needed to rotate ${describeCredential(d)}`
    : `:raised_hand: Approval needed to rotate ${describeCredential(d)}`;
  const why = held
    ? `Too many detections for ${s.owner!.system} within ${s.owner!.breaker.window}: automatic rotation is paused. Without a decision within ${s.owner!.breaker.holdTimeout} the run escalates to PagerDuty.`
    : `Policy rule \`${s.policy?.rule ?? 'default'}\`; without a decision within ${s.policy?.approvalTimeout ?? '30m'} the run will ${s.policy?.onTimeout === 'rotate' ? 'rotate anyway' : 'escalate to PagerDuty'}.`;
  const loc = describeLocation(d);
  const text = [
    `*${title}*`,
    `Owner: ${s.owner?.system ?? 'none'} · Source: ${d.scanner ?? d.source} · Severity: ${d.severity}${loc ? ` · Found at ${loc}` : ''}`,
    why,
    `Decide with: \`temporal workflow update execute --workflow-id ${s.workflowId} --name decide --input '{"decision":"approve","by":"you@example.com"}'\``,
  ].join('\n');
  return {
    text: `${title}. Run: ${runUrl}`,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 2900) } },
      { type: 'actions', elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open in Temporal UI' }, url: runUrl, action_id: 'open_temporal_ui' }] },
    ],
  };
}

export function createSlackSender(opts: {
  token: string | undefined;
  channel: string | undefined;
  apiUrl: string;
  log: (message: SlackMessage) => void;
}): SlackSender {
  if (!opts.token || !opts.channel) {
    return {
      post: async (message) => {
        opts.log(message);
        return { status: 'logged' };
      },
      progress: async () => ({ status: 'skipped' }),
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
  return {
    progress: async () => ({ status: 'skipped' }),
    async post(message) {
      try {
        const r = await client.chat.postMessage({ channel, text: message.text, blocks: message.blocks as never, unfurl_links: false });
        return { status: 'sent', ts: r.ts };
      } catch (err) {
        throw classifySlackError(err);
      }
    },
  };
}

function classifySlackError(err: unknown): Error {
  const e = err as { code?: string; retryAfter?: number; data?: { error?: string }; message?: string };
  if (e.code === webApi.ErrorCode.RateLimitedError) {
    return ApplicationFailure.create({
      message: 'Slack rate limited the message',
      type: 'SlackRateLimited',
      nextRetryDelay: `${Math.max(1, e.retryAfter ?? 1)}s`,
    });
  }
  if (e.code === webApi.ErrorCode.PlatformError) {
    const permanent = ['channel_not_found', 'not_in_channel', 'invalid_auth', 'account_inactive', 'token_revoked', 'invalid_blocks', 'missing_scope'];
    const code = e.data?.error ?? 'unknown';
    return ApplicationFailure.create({
      message: `Slack refused the message: ${code}`,
      type: permanent.includes(code) ? ErrorType.NOTIFICATION_REJECTED : 'SlackError',
      nonRetryable: permanent.includes(code),
    });
  }
  return new Error(`Slack request failed: ${e.message ?? String(err)}`);
}

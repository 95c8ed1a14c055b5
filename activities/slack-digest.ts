/**
 * Burst digests. Slack allows about one chat.postMessage per second per channel; a burst of N leaks
 * announced one message each would reach people N seconds late. So once the channel has had
 * `after` run messages within the last minute (or Slack is already rate limiting this worker),
 * a routine run (in progress, contained, no action by policy, ...) is not given a message of its
 * own: it becomes one line of the channel's digest message, which is posted once and then kept
 * current with chat.update at most every `updateIntervalMs`. A run that needs a human (approval,
 * the mass-leak breaker, an escalation) always gets its own message with its buttons; if it was
 * already a digest line, the line says so.
 *
 * Durability and exactly-once, across retries and workers (tables in migration 1764600000000):
 * - a digest is one row per channel and time bucket (`windowMs`), created with ON CONFLICT;
 * - a run is placed in one digest by its message-ledger row (`digest_id`), so it is never both;
 * - a line changes (and bumps the digest's `version`) in one statement, only for a newer `seq`;
 * - a render holds an advisory lock on the digest, posts it once (no ts yet) or updates it, and
 *   records the version it showed; a render that finds its version already shown does nothing.
 *   A failed render (a 429) leaves `shown_version` behind, so the activity's retry renders again.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../lib/db';
import * as digests from '../store/digest';
import { recentRunMessages } from '../store/notifications';
import type { RunSummary } from '../contracts/run';
import { describeCredential } from './describe';
import {
  mrkdwnEscape,
  phaseOf,
  type MessageKind,
  type SlackMessage,
  type SlackSender,
  type SlackSummary,
} from './slack';

export interface DigestSettings {
  /** Run messages within the last minute before routine runs are folded into the digest. */
  after: number;
  /** Least time between two renders of one digest (chat.update is rate limited too). */
  updateIntervalMs: number;
  /** A digest gathers runs for at most this long; then the next one starts. */
  windowMs: number;
}

/** How many run lines a digest lists; the rest are counted, and the Temporal UI lists them all. */
export const DIGEST_MAX_LINES = 40;

/** `in_progress`, `needs_human` (has its own message now), or the run's outcome. */
export type DigestState = 'in_progress' | 'needs_human' | RunSummary['outcome'];

export interface DigestLine {
  state: DigestState;
  line: string;
}

/** A run that waits for a human, or failed, keeps a message of its own with its buttons. */
export function needsOwnMessage(s: SlackSummary, kind: MessageKind): boolean {
  if (kind === 'approval') return true;
  if (phaseOf(s, kind).waiting) return true;
  return kind === 'outcome' && s.outcome === 'escalated';
}

const EMOJI: Record<DigestState, string> = {
  in_progress: ':hourglass_flowing_sand:',
  needs_human: ':raised_hand:',
  contained: ':white_check_mark:',
  already_contained: ':white_check_mark:',
  escalated: ':rotating_light:',
  dry_run: ':test_tube:',
  notified: ':mega:',
  denied: ':no_entry:',
  ignored: ':white_circle:',
  false_positive: ':white_circle:',
};

/** One run as a digest line: state, credential reference (a link to the run), owner, step, time to contain. */
export function buildDigestLine(s: SlackSummary, kind: MessageKind, runUrl: string): DigestLine {
  const phase = phaseOf(s, kind);
  const state: DigestState = needsOwnMessage(s, kind)
    ? 'needs_human'
    : phase.inFlight
      ? 'in_progress'
      : s.outcome;
  // The link label may not hold `|` or `>` (they end it); mrkdwnEscape takes care of `>`.
  const cred = mrkdwnEscape(describeCredential(s.detection).replace(/\|/g, '¦')).slice(0, 120);
  const t = s.timeline;
  const dead = t.verifiedDeadAt
    ? ` in ${((Date.parse(t.verifiedDeadAt) - Date.parse(t.receivedAt)) / 1000).toFixed(1)}s`
    : '';
  const what = state === 'needs_human' ? 'needs a human: see its own message' : phase.label;
  const line = `${EMOJI[state]} <${runUrl}|${cred}> · ${mrkdwnEscape(s.owner?.system ?? 'no owner')} · ${mrkdwnEscape(what)}${dead}`;
  return { state, line };
}

/** Is the channel in a burst: `after` run messages within the last minute, or Slack throttling us now. */
export async function inBurst(db: Db, slack: SlackSender, settings: DigestSettings): Promise<boolean> {
  if ((slack.throttledForMs?.() ?? 0) > 0) return true;
  return (await recentRunMessages(db)) >= settings.after;
}

/** The channel's digest for the current time bucket, created if it does not exist yet. */
export async function currentDigest(
  db: Db,
  channel: string,
  settings: DigestSettings,
): Promise<{ id: string }> {
  return digests.currentDigest(db, channel, settings.windowMs);
}

/**
 * Sets the run's line (only a newer `seq` changes it) and returns the digest version that must be
 * shown for this line to be visible, or null when an older state arrived late.
 */
export async function upsertDigestLine(
  db: Db,
  run: { workflowId: string; runId: string },
  digestId: string,
  seq: number,
  l: DigestLine,
): Promise<number | null> {
  return digests.upsertDigestLine(db, run, digestId, seq, l);
}

/** Renders in progress in this worker, per digest, with the newest version asked for meanwhile. */
const inflight = new Map<string, { wanted: number }>();

/** How long one activity keeps re-rendering for lines that arrived during its render. */
const RENDER_LOOP_MS = 4_000;

/**
 * Shows the digest at least at `version`. Within a worker one activity renders a digest at a time;
 * the others hand their version to it and return at once (they must not hold activity slots while
 * containment needs them), and it renders again while newer lines arrive. If it must stop while
 * still behind, it fails retryably: its retry renders whatever the digest holds then. Across
 * workers an advisory lock orders the renders, and a render always shows the digest's current
 * version, so any successful render covers every line written before it.
 */
export async function renderDigest(
  deps: { db: Db; slack: SlackSender },
  digestId: string,
  version: number,
  settings: DigestSettings,
  links: { runsUrl: (since: Date, until: Date) => string },
): Promise<'sent' | 'skipped'> {
  const running = inflight.get(digestId);
  if (running) {
    running.wanted = Math.max(running.wanted, version);
    return 'skipped';
  }
  const state = { wanted: version };
  inflight.set(digestId, state);
  const started = Date.now();
  let result: 'sent' | 'skipped' = 'skipped';
  try {
    for (;;) {
      const target = state.wanted;
      const r = await deps.db.withSession((s) =>
        digests.withDigestLock(s, digestId, () => renderLocked(s, deps.slack, digestId, settings, links)),
      );
      if (r.status === 'sent') result = 'sent';
      if (state.wanted <= Math.max(target, r.shownVersion)) return result;
      if (Date.now() - started > RENDER_LOOP_MS) {
        throw ApplicationFailure.create({
          type: 'SlackDigestBehind',
          message: 'newer digest lines arrived while rendering; retrying to show them',
          nextRetryDelay: '1s',
        });
      }
    }
  } finally {
    inflight.delete(digestId);
  }
}

/** Renders the digest's current state if Slack shows an older one; returns the version now shown. */
async function renderLocked(
  s: Pick<Db, 'query'>,
  slack: SlackSender,
  digestId: string,
  settings: DigestSettings,
  links: { runsUrl: (since: Date, until: Date) => string },
): Promise<{ status: 'sent' | 'skipped'; shownVersion: number }> {
  const first = await digests.digestHead(s, digestId, settings.updateIntervalMs);
  if (!first) return { status: 'skipped', shownVersion: 0 };
  if (Number(first.shown_version) >= Number(first.version))
    return { status: 'skipped', shownVersion: Number(first.shown_version) };
  let d: digests.DigestRow = first;
  // chat.update has its own rate limit: wait out the interval since the last render (the lines that
  // arrive meanwhile are shown by this render too).
  const wait = Number(first.wait_ms ?? 0);
  if (d.ts && wait > 0) {
    await new Promise((r) => setTimeout(r, Math.min(wait, settings.updateIntervalMs)));
    d = await digests.digestRow(s, digestId);
  }
  const shownVersion = Number(d.version);
  const items = await digests.digestItems<DigestState>(s, digestId);
  // The window's runs for the Temporal UI link; the title says since when this digest exists.
  const bucketStart = new Date(Number(d.bucket) * settings.windowMs);
  const message = buildDigestMessage(
    items,
    new Date(d.created_at),
    links.runsUrl(bucketStart, new Date(bucketStart.getTime() + settings.windowMs)),
  );
  if (!d.ts || !d.slack_channel) {
    const r = await slack.post(message, { channel: d.channel });
    await digests.recordDigestPosted(s, digestId, r.ts ?? null, r.channel ?? null, shownVersion);
    return { status: 'sent', shownVersion };
  }
  try {
    await slack.update(d.slack_channel, d.ts, message);
  } catch (err) {
    // Someone deleted the digest in Slack: the next render posts it again.
    if (err instanceof ApplicationFailure && /message_not_found/.test(err.message)) {
      await digests.forgetDigestMessage(s, digestId);
    }
    throw err;
  }
  await digests.recordDigestShown(s, digestId, shownVersion);
  return { status: 'sent', shownVersion };
}

const ORDER: DigestState[] = [
  'needs_human',
  'escalated',
  'in_progress',
  'contained',
  'already_contained',
  'denied',
  'dry_run',
  'notified',
  'false_positive',
  'ignored',
];

const LABEL: Record<DigestState, string> = {
  needs_human: 'need a human (own message)',
  escalated: 'escalated',
  in_progress: 'in progress',
  contained: 'contained',
  already_contained: 'already contained',
  denied: 'denied',
  dry_run: 'dry run',
  notified: 'reported, no action',
  false_positive: 'false positive',
  ignored: 'ignored',
};

/**
 * The digest message: counts by state, then the runs that need attention and the newest others
 * (at most DIGEST_MAX_LINES lines), and a button that lists every run of the window in the Temporal UI.
 */
export function buildDigestMessage(
  items: ReadonlyArray<{ state: DigestState; line: string }>,
  since: Date,
  runsUrl: string,
): SlackMessage {
  const counts = new Map<DigestState, number>();
  for (const i of items) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
  const summary = ORDER.filter((st) => counts.get(st))
    .map((st) => `${counts.get(st)} ${LABEL[st]}`)
    .join(', ');
  const at = since.toISOString().slice(11, 16);
  const title = `:zap: Burst digest: ${items.length} leaked credential${items.length === 1 ? '' : 's'} since ${at} UTC: ${summary}`;
  // Attention first (the order above), then the newest.
  const rank = (st: DigestState) => ORDER.indexOf(st);
  const shown = items
    .map((it, i) => ({ ...it, i }))
    .sort((a, b) => rank(a.state) - rank(b.state) || b.i - a.i)
    .slice(0, DIGEST_MAX_LINES);
  const sections: string[] = [];
  let cur = '';
  for (const it of shown) {
    if (cur.length + it.line.length + 1 > 2900) {
      sections.push(cur);
      cur = '';
    }
    cur += `${cur ? '\n' : ''}${it.line.slice(0, 2900)}`;
  }
  if (cur) sections.push(cur);
  const blocks: unknown[] = [
    { type: 'section', text: { type: 'mrkdwn', text: `*${mrkdwnEscape(title)}*`.slice(0, 3000) } },
    {
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: 'Slack allows about one message a second per channel, so during a burst routine runs share this message; a run that needs a human still gets its own message with its buttons.',
        },
      ],
    },
    ...sections.map((text) => ({ type: 'section', text: { type: 'mrkdwn', text } })),
  ];
  if (items.length > shown.length) {
    blocks.push({
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: `…and ${items.length - shown.length} more (counted above); the Temporal UI lists every run.`,
        },
      ],
    });
  }
  blocks.push({
    type: 'actions',
    block_id: 'killswitch_digest_actions',
    elements: [
      {
        type: 'button',
        text: { type: 'plain_text', text: 'Open these runs in Temporal UI' },
        url: runsUrl,
        action_id: 'open_temporal_ui_digest',
      },
    ],
  });
  return { text: title.slice(0, 3900), blocks };
}

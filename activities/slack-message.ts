/**
 * The run's one Slack message: posted once, then replaced with chat.update as the run moves.
 *
 * Ordering: every upsert carries `order`, the workflow's activity sequence number (Temporal's
 * default activity id counts up in the order the workflow scheduled the activities, and each
 * summary is taken when its activity is scheduled), so a progress update that arrives late never
 * overwrites a newer state. The ledger row (`killswitch_notifications`, kind `message`) holds the
 * ts, the channel id and the newest order shown.
 *
 * Exactly one post: within a worker, upserts of one run are serialised (and a queued newer state
 * makes an older one a no-op, which also keeps the channel under Slack's ~1 message/s); across
 * workers the first inserts a claim row, the others wait for its ts (retryable failure). A retried
 * activity finds the ts and updates instead of posting.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { Db } from '../lib/db';
import {
  claimMessage,
  freeMessageClaim,
  messageLedgerRow,
  placeInDigest,
  promoteFromDigest,
  recordMessagePosted,
  recordMessageShown,
  type RunKey,
} from '../store/notifications';
import type { SlackMessage, SlackSender } from './slack';
import {
  currentDigest,
  inBurst,
  renderDigest,
  upsertDigestLine,
  type DigestLine,
  type DigestSettings,
} from './slack-digest';

export type { RunKey };

/** A claim older than this whose post never completed (a crashed worker) is taken over. */
const ABANDONED_CLAIM_MS = 60_000;

const chains = new Map<string, Promise<void>>();
const newestQueued = new Map<string, number>();

async function serialised<T>(
  key: string,
  order: number,
  fn: (superseded: () => boolean) => Promise<T>,
): Promise<T> {
  newestQueued.set(key, Math.max(newestQueued.get(key) ?? Number.NEGATIVE_INFINITY, order));
  const prev = chains.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = prev.then(() => mine);
  chains.set(key, tail);
  await prev;
  try {
    return await fn(() => (newestQueued.get(key) ?? order) > order);
  } finally {
    release();
    if (chains.get(key) === tail) {
      chains.delete(key);
      newestQueued.delete(key);
    }
  }
}

export type UpsertStatus = 'sent' | 'logged' | 'skipped';

/** Burst digests (slack-digest.ts): when set, a routine run may be shown as a digest line instead. */
export interface DigestOption {
  settings: DigestSettings;
  /** The configured channel (digests are per channel). */
  channel: string;
  /** This state needs a human: it gets (or is promoted to) a message of its own. */
  ownMessage: boolean;
  line: () => DigestLine;
  /** The Temporal UI's list of runs started within a digest's window. */
  runsUrl: (since: Date, until: Date) => string;
}

export async function upsertRunMessage(
  deps: { db: Db; slack: SlackSender },
  run: RunKey,
  order: number,
  build: () => SlackMessage,
  opts: {
    logWhenUnconfigured: boolean;
    digest?: DigestOption;
    /** The owning system's channel (lib/routing.ts); unset: SLACK_CHANNEL. */
    channel?: string;
  },
): Promise<{ status: UpsertStatus; ts?: string }> {
  if (!deps.slack.configured) {
    if (!opts.logWhenUnconfigured) return { status: 'skipped' };
    await deps.slack.post(build());
    return { status: 'logged' };
  }
  const key = `${run.workflowId}\u0000${run.runId}`;
  return serialised(key, order, async (superseded) => {
    // A newer state of this run is queued right behind: it will be shown instead.
    if (superseded()) return { status: 'skipped' };
    const row = await messageLedgerRow(deps.db, run);

    const postAndRecord = async (claimed: 'new' | 'takeover') => {
      let r: Awaited<ReturnType<SlackSender['post']>>;
      try {
        r = await deps.slack.post(build(), { channel: opts.channel });
      } catch (err) {
        // Nothing was posted: free the claim so the retry (or another worker) posts.
        if (claimed === 'new') await freeMessageClaim(deps.db, run);
        throw err;
      }
      await recordMessagePosted(deps.db, run, r.ts ?? null, r.channel ?? null, order);
      return { status: 'sent' as const, ...(r.ts ? { ts: r.ts } : {}) };
    };

    const digest = opts.digest;
    const showInDigest = async (digestId: string, line: DigestLine) => {
      const version = await upsertDigestLine(deps.db, run, digestId, order, line);
      if (version === null) return { status: 'skipped' as const };
      return {
        status: await renderDigest(deps, digestId, version, digest!.settings, { runsUrl: digest!.runsUrl }),
      };
    };

    // The run is a line of a digest.
    if (row?.digest_id != null && !row.external_id) {
      const digestId = String(row.digest_id);
      if (digest && !digest.ownMessage) return showInDigest(digestId, digest.line());
      // It needs a human now (or digests were switched off since): its line says so, and it gets a
      // message of its own (a fresh claim).
      const v = digest ? await upsertDigestLine(deps.db, run, digestId, order, digest.line()) : null;
      if (!(await promoteFromDigest(deps.db, run, digestId))) throw pending();
      const sent = await postAndRecord('new');
      // The digest's line changed too; a failure here is retried by the activity (the post is done).
      if (digest && v !== null)
        await renderDigest(deps, digestId, v, digest.settings, { runsUrl: digest.runsUrl });
      return sent;
    }

    // A new run during a burst: a digest line, unless it needs a human.
    if (!row && digest && !digest.ownMessage && (await inBurst(deps.db, deps.slack, digest.settings))) {
      const { id: digestId } = await currentDigest(deps.db, digest.channel, digest.settings);
      if (!(await placeInDigest(deps.db, run, order, digestId))) throw pending();
      return showInDigest(digestId, digest.line());
    }

    if (!row) {
      if (!(await claimMessage(deps.db, run, order))) throw pending();
      return postAndRecord('new');
    }
    if (!row.external_id || !row.slack_channel) {
      if (Date.now() - new Date(row.created_at).getTime() < ABANDONED_CLAIM_MS) throw pending();
      return postAndRecord('takeover');
    }
    if (row.seq !== null && Number(row.seq) >= order) return { status: 'skipped', ts: row.external_id };
    try {
      await deps.slack.update(row.slack_channel, row.external_id, build());
    } catch (err) {
      // Someone deleted the message in Slack: post it again and follow the new one.
      if (err instanceof ApplicationFailure && /message_not_found/.test(err.message))
        return postAndRecord('takeover');
      throw err;
    }
    await recordMessageShown(deps.db, run, order);
    return { status: 'sent', ts: row.external_id };
  });
}

function pending(): ApplicationFailure {
  return ApplicationFailure.create({
    type: 'SlackMessagePending',
    message: "another worker is posting this run's Slack message; retrying to update it",
    nextRetryDelay: '1s',
  });
}

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
import type { SlackMessage, SlackSender } from './slack';
import { currentDigest, inBurst, renderDigest, upsertDigestLine, type DigestLine, type DigestSettings } from './slack-digest';

export interface RunKey {
  workflowId: string;
  runId: string;
}

/** A claim older than this whose post never completed (a crashed worker) is taken over. */
const ABANDONED_CLAIM_MS = 60_000;

const chains = new Map<string, Promise<void>>();
const newestQueued = new Map<string, number>();

async function serialised<T>(key: string, order: number, fn: (superseded: () => boolean) => Promise<T>): Promise<T> {
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

interface LedgerRow {
  digest_id: string | number | null;
  external_id: string | null;
  slack_channel: string | null;
  seq: string | number | null;
  created_at: Date | string;
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
  opts: { logWhenUnconfigured: boolean; digest?: DigestOption },
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
    const where = [run.workflowId, run.runId];
    const rows = await deps.db.query<LedgerRow>(
      `SELECT digest_id, external_id, slack_channel, seq, created_at FROM killswitch_notifications
        WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message'`,
      where,
    );
    const row = rows.rows[0];

    const postAndRecord = async (claimed: 'new' | 'takeover') => {
      let r: Awaited<ReturnType<SlackSender['post']>>;
      try {
        r = await deps.slack.post(build());
      } catch (err) {
        // Nothing was posted: free the claim so the retry (or another worker) posts.
        if (claimed === 'new') {
          await deps.db.query(
            `DELETE FROM killswitch_notifications
              WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message' AND external_id IS NULL`,
            where,
          );
        }
        throw err;
      }
      await deps.db.query(
        `UPDATE killswitch_notifications SET external_id = $3, slack_channel = $4, seq = $5, updated_at = now()
          WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message'`,
        [...where, r.ts ?? null, r.channel ?? null, order],
      );
      return { status: 'sent' as const, ...(r.ts ? { ts: r.ts } : {}) };
    };

    const digest = opts.digest;
    const showInDigest = async (digestId: string, line: DigestLine) => {
      const version = await upsertDigestLine(deps.db, run, digestId, order, line);
      if (version === null) return { status: 'skipped' as const };
      return { status: await renderDigest(deps, digestId, version, digest!.settings, { runsUrl: digest!.runsUrl }) };
    };

    // The run is a line of a digest.
    if (row?.digest_id != null && !row.external_id) {
      const digestId = String(row.digest_id);
      if (digest && !digest.ownMessage) return showInDigest(digestId, digest.line());
      // It needs a human now (or digests were switched off since): its line says so, and it gets a
      // message of its own (a fresh claim).
      const v = digest ? await upsertDigestLine(deps.db, run, digestId, order, digest.line()) : null;
      const promoted = await deps.db.query(
        `UPDATE killswitch_notifications SET digest_id = NULL, created_at = now()
          WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message' AND digest_id = $3 AND external_id IS NULL
          RETURNING 1 AS promoted`,
        [...where, digestId],
      );
      if (promoted.rows.length === 0) throw pending();
      const sent = await postAndRecord('new');
      // The digest's line changed too; a failure here is retried by the activity (the post is done).
      if (digest && v !== null) await renderDigest(deps, digestId, v, digest.settings, { runsUrl: digest.runsUrl });
      return sent;
    }

    // A new run during a burst: a digest line, unless it needs a human.
    if (!row && digest && !digest.ownMessage && (await inBurst(deps.db, deps.slack, digest.settings))) {
      const { id: digestId } = await currentDigest(deps.db, digest.channel, digest.settings);
      const placed = await deps.db.query(
        `INSERT INTO killswitch_notifications (workflow_id, run_id, channel, kind, external_id, seq, digest_id)
         VALUES ($1, $2, 'slack', 'message', NULL, $3, $4) ON CONFLICT DO NOTHING RETURNING 1 AS placed`,
        [...where, order, digestId],
      );
      if (placed.rows.length === 0) throw pending();
      return showInDigest(digestId, digest.line());
    }

    if (!row) {
      const claim = await deps.db.query(
        `INSERT INTO killswitch_notifications (workflow_id, run_id, channel, kind, external_id, seq)
         VALUES ($1, $2, 'slack', 'message', NULL, $3) ON CONFLICT DO NOTHING RETURNING 1 AS claimed`,
        [...where, order],
      );
      if (claim.rows.length === 0) throw pending();
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
      if (err instanceof ApplicationFailure && /message_not_found/.test(err.message)) return postAndRecord('takeover');
      throw err;
    }
    await deps.db.query(
      `UPDATE killswitch_notifications SET seq = $3, updated_at = now()
        WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message' AND (seq IS NULL OR seq < $3)`,
      [...where, order],
    );
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

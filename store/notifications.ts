/**
 * killswitch_notifications, kind `message`: the ledger of each run's one Slack message (its claim,
 * ts, channel and the newest order shown), or the digest that shows the run as one line instead
 * (activities/slack-message.ts says how they are used).
 */
import type { Db } from '../lib/db';

export interface RunKey {
  workflowId: string;
  runId: string;
}

export interface MessageLedgerRow {
  digest_id: string | number | null;
  external_id: string | null;
  slack_channel: string | null;
  seq: string | number | null;
  created_at: Date | string;
}

export async function messageLedgerRow(
  db: Pick<Db, 'query'>,
  run: RunKey,
): Promise<MessageLedgerRow | undefined> {
  const rows = await db.query<MessageLedgerRow>(
    `SELECT digest_id, external_id, slack_channel, seq, created_at FROM killswitch_notifications
        WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message'`,
    [run.workflowId, run.runId],
  );
  return rows.rows[0];
}

/** Claims the run's message (no ts yet); false when a row exists already. */
export async function claimMessage(db: Pick<Db, 'query'>, run: RunKey, order: number): Promise<boolean> {
  const claim = await db.query(
    `INSERT INTO killswitch_notifications (workflow_id, run_id, channel, kind, external_id, seq)
         VALUES ($1, $2, 'slack', 'message', NULL, $3) ON CONFLICT DO NOTHING RETURNING 1 AS claimed`,
    [run.workflowId, run.runId, order],
  );
  return claim.rows.length === 1;
}

/** Places the run in a digest (a line, no message of its own); false when a row exists already. */
export async function placeInDigest(
  db: Pick<Db, 'query'>,
  run: RunKey,
  order: number,
  digestId: string,
): Promise<boolean> {
  const placed = await db.query(
    `INSERT INTO killswitch_notifications (workflow_id, run_id, channel, kind, external_id, seq, digest_id)
         VALUES ($1, $2, 'slack', 'message', NULL, $3, $4) ON CONFLICT DO NOTHING RETURNING 1 AS placed`,
    [run.workflowId, run.runId, order, digestId],
  );
  return placed.rows.length === 1;
}

/** Frees a claim whose post failed (nothing was posted). */
export async function freeMessageClaim(db: Pick<Db, 'query'>, run: RunKey): Promise<void> {
  await db.query(
    `DELETE FROM killswitch_notifications
              WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message' AND external_id IS NULL`,
    [run.workflowId, run.runId],
  );
}

/** Records the posted message (ts, channel) and the order it shows. */
export async function recordMessagePosted(
  db: Pick<Db, 'query'>,
  run: RunKey,
  ts: string | null,
  channel: string | null,
  order: number,
): Promise<void> {
  await db.query(
    `UPDATE killswitch_notifications SET external_id = $3, slack_channel = $4, seq = $5, updated_at = now()
          WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message'`,
    [run.workflowId, run.runId, ts, channel, order],
  );
}

/** Records the newest order shown by an update (an older one never overwrites it). */
export async function recordMessageShown(db: Pick<Db, 'query'>, run: RunKey, order: number): Promise<void> {
  await db.query(
    `UPDATE killswitch_notifications SET seq = $3, updated_at = now()
        WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message' AND (seq IS NULL OR seq < $3)`,
    [run.workflowId, run.runId, order],
  );
}

/** Takes the run out of its digest as a fresh claim of its own message; false when another worker did. */
export async function promoteFromDigest(
  db: Pick<Db, 'query'>,
  run: RunKey,
  digestId: string,
): Promise<boolean> {
  const promoted = await db.query(
    `UPDATE killswitch_notifications SET digest_id = NULL, created_at = now()
          WHERE workflow_id = $1 AND run_id = $2 AND channel = 'slack' AND kind = 'message' AND digest_id = $3 AND external_id IS NULL
          RETURNING 1 AS promoted`,
    [run.workflowId, run.runId, digestId],
  );
  return promoted.rows.length === 1;
}

/** Run messages of their own claimed within the last minute. */
export async function recentRunMessages(db: Pick<Db, 'query'>): Promise<number> {
  const r = await db.query<{ n: string | number }>(
    `SELECT count(*) AS n FROM killswitch_notifications
      WHERE channel = 'slack' AND kind = 'message' AND digest_id IS NULL AND created_at > now() - interval '60 seconds'`,
  );
  return Number(r.rows[0]?.n ?? 0);
}

/**
 * killswitch_slack_digests and killswitch_slack_digest_items: burst digests (one row per channel
 * and time bucket, one line per run), and the advisory lock that orders their renders across
 * workers (activities/slack-digest.ts says how they are used).
 */
import type { Db } from '../lib/db';
import type { RunKey } from './notifications';

export interface DigestRow {
  id: string | number;
  bucket: string | number;
  /** The channel the digest belongs to (configured name or id); slack_channel is the id Slack answered with. */
  channel: string;
  slack_channel: string | null;
  ts: string | null;
  version: string | number;
  shown_version: string | number;
  created_at: Date | string;
}

/** The channel's digest for the current time bucket (`windowMs` long), created if it does not exist yet. */
export async function currentDigest(
  db: Pick<Db, 'query'>,
  channel: string,
  windowMs: number,
): Promise<{ id: string }> {
  const r = await db.query<{ id: string | number }>(
    `INSERT INTO killswitch_slack_digests (channel, bucket)
     VALUES ($1, floor(extract(epoch FROM now()) * 1000 / $2)::bigint)
     ON CONFLICT (channel, bucket) DO UPDATE SET channel = EXCLUDED.channel
     RETURNING id`,
    [channel, windowMs],
  );
  return { id: String(r.rows[0]!.id) };
}

/**
 * Sets the run's line (only a newer `seq` changes it) and returns the digest version that must be
 * shown for this line to be visible, or null when an older state arrived late.
 */
export async function upsertDigestLine(
  db: Pick<Db, 'query'>,
  run: RunKey,
  digestId: string,
  seq: number,
  l: { state: string; line: string },
): Promise<number | null> {
  // One statement: the line and the digest's version change together or not at all.
  const r = await db.query<{ version: string | number }>(
    `WITH bumped AS (
       UPDATE killswitch_slack_digests SET version = version + 1 WHERE id = $3
        AND NOT EXISTS (SELECT 1 FROM killswitch_slack_digest_items WHERE workflow_id = $1 AND run_id = $2 AND seq >= $4)
       RETURNING version
     ), line AS (
       INSERT INTO killswitch_slack_digest_items (workflow_id, run_id, digest_id, seq, state, line, version)
       SELECT $1, $2, $3, $4, $5, $6, version FROM bumped
       ON CONFLICT (workflow_id, run_id) DO UPDATE
         SET seq = EXCLUDED.seq, state = EXCLUDED.state, line = EXCLUDED.line, version = EXCLUDED.version, changed_at = now()
         WHERE killswitch_slack_digest_items.seq < EXCLUDED.seq
       RETURNING version
     )
     SELECT version FROM line`,
    [run.workflowId, run.runId, digestId, seq, l.state, l.line],
  );
  if (r.rows[0]) return Number(r.rows[0].version);
  // Nothing changed (a retry, or an older state): the line's own version must still be shown.
  const cur = await db.query<{ version: string | number; seq: string | number }>(
    `SELECT version, seq FROM killswitch_slack_digest_items WHERE workflow_id = $1 AND run_id = $2`,
    [run.workflowId, run.runId],
  );
  const row = cur.rows[0];
  if (!row) return null;
  return Number(row.seq) === seq ? Number(row.version) : null;
}

/** Runs fn holding the digest's advisory lock on this session (`withSession`: the lock is the session's). */
export async function withDigestLock<T>(
  session: Pick<Db, 'query'>,
  digestId: string,
  fn: () => Promise<T>,
): Promise<T> {
  await session.query(
    `SELECT pg_advisory_lock(hashtext('killswitch_slack_digest'), ($1::bigint % 2147483647)::int)`,
    [digestId],
  );
  try {
    return await fn();
  } finally {
    await session.query(
      `SELECT pg_advisory_unlock(hashtext('killswitch_slack_digest'), ($1::bigint % 2147483647)::int)`,
      [digestId],
    );
  }
}

/** The digest, with how long to wait before the next render (`updateIntervalMs` after the last one). */
export async function digestHead(
  db: Pick<Db, 'query'>,
  digestId: string,
  updateIntervalMs: number,
): Promise<(DigestRow & { wait_ms: string | number | null }) | undefined> {
  const head = await db.query<DigestRow & { wait_ms: string | number | null }>(
    `SELECT id, bucket, channel, slack_channel, ts, version, shown_version, created_at,
            GREATEST(0, $2::float8 - extract(epoch FROM (now() - shown_at)) * 1000) AS wait_ms
       FROM killswitch_slack_digests WHERE id = $1`,
    [digestId, updateIntervalMs],
  );
  return head.rows[0];
}

export async function digestRow(db: Pick<Db, 'query'>, digestId: string): Promise<DigestRow> {
  return (
    await db.query<DigestRow>(
      `SELECT id, bucket, channel, slack_channel, ts, version, shown_version, created_at FROM killswitch_slack_digests WHERE id = $1`,
      [digestId],
    )
  ).rows[0]!;
}

/** The digest's lines, in the order their runs joined it. */
export async function digestItems<S extends string>(
  db: Pick<Db, 'query'>,
  digestId: string,
): Promise<Array<{ state: S; line: string }>> {
  const items = await db.query<{ state: S; line: string }>(
    `SELECT state, line FROM killswitch_slack_digest_items WHERE digest_id = $1 ORDER BY created_at, workflow_id`,
    [digestId],
  );
  return items.rows;
}

/** Records the digest's posted message and the version it shows. */
export async function recordDigestPosted(
  db: Pick<Db, 'query'>,
  digestId: string,
  ts: string | null,
  channel: string | null,
  shownVersion: number,
): Promise<void> {
  await db.query(
    `UPDATE killswitch_slack_digests SET ts = $2, slack_channel = $3, shown_version = GREATEST(shown_version, $4), shown_at = now() WHERE id = $1`,
    [digestId, ts, channel, shownVersion],
  );
}

/** Forgets the digest's message (deleted in Slack): the next render posts it again. */
export async function forgetDigestMessage(db: Pick<Db, 'query'>, digestId: string): Promise<void> {
  await db.query(`UPDATE killswitch_slack_digests SET ts = NULL, slack_channel = NULL WHERE id = $1`, [
    digestId,
  ]);
}

/** Records the version an update showed. */
export async function recordDigestShown(
  db: Pick<Db, 'query'>,
  digestId: string,
  shownVersion: number,
): Promise<void> {
  await db.query(
    `UPDATE killswitch_slack_digests SET shown_version = GREATEST(shown_version, $2), shown_at = now() WHERE id = $1`,
    [digestId, shownVersion],
  );
}

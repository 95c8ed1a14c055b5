/**
 * The `jira` format's one piece of state: which Jira issue a run opened, per subscription
 * (killswitch_jira_issues). Written once the issue exists; a second writer for the same run (two
 * attempts racing) keeps the first issue recorded, so every later event comments on one issue.
 */
import type { Db } from '../lib/db';

export interface JiraIssueRecord {
  issueKey: string;
  issueId: string;
  /** The event whose delivery opened the issue. */
  eventId: string;
}

export async function jiraIssueOfRun(
  db: Pick<Db, 'query'>,
  subscriptionId: string,
  workflowId: string,
): Promise<JiraIssueRecord | undefined> {
  const r = await db.query<{ issue_key: string; issue_id: string; event_id: string }>(
    `SELECT issue_key, issue_id, event_id FROM killswitch_jira_issues
      WHERE subscription_id = $1 AND workflow_id = $2`,
    [subscriptionId, workflowId],
  );
  const row = r.rows[0];
  return row ? { issueKey: row.issue_key, issueId: row.issue_id, eventId: row.event_id } : undefined;
}

/** Records the run's issue; when one is recorded already, that one stands and is returned. */
export async function recordJiraIssue(
  db: Pick<Db, 'query'>,
  rec: JiraIssueRecord & { subscriptionId: string; workflowId: string },
): Promise<JiraIssueRecord> {
  const r = await db.query<{ issue_key: string }>(
    `INSERT INTO killswitch_jira_issues (subscription_id, workflow_id, issue_key, issue_id, event_id)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (subscription_id, workflow_id) DO NOTHING
     RETURNING issue_key`,
    [rec.subscriptionId, rec.workflowId, rec.issueKey, rec.issueId, rec.eventId],
  );
  if (r.rows.length > 0) return { issueKey: rec.issueKey, issueId: rec.issueId, eventId: rec.eventId };
  // Read in its own statement: a row committed while the insert waited is visible to this one.
  return (await jiraIssueOfRun(db, rec.subscriptionId, rec.workflowId)) ?? rec;
}

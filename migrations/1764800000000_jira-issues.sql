-- Up Migration

-- The Jira issue of each run, per jira subscription (docs/events.md, `jira`): the first event of a
-- run that reaches the subscription opens it, every later one comments on it. `event_id` is the
-- event that opened it (a retry of that event does not comment on its own issue). A row is written
-- once the issue exists; until then (or after a crash between the two) the issue is looked up in
-- Jira by its per-run label before one is created.
CREATE TABLE killswitch_jira_issues (
  subscription_id  text        NOT NULL REFERENCES killswitch_subscriptions (id) ON DELETE CASCADE,
  workflow_id      text        NOT NULL,
  issue_key        text        NOT NULL,
  issue_id         text        NOT NULL,
  event_id         text        NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscription_id, workflow_id)
);

-- Down Migration
DROP TABLE killswitch_jira_issues;

-- Up Migration

-- Burst digests: once the channel has had SLACK_DIGEST_AFTER run messages within a minute (or Slack
-- is rate limiting us), routine runs are shown as one line each in a per-channel digest message,
-- kept current with chat.update, instead of one message each. Runs that need a human (approval,
-- escalation) keep their own message.

-- One digest message per channel and time bucket (floor(epoch ms / SLACK_DIGEST_WINDOW)).
-- `version` counts changes to its lines; `shown_version` is the version Slack shows, so a render
-- that finds shown_version >= its version has nothing to do.
CREATE TABLE killswitch_slack_digests (
  id             bigserial   PRIMARY KEY,
  channel        text        NOT NULL,
  bucket         bigint      NOT NULL,
  slack_channel  text,
  ts             text,
  version        bigint      NOT NULL DEFAULT 0,
  shown_version  bigint      NOT NULL DEFAULT 0,
  shown_at       timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel, bucket)
);

-- One line per run folded into a digest: its state and its rendered line (references only, never a
-- value). `seq` orders the run's states as the run message's ledger does; `version` is the digest's
-- version when this line last changed.
CREATE TABLE killswitch_slack_digest_items (
  workflow_id  text        NOT NULL,
  run_id       text        NOT NULL,
  digest_id    bigint      NOT NULL REFERENCES killswitch_slack_digests (id) ON DELETE CASCADE,
  seq          bigint      NOT NULL,
  state        text        NOT NULL,
  line         text        NOT NULL,
  version      bigint      NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  changed_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, run_id)
);
CREATE INDEX killswitch_slack_digest_items_digest ON killswitch_slack_digest_items (digest_id, changed_at);

-- A run's message ledger row points at the digest it is shown in (external_id stays NULL then).
ALTER TABLE killswitch_notifications ADD COLUMN digest_id bigint REFERENCES killswitch_slack_digests (id) ON DELETE SET NULL;
-- The burst test counts the run messages posted in the last minute.
CREATE INDEX killswitch_notifications_recent ON killswitch_notifications (created_at) WHERE channel = 'slack' AND kind = 'message';

-- Down Migration
DROP INDEX killswitch_notifications_recent;
ALTER TABLE killswitch_notifications DROP COLUMN digest_id;
DROP TABLE killswitch_slack_digest_items;
DROP TABLE killswitch_slack_digests;

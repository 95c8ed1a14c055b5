-- Up Migration

-- One Slack message per run, kept current with chat.update: its ledger row (kind 'message') holds
-- the message ts (external_id), the channel id Slack answered with (chat.update needs the id, not
-- the name) and the order of the newest state shown, so a stale update never overwrites a newer one.
ALTER TABLE killswitch_notifications
  ADD COLUMN seq            bigint,
  ADD COLUMN slack_channel  text,
  ADD COLUMN updated_at     timestamptz;

-- Down Migration
ALTER TABLE killswitch_notifications
  DROP COLUMN updated_at,
  DROP COLUMN slack_channel,
  DROP COLUMN seq;

-- Up Migration

-- Until when a failing subscription backs off as a whole (activities/outbound: 2, 5, 10 s, then
-- parked 1 to 5 minutes). Events queued meanwhile wait for it too: without it, every new event of a
-- busy system woke the delivery run and was tried at once against the dead destination, so its
-- failures counted once per event again and tripped its breaker within a minute.
ALTER TABLE killswitch_subscriptions ADD COLUMN backoff_until timestamptz;

-- Down Migration
ALTER TABLE killswitch_subscriptions DROP COLUMN backoff_until;

-- Up Migration

-- Kill modes and secret sinks: when the leaked value stopped working, when the replacement
-- became usable, how it was killed and where the replacement went (a reference, never a value).
ALTER TABLE killswitch_audit
  ADD COLUMN kill_mode               text,
  ADD COLUMN revoked_at              timestamptz,
  ADD COLUMN replacement_issued_at   timestamptz,
  ADD COLUMN sink_ref                text,
  ADD COLUMN user_sessions_expired   integer,
  ADD COLUMN held_by_breaker         boolean NOT NULL DEFAULT false;

-- The mass-leak breaker: one hit per run per system, counted in a sliding window.
CREATE TABLE killswitch_breaker_hits (
  system       text        NOT NULL,
  workflow_id  text        NOT NULL,
  at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (system, workflow_id)
);
CREATE INDEX killswitch_breaker_hits_at_idx ON killswitch_breaker_hits (system, at);

-- A tripped breaker stays tripped until an operator resets it.
CREATE TABLE killswitch_breakers (
  system      text PRIMARY KEY,
  tripped_at  timestamptz,
  tripped_by  text,
  reset_at    timestamptz,
  reset_by    text
);

-- Down Migration
DROP TABLE killswitch_breakers;
DROP TABLE killswitch_breaker_hits;
ALTER TABLE killswitch_audit
  DROP COLUMN held_by_breaker,
  DROP COLUMN user_sessions_expired,
  DROP COLUMN sink_ref,
  DROP COLUMN replacement_issued_at,
  DROP COLUMN revoked_at,
  DROP COLUMN kill_mode;

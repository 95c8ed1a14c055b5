-- Up Migration

-- Outcomes beyond contained/escalated: policy decisions and repeat sightings are outcomes too.
ALTER TABLE killswitch_audit DROP CONSTRAINT killswitch_audit_outcome_check;
ALTER TABLE killswitch_audit ADD CONSTRAINT killswitch_audit_outcome_check
  CHECK (outcome IN ('contained', 'escalated', 'already_contained', 'dry_run', 'notified', 'ignored', 'denied'));

ALTER TABLE killswitch_audit
  ADD COLUMN policy_action   text,
  ADD COLUMN policy_rule     text,
  ADD COLUMN dry_run         boolean NOT NULL DEFAULT false,
  ADD COLUMN validity        text,
  ADD COLUMN publicly_leaked boolean,
  ADD COLUMN prior_run_id    text,
  ADD COLUMN decided_by      text,
  ADD COLUMN sightings       jsonb   NOT NULL DEFAULT '[]'::jsonb,
  ADD COLUMN loop_closed     text;

-- Every sighting of a credential, whichever scanner and whenever it came: one row per detection id
-- per credential (workflow id). Written by the ingress before the run is signalled.
CREATE TABLE killswitch_sightings (
  workflow_id   text        NOT NULL,
  detection_id  text        NOT NULL,
  source        text        NOT NULL,
  scanner       text,
  location      jsonb       NOT NULL DEFAULT '{}'::jsonb,
  validity      text,
  received_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, detection_id)
);

-- Deliveries already handled, by the sender's delivery id: a re-delivery after a restart is
-- answered from here instead of being processed again.
CREATE TABLE killswitch_deliveries (
  source       text        NOT NULL,
  delivery_id  text        NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  status       integer,
  response     jsonb,
  PRIMARY KEY (source, delivery_id)
);
CREATE INDEX killswitch_deliveries_received_idx ON killswitch_deliveries (received_at);

-- Runtime switches for sources (enable/disable without a restart), kept across restarts.
CREATE TABLE killswitch_source_state (
  source      text        PRIMARY KEY,
  enabled     boolean     NOT NULL,
  changed_by  text        NOT NULL,
  changed_at  timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE killswitch_source_state;
DROP TABLE killswitch_deliveries;
DROP TABLE killswitch_sightings;
ALTER TABLE killswitch_audit
  DROP COLUMN policy_action, DROP COLUMN policy_rule, DROP COLUMN dry_run, DROP COLUMN validity,
  DROP COLUMN publicly_leaked, DROP COLUMN prior_run_id, DROP COLUMN decided_by, DROP COLUMN sightings,
  DROP COLUMN loop_closed;
ALTER TABLE killswitch_audit DROP CONSTRAINT killswitch_audit_outcome_check;
ALTER TABLE killswitch_audit ADD CONSTRAINT killswitch_audit_outcome_check CHECK (outcome IN ('contained', 'escalated'));

-- Up Migration

-- Every change made through the admin API (source switches, runtime dry run, breaker resets):
-- who (the `by` field, or the label of the bearer token), with which role and token label, what,
-- when, and the state before and after. Append-only, like killswitch_audit.
CREATE TABLE killswitch_admin_audit (
  id          bigserial   PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text        NOT NULL,
  role        text        NOT NULL,
  token       text        NOT NULL,
  action      text        NOT NULL,
  target      text        NOT NULL,
  before      jsonb,
  after       jsonb,
  request_id  text
);
CREATE INDEX killswitch_admin_audit_at_idx ON killswitch_admin_audit (at);

CREATE FUNCTION killswitch_admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'killswitch_admin_audit is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER killswitch_admin_audit_no_update_delete
  BEFORE UPDATE OR DELETE ON killswitch_admin_audit
  FOR EACH ROW EXECUTE FUNCTION killswitch_admin_audit_append_only();

-- Runtime dry-run switches set through the admin API, kept across restarts: scope `global` or a
-- source name. An entry overrides the config file's value for its scope.
CREATE TABLE killswitch_dry_run_state (
  scope       text        PRIMARY KEY,
  enabled     boolean     NOT NULL,
  changed_by  text        NOT NULL,
  changed_at  timestamptz NOT NULL DEFAULT now()
);

-- The read API lists the audit newest first, with keyset pagination.
CREATE INDEX killswitch_audit_recorded_id_idx ON killswitch_audit (recorded_at DESC, id DESC);
CREATE INDEX killswitch_audit_detection_idx ON killswitch_audit (detection_id);
CREATE INDEX killswitch_sightings_detection_idx ON killswitch_sightings (detection_id);

-- Down Migration
DROP INDEX killswitch_sightings_detection_idx;
DROP INDEX killswitch_audit_detection_idx;
DROP INDEX killswitch_audit_recorded_id_idx;
DROP TABLE killswitch_dry_run_state;
DROP TRIGGER killswitch_admin_audit_no_update_delete ON killswitch_admin_audit;
DROP FUNCTION killswitch_admin_audit_append_only();
DROP TABLE killswitch_admin_audit;

-- Up Migration

-- One row per workflow run outcome. Append-only: the trigger below refuses UPDATE and DELETE,
-- and the unique key makes a retried insert a no-op.
CREATE TABLE killswitch_audit (
  id                   bigserial PRIMARY KEY,
  workflow_id          text        NOT NULL,
  run_id               text        NOT NULL,
  detection_id         text        NOT NULL,
  source               text        NOT NULL,
  scanner              text,
  credential_type      text        NOT NULL,
  credential_ref       jsonb       NOT NULL,
  fingerprint          text,
  owning_system        text,
  outcome              text        NOT NULL CHECK (outcome IN ('contained', 'escalated')),
  failure_step         text,
  failure_type         text,
  failure_message      text,
  new_value_delivered  boolean     NOT NULL DEFAULT false,
  rotation_note        text,
  sessions_terminated  integer,
  verification_method  text,
  pagerduty_dedup_key  text,
  pagerduty_status     text,
  location             jsonb       NOT NULL DEFAULT '{}'::jsonb,
  received_at          timestamptz NOT NULL,
  rotated_at           timestamptz,
  sessions_expired_at  timestamptz,
  verified_dead_at     timestamptz,
  recorded_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT killswitch_audit_run_unique UNIQUE (workflow_id, run_id)
);

CREATE INDEX killswitch_audit_credential_idx ON killswitch_audit (credential_type, fingerprint);
CREATE INDEX killswitch_audit_recorded_idx ON killswitch_audit (recorded_at);

CREATE FUNCTION killswitch_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'killswitch_audit is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER killswitch_audit_no_update_delete
  BEFORE UPDATE OR DELETE ON killswitch_audit
  FOR EACH ROW EXECUTE FUNCTION killswitch_audit_append_only();

-- Ledger of notifications already sent, so a retried activity never posts twice.
CREATE TABLE killswitch_notifications (
  workflow_id  text        NOT NULL,
  run_id       text        NOT NULL,
  channel      text        NOT NULL,
  kind         text        NOT NULL,
  external_id  text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, run_id, channel, kind)
);

-- Leaked values held for verify-dead only: AES-256-GCM sealed, bound to the workflow id, purged
-- when the run ends or when they expire. Never read by anything but the verify activity.
CREATE TABLE killswitch_evidence (
  workflow_id  text        PRIMARY KEY,
  fingerprint  text        NOT NULL,
  sealed       bytea       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL
);

-- Down Migration
DROP TABLE killswitch_evidence;
DROP TABLE killswitch_notifications;
DROP TRIGGER killswitch_audit_no_update_delete ON killswitch_audit;
DROP FUNCTION killswitch_audit_append_only();
DROP TABLE killswitch_audit;

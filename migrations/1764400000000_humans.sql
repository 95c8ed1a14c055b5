-- Up Migration

-- Humans in the loop: an escalated run can later be contained by a retry, or ended as a false
-- positive. Each outcome of a run is a row of its own (still append-only); a retried insert of the
-- same outcome is a no-op.
ALTER TABLE killswitch_audit DROP CONSTRAINT killswitch_audit_run_unique;
ALTER TABLE killswitch_audit ADD CONSTRAINT killswitch_audit_run_outcome_unique UNIQUE (workflow_id, run_id, outcome);

ALTER TABLE killswitch_audit DROP CONSTRAINT killswitch_audit_outcome_check;
ALTER TABLE killswitch_audit ADD CONSTRAINT killswitch_audit_outcome_check
  CHECK (outcome IN ('contained', 'escalated', 'already_contained', 'dry_run', 'notified', 'ignored', 'denied', 'false_positive'));

ALTER TABLE killswitch_audit
  ADD COLUMN acknowledged_by    text,
  ADD COLUMN retried_by         text,
  ADD COLUMN false_positive_by  text,
  ADD COLUMN incident_resolved  boolean NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE killswitch_audit
  DROP COLUMN incident_resolved,
  DROP COLUMN false_positive_by,
  DROP COLUMN retried_by,
  DROP COLUMN acknowledged_by;
ALTER TABLE killswitch_audit DROP CONSTRAINT killswitch_audit_outcome_check;
ALTER TABLE killswitch_audit ADD CONSTRAINT killswitch_audit_outcome_check
  CHECK (outcome IN ('contained', 'escalated', 'already_contained', 'dry_run', 'notified', 'ignored', 'denied'));
ALTER TABLE killswitch_audit DROP CONSTRAINT killswitch_audit_run_outcome_unique;
ALTER TABLE killswitch_audit ADD CONSTRAINT killswitch_audit_run_unique UNIQUE (workflow_id, run_id);

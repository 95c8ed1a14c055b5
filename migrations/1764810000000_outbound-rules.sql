-- Up Migration

-- Outbound rules (docs/events.md#rules): trigger (event types) -> conditions -> up to three
-- subscriptions by name. `origin` says whether the admin API or the inventory file owns the row.
-- execution_count counts the events the rule matched (each event once, however often emitted).
CREATE TABLE killswitch_rules (
  id                text        PRIMARY KEY,
  name              text        NOT NULL UNIQUE,
  description       text,
  enabled           boolean     NOT NULL DEFAULT true,
  trigger           text[]      NOT NULL,
  conditions        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  actions           text[]      NOT NULL CHECK (cardinality(actions) BETWEEN 1 AND 3),
  origin            text        NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'config')),
  execution_count   bigint      NOT NULL DEFAULT 0,
  last_executed_at  timestamptz,
  last_event_type   text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A subscription that receives only what routes to it: an owning system naming it
-- (systems[].routing.subscriptions) or a rule's action; never events by its own event types alone.
ALTER TABLE killswitch_subscriptions ADD COLUMN routed_only boolean NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE killswitch_subscriptions DROP COLUMN routed_only;
DROP TABLE killswitch_rules;

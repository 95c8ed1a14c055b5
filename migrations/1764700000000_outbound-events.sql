-- Up Migration

-- Outbound event subscriptions (docs/events.md). `origin` says whether the admin API or the
-- inventory file (config-as-code) owns the row; a config row is replaced at every start.
-- The signing secret is sealed with the server key (never returned by the API).
CREATE TABLE killswitch_subscriptions (
  id                    text        PRIMARY KEY,
  name                  text        NOT NULL UNIQUE,
  format                text        NOT NULL,
  url                   text,
  connection            jsonb,
  secret_sealed         bytea,
  secret_env            text,
  event_types           text[]      NOT NULL,
  filters               jsonb       NOT NULL DEFAULT '{}'::jsonb,
  options               jsonb       NOT NULL DEFAULT '{}'::jsonb,
  retry_count           integer     NOT NULL DEFAULT 3 CHECK (retry_count BETWEEN 0 AND 10),
  timeout_ms            integer     NOT NULL DEFAULT 5000 CHECK (timeout_ms BETWEEN 1000 AND 30000),
  failure_threshold     integer     NOT NULL DEFAULT 10 CHECK (failure_threshold BETWEEN 1 AND 1000),
  is_active             boolean     NOT NULL DEFAULT true,
  consecutive_failures  integer     NOT NULL DEFAULT 0,
  disabled_reason       text,
  origin                text        NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'config')),
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Every event emitted while at least one subscription wanted it. The id is derived from the run
-- and the event, so an activity that emits twice (a retry, a replay) inserts once.
CREATE TABLE killswitch_events (
  id           text        PRIMARY KEY,
  type         text        NOT NULL,
  occurred_at  timestamptz NOT NULL,
  workflow_id  text,
  envelope     jsonb       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX killswitch_events_created_idx ON killswitch_events (created_at);

-- What each subscription still has to deliver (the outbox), and what it delivered. A row leaves
-- `pending` only as `delivered` or `rejected` (the destination refused it for good: a 4xx other
-- than 408/429); a destination that is down keeps its rows pending, retried with backoff.
CREATE TABLE killswitch_event_queue (
  subscription_id  text        NOT NULL REFERENCES killswitch_subscriptions (id) ON DELETE CASCADE,
  event_id         text        NOT NULL REFERENCES killswitch_events (id) ON DELETE CASCADE,
  state            text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
  attempts         integer     NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_error       text,
  enqueued_at      timestamptz NOT NULL DEFAULT now(),
  -- Delivery order within a subscription: the order the events were queued (the run's order).
  seq              bigserial   NOT NULL,
  done_at          timestamptz,
  PRIMARY KEY (subscription_id, event_id)
);
CREATE INDEX killswitch_event_queue_due_idx ON killswitch_event_queue (subscription_id, next_attempt_at, seq) WHERE state = 'pending';

-- Every delivery attempt: the history GET /api/subscriptions/:id/deliveries pages through.
CREATE TABLE killswitch_event_deliveries (
  id               bigserial   PRIMARY KEY,
  subscription_id  text        NOT NULL,
  event_id         text        NOT NULL,
  event_type       text        NOT NULL,
  attempt          integer     NOT NULL,
  status_code      integer,
  success          boolean     NOT NULL,
  duration_ms      integer     NOT NULL,
  error            text,
  at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX killswitch_event_deliveries_sub_idx ON killswitch_event_deliveries (subscription_id, id DESC);

-- Down Migration
DROP TABLE killswitch_event_deliveries;
DROP TABLE killswitch_event_queue;
DROP TABLE killswitch_events;
DROP TABLE killswitch_subscriptions;

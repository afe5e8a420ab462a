-- The outbox: rows written in the business transaction, deleted by the relay once the broker confirmed them.
CREATE SCHEMA IF NOT EXISTS {{schema}};

CREATE TABLE {{schema}}.outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id text NOT NULL,
  exchange text NOT NULL,
  routing_key text NOT NULL,
  payload bytea NOT NULL,
  content_type text NOT NULL,
  headers jsonb,
  ordering_key text,
  correlation_id text,
  causation_id text,
  created_at timestamptz NOT NULL DEFAULT now(),
  available_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0,
  last_error text
) WITH (
  -- A queue table churns: vacuum after a fixed number of dead rows, not a fraction of a table
  -- whose size swings between zero and millions, and without cost-based throttling.
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_cost_delay = 0,
  autovacuum_analyze_scale_factor = 0,
  autovacuum_analyze_threshold = 5000
);

-- The claim order: rows whose time has come, oldest first. Delayed rows and rows waiting for a
-- retry sort behind, so the claim stays an index scan over only what can go now.
CREATE INDEX outbox_available_at_idx ON {{schema}}.outbox (available_at, id);

-- Rows that failed before are claimed apart, one at a time; this keeps that claim small.
CREATE INDEX outbox_retry_idx ON {{schema}}.outbox (available_at, id) WHERE attempts > 0;

-- Finds the head of an ordering key: the claim query asks whether an older row of the key is pending.
CREATE INDEX outbox_ordering_key_idx ON {{schema}}.outbox (ordering_key, id)
  WHERE ordering_key IS NOT NULL;

-- Wakes relays when a transaction that wrote outbox rows commits. One notification per statement;
-- identical notifications in one transaction are merged by Postgres.
CREATE FUNCTION {{schema}}.outbox_notify() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('outboxkit:' || TG_TABLE_SCHEMA, '');
  RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON {{schema}}.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.outbox_notify();

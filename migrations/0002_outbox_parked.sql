-- Outbox messages that can never be published (unroutable, missing exchange, too large, out of
-- attempts), kept with the reason so they can be inspected and replayed.
CREATE TABLE {{schema}}.outbox_parked (
  id bigint PRIMARY KEY,
  message_id text NOT NULL,
  exchange text NOT NULL,
  routing_key text NOT NULL,
  payload bytea NOT NULL,
  content_type text NOT NULL,
  headers jsonb,
  ordering_key text,
  correlation_id text,
  causation_id text,
  created_at timestamptz NOT NULL,
  attempts integer NOT NULL,
  last_error text,
  reason text NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_parked_parked_at_idx ON {{schema}}.outbox_parked (parked_at);

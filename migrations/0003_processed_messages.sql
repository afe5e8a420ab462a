-- What each consumer has handled, by business key. The row is inserted in the handler's own
-- transaction, so it commits exactly when the handler's effects do.
CREATE TABLE {{schema}}.processed_messages (
  consumer text NOT NULL,
  business_key text NOT NULL,
  message_id text,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, business_key)
);

-- Retention deletes by age in small batches.
CREATE INDEX processed_messages_processed_at_idx ON {{schema}}.processed_messages (processed_at);

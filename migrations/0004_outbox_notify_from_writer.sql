-- The writer now sends the relay's wake-up itself, at most once per interval (see OutboxWriter's
-- `notifyIntervalMs`). A NOTIFY in every transaction made Postgres commit those transactions one
-- at a time (a cluster-wide lock held across each commit's WAL flush), halving the commit rate of
-- busy writers; the relay's polling covers rows written without one.
DROP TRIGGER IF EXISTS outbox_notify ON {{schema}}.outbox;
DROP FUNCTION IF EXISTS {{schema}}.outbox_notify();

-- The writer now sends the relay's wake-up itself, at most once per interval (see OutboxWriter's
-- `notifyIntervalMs`). A NOTIFY in every transaction made Postgres commit those transactions one
-- at a time (a cluster-wide lock held across each commit's WAL flush), halving the commit rate of
-- busy writers; the relay's polling covers rows written without one.
-- Dropping the trigger needs an exclusive lock on the outbox, and every writer queues behind
-- the waiting DROP: give up after 5 s (run the migration again) rather than stall the writers
-- behind a relay batch that waits for a slow broker. The bound is this migration's alone: the
-- caller's own value comes back after it, for migrations that run later in one transaction (a
-- shared Kysely Migrator). Applied as plain SQL, run it in a transaction (psql -1).
SELECT set_config('outboxkit.caller_lock_timeout', current_setting('lock_timeout'), true);
SET LOCAL lock_timeout = '5s';
DROP TRIGGER IF EXISTS outbox_notify ON {{schema}}.outbox;
DROP FUNCTION IF EXISTS {{schema}}.outbox_notify();
SELECT set_config('lock_timeout', current_setting('outboxkit.caller_lock_timeout'), true);

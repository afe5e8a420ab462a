-- The failures that count towards the relay's `retry.maxAttempts` (a row the broker returned
-- or rejected), apart from `attempts`, which counts every failed try. Nacks, time-outs and lost
-- channels are retried with backoff for as long as they last and never park a row: counted in
-- `attempts`, they made a row's first return or rejection after an outage park it at once.
-- A column with a constant default is added without rewriting the table; the lock it needs is
-- brief, but every writer queues behind a waiting ALTER: give up after 5 s (run it again). The
-- bound is this migration's alone, as in 0004. Applied as plain SQL, run it in a transaction.
SELECT set_config('outboxkit.caller_lock_timeout', current_setting('lock_timeout'), true);
SET LOCAL lock_timeout = '5s';
ALTER TABLE {{schema}}.outbox ADD COLUMN IF NOT EXISTS rejections integer NOT NULL DEFAULT 0;
SELECT set_config('lock_timeout', current_setting('outboxkit.caller_lock_timeout'), true);

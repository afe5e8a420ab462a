-- The failures that count towards the relay's `retry.maxAttempts` (a row the broker returned
-- or rejected), apart from `attempts`, which counts every failed try. Nacks, time-outs and lost
-- channels are retried with backoff for as long as they last and never park a row: counted in
-- `attempts`, they made a row's first return or rejection after an outage park it at once.
-- A column with a constant default is added without rewriting the table; the lock it needs is
-- brief, but every writer queues behind a waiting ALTER: give up after 5 s (run it again).
SET LOCAL lock_timeout = '5s';
ALTER TABLE {{schema}}.outbox ADD COLUMN IF NOT EXISTS rejections integer NOT NULL DEFAULT 0;

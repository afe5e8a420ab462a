// biome-ignore-all lint/correctness/noUnusedVariables: a prelude declares what the snippets use
// The relay and the consumer host a service runs, for snippets that use them (`relay`, `host`).
import * as __outboxkit from 'outboxkit';

const relay = new __outboxkit.OutboxRelay({ pool, amqpUrl });
const host = new __outboxkit.ConsumerHost({ db, amqpUrl, consumers: [] });

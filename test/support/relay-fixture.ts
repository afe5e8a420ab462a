import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import type { RelayOptions } from '../../src/relay/relay-options.js';
import { silentLogger } from '../../src/util/logger.js';
import type { OutboxMessage } from '../../src/writer/outbox-message.js';
import { OutboxWriter } from '../../src/writer/outbox-writer.js';
import { AMQP_URL } from './env.js';
import type { TestDatabase } from './test-database.js';

/** A relay on a test schema with settings that make tests quick: short retries and timeouts. */
export function testRelay(t: TestDatabase, options: Partial<RelayOptions> = {}): OutboxRelay {
  return new OutboxRelay({
    pool: t.pool,
    amqpUrl: AMQP_URL,
    schema: t.schema,
    pollIntervalMs: 200,
    heartbeatSeconds: 2,
    publishTimeoutMs: 5000,
    stopTimeoutMs: 5000,
    reconnectBackoff: { initialMs: 20, maxMs: 200 },
    logger: silentLogger,
    ...options,
    retry: { backoff: { initialMs: 20, maxMs: 200 }, ...options.retry },
  });
}

/** `total` messages to `exchange` with routing key `k`, payload `{ i }` and id `${idPrefix}${i}`. */
export function numberedMessages(
  exchange: string,
  total: number,
  idPrefix: string,
): OutboxMessage[] {
  return Array.from({ length: total }, (_, i) => ({
    exchange,
    routingKey: 'k',
    payload: { i },
    messageId: `${idPrefix}${i}`,
  }));
}

/** Writes messages in transactions of `perTransaction` rows each. */
export async function writeMessages(
  t: TestDatabase,
  messages: readonly OutboxMessage[],
  perTransaction = 500,
): Promise<void> {
  const writer = new OutboxWriter({ schema: t.schema });
  for (let i = 0; i < messages.length; i += perTransaction) {
    await t.db
      .transaction()
      .execute((trx) => writer.addMany(trx, messages.slice(i, i + perTransaction)));
  }
}

/**
 * Benchmark 8's consumer stage: a ConsumerHost with one batched idempotent consumer that
 * inserts one effect row per message. Records when each message of the expected run was
 * handled (inside its transaction, just before the commit that precedes the ack), says when
 * all of them were, and sends the times when asked.
 */
import { Kysely, PostgresDialect } from 'kysely';
import type { ConsumeContext, ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { silentLogger } from '../../src/util/logger.js';
import { isMain } from './bench-cli.js';
import { AMQP_URL, newPool } from './bench-services.js';
import {
  E2E_APPLICATION_NAME,
  failStage,
  type ParentMessage,
  sendToParent,
  stageSettings,
  wallClockMs,
} from './e2e-protocol.js';

/** The consumer's definition; the parent deletes its queues by the same definition. */
export function e2eConsumerDefinition(
  schema: string,
  exchange: string,
  onHandled: (n: number) => void = () => {},
): ConsumerDefinition<{ n: number }> {
  return {
    name: `${exchange}.billing`,
    exchange,
    exchangeType: 'direct',
    routingKeys: ['order.placed'],
    concurrency: 4,
    batchSize: 50,
    async handler(body, ctx: ConsumeContext) {
      await ctx.trx.insertInto(`${schema}.effects`).values({ n: body.n }).execute();
      onHandled(body.n);
    },
  };
}

async function main(): Promise<void> {
  const { schema, exchange } = stageSettings();
  const db = new Kysely({
    dialect: new PostgresDialect({ pool: newPool(8, `${E2E_APPLICATION_NAME}-consumer`) }),
  });
  let base = 0;
  let handled = new Float64Array(0);
  let seen = 0;
  let expected = Number.POSITIVE_INFINITY;
  const host = new ConsumerHost({
    db,
    amqpUrl: AMQP_URL,
    schema,
    consumers: [
      e2eConsumerDefinition(schema, exchange, (n) => {
        const i = n - base;
        if (i < 0 || i >= handled.length) return;
        if (handled[i] === 0) seen += 1;
        handled[i] = wallClockMs();
        if (seen === expected) {
          expected = Number.POSITIVE_INFINITY;
          sendToParent({ type: 'done' });
        }
      }),
    ],
    logger: silentLogger,
    retention: false,
  });
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'expect') {
      base = m.base;
      handled = new Float64Array(m.count);
      seen = 0;
      expected = m.count;
    } else if (m.type === 'send-times') {
      sendToParent({ type: 'times', startedAt: 0, times: Array.from(handled) });
    } else if (m.type === 'stop') {
      host
        .stop()
        .then(() => db.destroy())
        .then(() => process.exit(0), failStage);
    }
  });
  await host.start();
  sendToParent({ type: 'ready' });
}

if (isMain(import.meta.url)) await main().catch(failStage);

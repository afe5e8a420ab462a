/**
 * Benchmark 3, first half: the relay against a naive relay that publishes to the same queue
 * with confirms, row by row (BEGIN; claim one row FOR UPDATE SKIP LOCKED; publish;
 * waitForConfirms; DELETE; COMMIT), as outbox tutorials show it.
 *
 *   node dist/bench/naive-relay.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--naive-messages 3000]
 */
import type { ChannelModel } from 'amqplib';
import type pg from 'pg';
import { timeRelayDrain } from './relay-drain.js';
import {
  type BenchArgs,
  type BenchReport,
  intFlag,
  isMain,
  measurement,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  amqpConnect,
  BenchQueue,
  benchSchema,
  newPool,
  prefillOutbox,
  serverVersions,
} from './support/bench-services.js';
import { RELAY_DEFAULTS } from './support/relay-drain-timer.js';

/** Publishes every row of the outbox one by one; returns milliseconds. */
export async function naiveDrain(
  pool: pg.Pool,
  connection: ChannelModel,
  outbox: string,
  expected: number,
): Promise<number> {
  const client = await pool.connect();
  const channel = await connection.createConfirmChannel();
  channel.on('error', () => {});
  const start = performance.now();
  let done = 0;
  try {
    for (;;) {
      await client.query('BEGIN');
      const { rows } = await client.query<{
        id: string;
        exchange: string;
        routing_key: string;
        payload: Buffer;
        message_id: string;
        content_type: string;
        created_at: Date;
      }>(
        `SELECT id, exchange, routing_key, payload, message_id, content_type, created_at
         FROM ${outbox} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`,
      );
      const row = rows[0];
      if (!row) {
        await client.query('COMMIT');
        break;
      }
      channel.publish(row.exchange, row.routing_key, row.payload, {
        persistent: true,
        mandatory: true,
        messageId: row.message_id,
        contentType: row.content_type,
        timestamp: Math.floor(row.created_at.getTime() / 1000),
      });
      await channel.waitForConfirms();
      await client.query(`DELETE FROM ${outbox} WHERE id = $1`, [row.id]);
      await client.query('COMMIT');
      done += 1;
    }
  } finally {
    client.release();
    await channel.close().catch(() => {});
  }
  if (done !== expected) throw new Error(`naive relay published ${done}, expected ${expected}`);
  return performance.now() - start;
}

export async function naiveRelay(args: BenchArgs): Promise<BenchReport> {
  const messages = intFlag(args, 'messages', 300, 20_000);
  const naiveMessages = intFlag(args, 'naive-messages', 100, 3000);
  const pool = newPool(4);
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_naive');
  const queue = await BenchQueue.open(connection, 'classic');
  const naive: number[] = [];
  const relay: number[] = [];
  const ratios: number[] = [];
  try {
    for (let run = 1; run <= args.runs; run += 1) {
      await prefillOutbox(pool, schema.outbox, naiveMessages, queue.exchange, queue.routingKey);
      await queue.reset();
      await waitForQuiet();
      const naiveRate =
        (naiveMessages / (await naiveDrain(pool, connection, schema.outbox, naiveMessages))) * 1000;
      await queue.expectDepth(naiveMessages);
      await prefillOutbox(pool, schema.outbox, messages, queue.exchange, queue.routingKey);
      await queue.reset();
      await waitForQuiet();
      const relayRate =
        (messages / (await timeRelayDrain(schema.name, messages, RELAY_DEFAULTS))) * 1000;
      await queue.expectDepth(messages);
      naive.push(naiveRate);
      relay.push(relayRate);
      ratios.push(relayRate / naiveRate);
      progress(`run ${run}: naive ${Math.round(naiveRate)}/s, relay ${Math.round(relayRate)}/s`);
    }
  } finally {
    await queue.close();
    await schema.drop();
    await connection.close().catch(() => {});
    await pool.end();
  }
  return {
    benchmark: 'naive-relay',
    title: 'Relay against a naive relay (per row: publish, wait for the confirm, delete)',
    settings: { messages, naiveMessages, queue: 'classic durable', ...versions },
    sections: [
      {
        title: `classic durable queue, 1 KiB messages (naive: ${naiveMessages}, relay: ${messages})`,
        rows: [
          measurement('naive relay, one row per transaction (baseline)', 'msgs/s', naive, {
            ratios: naive.map(() => 1),
          }),
          measurement(
            `outboxkit relay, batch ${RELAY_DEFAULTS.batchSize}, ${RELAY_DEFAULTS.concurrency} lanes (defaults)`,
            'msgs/s',
            relay,
            { ratios },
          ),
        ],
      },
    ],
    notes: ['ratio: relay rate / naive rate measured in the same run; target at least 15'],
  };
}

if (isMain(import.meta.url)) await runStandalone(naiveRelay);

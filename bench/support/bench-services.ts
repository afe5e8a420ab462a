import { randomBytes } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, Options } from 'amqplib';
import * as amqp from 'amqplib';
import pg from 'pg';
import { migrate } from '../../src/migrate/migrate.js';
import { outboxTables } from '../../src/sql/outbox-tables.js';
import { onInterrupt } from './bench-cli.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

export type QueueType = 'classic' | 'quorum';

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

/** A pool of at most `max` connections, named `applicationName` in pg_stat_activity if given. */
export function newPool(max = 10, applicationName?: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString: DATABASE_URL,
    max,
    ...(applicationName !== undefined && { application_name: applicationName }),
  });
  pool.on('error', () => {});
  return pool;
}

/** A migrated outbox schema of its own, dropped by `drop()`. */
export interface BenchSchema {
  readonly name: string;
  readonly outbox: string;
  drop(): Promise<void>;
}

export async function benchSchema(pool: pg.Pool, prefix = 'bench'): Promise<BenchSchema> {
  const name = uniqueName(prefix);
  await migrate(pool, { schema: name });
  const { outbox, schema } = outboxTables(name);
  const drop = async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  };
  const forget = onInterrupt(drop);
  return {
    name,
    outbox,
    drop: async () => {
      forget();
      await drop();
    },
  };
}

/** amqplib with Nagle off, as the relay connects; `noDelay: false` is amqplib's default. */
export async function amqpConnect(noDelay = true): Promise<ChannelModel> {
  const connection = await amqp.connect(AMQP_URL, { noDelay });
  connection.on('error', () => {});
  return connection;
}

/**
 * A direct exchange and one durable queue bound to it, recreated empty by `reset()` so each
 * measurement starts on an empty queue.
 */
export class BenchQueue {
  readonly exchange: string;
  readonly queue: string;
  readonly routingKey = 'bench';
  readonly #channel: Channel;
  readonly #type: QueueType;
  readonly #arguments: Record<string, unknown>;
  #forget: () => void = () => {};

  private constructor(
    channel: Channel,
    prefix: string,
    type: QueueType,
    args: Record<string, unknown>,
  ) {
    this.#channel = channel;
    this.#type = type;
    this.#arguments = args;
    this.exchange = `${prefix}.x`;
    this.queue = `${prefix}.${type}`;
  }

  static async open(
    connection: ChannelModel,
    type: QueueType,
    args: Record<string, unknown> = {},
  ): Promise<BenchQueue> {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    const queue = new BenchQueue(channel, uniqueName('bench'), type, args);
    queue.#forget = onInterrupt(() => queue.#delete());
    await channel.assertExchange(queue.exchange, 'direct', { durable: true });
    await queue.reset();
    return queue;
  }

  async reset(): Promise<void> {
    await this.#channel.deleteQueue(this.queue);
    const options: Options.AssertQueue = {
      durable: true,
      arguments: { 'x-queue-type': this.#type, ...this.#arguments },
    };
    await this.#channel.assertQueue(this.queue, options);
    await this.#channel.bindQueue(this.queue, this.exchange, this.routingKey);
  }

  async depth(): Promise<number> {
    return (await this.#channel.checkQueue(this.queue)).messageCount;
  }

  /** Waits until the queue reports `count` messages (a quorum queue's count lags a little). */
  async expectDepth(count: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const depth = await this.depth();
      if (depth === count) return;
      if (Date.now() > deadline) throw new Error(`${this.queue} holds ${depth}, expected ${count}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async close(): Promise<void> {
    this.#forget();
    await this.#delete();
  }

  async #delete(): Promise<void> {
    await this.#channel.deleteQueue(this.queue).catch(() => {});
    await this.#channel.deleteExchange(this.exchange).catch(() => {});
    await this.#channel.close().catch(() => {});
  }
}

/** A 1 KiB JSON document, as SQL: the same bytes the writer would store for `{id, pad}`. */
const PAYLOAD_SQL = `convert_to(json_build_object('id', i, 'pad', repeat('x', 1024 - 21 - length(i::text)))::text, 'UTF8')`;

/** Inserts `count` 1 KiB JSON messages into the outbox in one statement per 50,000. */
export async function insertOutboxRows(
  db: pg.Pool | pg.PoolClient,
  outbox: string,
  count: number,
  exchange: string,
  routingKey: string,
): Promise<void> {
  const chunk = 50_000;
  for (let from = 1; from <= count; from += chunk) {
    const to = Math.min(count, from + chunk - 1);
    await db.query(
      `INSERT INTO ${outbox} (message_id, exchange, routing_key, payload, content_type)
       SELECT gen_random_uuid()::text, $1, $2, ${PAYLOAD_SQL}, 'application/json'
       FROM generate_series($3::int, $4::int) AS i`,
      [exchange, routingKey, from, to],
    );
  }
}

/**
 * Fills the outbox with `count` committed 1 KiB JSON messages, as if writers had committed
 * them, then vacuums so every measurement starts from the same table state.
 */
export async function prefillOutbox(
  pool: pg.Pool,
  outbox: string,
  count: number,
  exchange: string,
  routingKey: string,
): Promise<void> {
  await insertOutboxRows(pool, outbox, count, exchange, routingKey);
  await pool.query(`VACUUM ANALYZE ${outbox}`);
}

/** A 1 KiB JSON payload built in Node, byte for byte what `prefillOutbox` stores for `i`. */
export function payload(i: number): Buffer {
  const head = `{"id" : ${i}, "pad" : "`;
  return Buffer.from(`${head}${'x'.repeat(1024 - 21 - String(i).length)}"}`);
}

/** A message as the relay would publish it, loaded from the outbox for the baselines. */
export interface PreparedMessage {
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  readonly options: Options.Publish;
}

export async function loadMessages(pool: pg.Pool, outbox: string): Promise<PreparedMessage[]> {
  const { rows } = await pool.query<{
    exchange: string;
    routing_key: string;
    payload: Buffer;
    message_id: string;
    content_type: string;
    created_at: Date;
  }>(
    `SELECT exchange, routing_key, payload, message_id, content_type, created_at FROM ${outbox} ORDER BY id`,
  );
  return rows.map((r) => ({
    exchange: r.exchange,
    routingKey: r.routing_key,
    content: r.payload,
    options: {
      persistent: true,
      mandatory: true,
      messageId: r.message_id,
      timestamp: Math.floor(r.created_at.getTime() / 1000),
      contentType: r.content_type,
      headers: {},
    },
  }));
}

/**
 * The broker's limit: raw amqplib asynchronous confirms on one channel, at most `window`
 * messages unconfirmed. Resolves with the elapsed milliseconds once every message is acked.
 */
export async function publishAsyncConfirms(
  channel: ConfirmChannel,
  messages: readonly PreparedMessage[],
  window: number,
): Promise<number> {
  const start = performance.now();
  let sent = 0;
  let acked = 0;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (sent < messages.length && sent - acked < window) {
        const m = messages[sent]!;
        sent += 1;
        channel.publish(m.exchange, m.routingKey, m.content, m.options, onConfirm);
      }
    };
    const onConfirm = (error: unknown) => {
      if (error) {
        reject(error instanceof Error ? error : new Error('nack'));
        return;
      }
      acked += 1;
      if (acked === messages.length) resolve();
      // Refill in steps rather than after every ack: fewer, larger socket writes.
      else if (sent - acked <= window / 2) pump();
    };
    pump();
  });
  return performance.now() - start;
}

export async function serverVersionsPg(pool: pg.Pool): Promise<Record<string, string>> {
  const { rows } = await pool.query<{ v: string; s: string }>(
    "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS s",
  );
  return { postgres: rows[0]!.v, synchronousCommit: rows[0]!.s };
}

export async function serverVersions(
  pool: pg.Pool,
  connection: ChannelModel,
): Promise<Record<string, string>> {
  const props = (connection.connection as unknown as { serverProperties?: Record<string, unknown> })
    .serverProperties;
  return {
    ...(await serverVersionsPg(pool)),
    rabbitmq: String(props?.['version'] ?? 'unknown'),
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

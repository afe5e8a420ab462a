import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import type pg from 'pg';

/** What issue 13 measured its hand-written relay at: rows per claim, claims in flight. */
export const HAND_RELAY_BATCH = 1000;
export const HAND_RELAY_BATCHES = 4;

interface HandRow {
  readonly id: string;
  readonly exchange: string;
  readonly routing_key: string;
  readonly payload: Buffer;
  readonly message_id: string;
  readonly content_type: string;
  readonly created_at_s: number;
}

/**
 * The smallest batched relay that keeps the outbox's guarantee, as issue 13 wrote it by hand: the
 * second baseline of `bench/relay-drain.ts`, between raw publishing and the relay. `batches`
 * loops share one confirm channel; each claims `batch` rows `FOR UPDATE SKIP LOCKED` in a
 * transaction of its own, publishes them all with asynchronous confirms, waits for every answer,
 * deletes the acked rows in one statement and commits. No retries, ordering keys, timeouts or
 * spans: a nack or a return fails the drain. Messages carry the relay's properties (persistent,
 * mandatory, message id, write time in seconds, content type, headers).
 *
 * The pool's connections and the channel are opened before the clock starts. Resolves with the
 * milliseconds from the first claim until `expected` rows are deleted and committed, the moment
 * at which the relay's `published` reaches the same count.
 */
export async function handRelayDrain(
  pool: pg.Pool,
  connection: ChannelModel,
  outbox: string,
  expected: number,
  batch = HAND_RELAY_BATCH,
  batches = HAND_RELAY_BATCHES,
): Promise<number> {
  const clients = await Promise.all(Array.from({ length: batches }, () => pool.connect()));
  const channel = await connection.createConfirmChannel();
  const failures: Error[] = [];
  channel.on('error', (error: Error) => failures.push(error));
  channel.on('return', () => failures.push(new Error('hand relay: a message was returned')));
  const claim = `SELECT id, exchange, routing_key, payload, message_id, content_type,
      floor(extract(epoch FROM created_at))::float8 AS created_at_s
    FROM ${outbox} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`;
  const remove = `DELETE FROM ${outbox} WHERE id = ANY($1::bigint[])`;
  let committed = 0;
  let finishedAt = 0;
  const start = performance.now();
  const loop = async (client: pg.PoolClient) => {
    for (;;) {
      await client.query('BEGIN');
      const { rows } = await client.query<HandRow>(claim, [batch]);
      if (rows.length === 0) {
        await client.query('COMMIT');
        return;
      }
      const acked = await publishAll(channel, rows);
      if (failures.length > 0) throw failures[0];
      await client.query(remove, [acked]);
      await client.query('COMMIT');
      committed += acked.length;
      if (committed >= expected && finishedAt === 0) finishedAt = performance.now();
    }
  };
  try {
    await Promise.all(clients.map(loop));
  } finally {
    for (const client of clients) client.release();
    await channel.close().catch(() => {});
  }
  if (committed !== expected) {
    throw new Error(`hand relay published ${committed}, expected ${expected}`);
  }
  return finishedAt - start;
}

/** Publishes every row and resolves, once all are answered, with the ids of the acked ones. */
function publishAll(channel: ConfirmChannel, rows: readonly HandRow[]): Promise<string[]> {
  return new Promise((resolve) => {
    const acked: string[] = [];
    let open = rows.length;
    for (const row of rows) {
      const options: Options.Publish = {
        persistent: true,
        mandatory: true,
        messageId: row.message_id,
        timestamp: row.created_at_s,
        contentType: row.content_type,
        headers: {},
      };
      channel.publish(row.exchange, row.routing_key, row.payload, options, (error) => {
        if (!error) acked.push(row.id);
        open -= 1;
        if (open === 0) resolve(acked);
      });
    }
  });
}

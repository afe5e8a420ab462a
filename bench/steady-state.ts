/**
 * Benchmark 4, steady state: producers commit business transactions, each with one outbox row,
 * at 25, 50 and 75 percent of the relay's drain rate (measured first, in the same run), while a
 * relay publishes them. Reports commit-to-ack latency (the broker's publisher confirm) with
 * LISTEN/NOTIFY on (the writer's default NOTIFY throttle) and off (no NOTIFY at all). The poll
 * interval is the relay's default, 1000 ms.
 *
 *   node dist/bench/steady-state.js [--quick] [--json FILE] [--seconds 30] [--percents 25,50,75]
 *     [--max-rate N] [--clients 32]
 */
import type { ConfirmChannel } from 'amqplib';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { silentLogger } from '../src/util/logger.js';
import { uuidv7 } from '../src/util/uuidv7.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { timeRelayDrain } from './relay-drain.js';
import {
  type BenchArgs,
  type BenchReport,
  type FreeTable,
  intFlag,
  isMain,
  listFlag,
  percentile,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  AMQP_URL,
  amqpConnect,
  BenchQueue,
  benchSchema,
  newPool,
  prefillOutbox,
  serverVersions,
  sleep,
} from './support/bench-services.js';

type PublishFn = (
  exchange: string,
  routingKey: string,
  content: Buffer,
  options?: { messageId?: string },
  callback?: (error: unknown, ok: unknown) => void,
) => boolean;

/**
 * Sees every publisher confirm in this process: wraps ConfirmChannel#publish, so the relay's own
 * confirms are timed where they arrive, without a hook in the relay. Returns the undo.
 */
function observeAcks(sample: ConfirmChannel, onAck: (messageId: string) => void): () => void {
  const proto = Object.getPrototypeOf(sample) as { publish: PublishFn };
  const original = proto.publish;
  proto.publish = function (
    this: ConfirmChannel,
    exchange,
    routingKey,
    content,
    options,
    callback,
  ) {
    const id = options?.messageId;
    return original.call(this, exchange, routingKey, content, options, (error, ok) => {
      if (!error && id !== undefined) onAck(id);
      callback?.(error, ok);
    });
  };
  return () => {
    proto.publish = original;
  };
}

interface Point {
  readonly listen: boolean;
  readonly percent: number;
  readonly offered: number;
  readonly achieved: number;
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export async function steadyState(args: BenchArgs): Promise<BenchReport> {
  const seconds = intFlag(args, 'seconds', 1, 30);
  const clients = intFlag(args, 'clients', 8, 32);
  const percents = listFlag(args, 'percents', args.quick ? ['25'] : ['25', '50', '75']).map(Number);
  const pollIntervalMs = 1000;
  const pool = newPool(clients + 2);
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_steady');
  const queue = await BenchQueue.open(connection, 'classic');
  const orders = `"${schema.name}".orders`;
  await pool.query(
    `CREATE TABLE ${orders} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       customer text NOT NULL, amount integer NOT NULL)`,
  );
  // With LISTEN off nobody hears a NOTIFY: the writer sends none, as a user would configure it.
  const notifyingWriter = new OutboxWriter({ schema: schema.name });
  const silentWriter = new OutboxWriter({ schema: schema.name, notifyIntervalMs: false });
  const sample = await connection.createConfirmChannel();
  const commits = new Map<string, number>();
  const acks = new Map<string, number>();
  const undo = observeAcks(sample, (id) => acks.set(id, performance.now()));
  const points: Point[] = [];
  let maxRate = intFlag(args, 'max-rate', 0, 0);
  try {
    if (maxRate === 0) {
      const n = args.quick ? 500 : 20_000;
      await prefillOutbox(pool, schema.outbox, n, queue.exchange, queue.routingKey);
      await waitForQuiet();
      maxRate =
        (n / (await timeRelayDrain(schema.name, n, { batchSize: 500, concurrency: 4 }))) * 1000;
      progress(`relay drain rate: ${Math.round(maxRate)} msgs/s`);
    }
    const pad = 'x'.repeat(1000);
    const transaction = async (i: number, writer: OutboxWriter) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(`INSERT INTO ${orders} (customer, amount) VALUES ($1, $2)`, [
          `c${i}`,
          i,
        ]);
        const messageId = uuidv7();
        await writer.add(client, {
          exchange: queue.exchange,
          routingKey: queue.routingKey,
          payload: { order: i, pad },
          messageId,
        });
        await client.query('COMMIT');
        commits.set(messageId, performance.now());
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    };
    for (const listen of [true, false]) {
      for (const percent of percents) {
        await queue.reset();
        commits.clear();
        acks.clear();
        const relayPool = newPool(8);
        const relay = new OutboxRelay({
          pool: relayPool,
          amqpUrl: AMQP_URL,
          schema: schema.name,
          listen,
          pollIntervalMs,
          logger: silentLogger,
        });
        await relay.start();
        while (!relay.isConnected) await sleep(5);
        await waitForQuiet();
        const offered = (maxRate * percent) / 100;
        const tickMs = 5;
        const start = performance.now();
        const warmMs = Math.min(2000, (seconds * 1000) / 4);
        const inFlight = new Set<Promise<void>>();
        let issued = 0;
        let failed: unknown;
        while (performance.now() - start < seconds * 1000) {
          const due = Math.floor(((performance.now() - start) / 1000) * offered);
          while (issued < due && inFlight.size < clients * 4) {
            const p: Promise<void> = transaction(
              issued,
              listen ? notifyingWriter : silentWriter,
            ).then(
              () => {
                inFlight.delete(p);
              },
              (error: unknown) => {
                failed ??= error;
                inFlight.delete(p);
              },
            );
            inFlight.add(p);
            issued += 1;
          }
          if (failed) throw failed;
          await sleep(tickMs);
        }
        await Promise.all(inFlight);
        const deadline = performance.now() + pollIntervalMs * 3 + 5000;
        while (acks.size < commits.size && performance.now() < deadline) await sleep(10);
        await relay.stop();
        await relayPool.end();
        const latencies: number[] = [];
        let measured = 0;
        for (const [id, committedAt] of commits) {
          if (committedAt - start < warmMs) continue;
          const ackedAt = acks.get(id);
          if (ackedAt === undefined) throw new Error(`message ${id} never acked`);
          // The relay may publish a row before the producer has seen its own COMMIT return.
          latencies.push(Math.max(0, ackedAt - committedAt));
          measured += 1;
        }
        const point: Point = {
          listen,
          percent,
          offered,
          achieved: commits.size / seconds,
          count: measured,
          p50: percentile(latencies, 50),
          p90: percentile(latencies, 90),
          p99: percentile(latencies, 99),
          max: Math.max(...latencies),
        };
        points.push(point);
        progress(
          `listen ${listen ? 'on' : 'off'}, ${percent}%: offered ${Math.round(offered)}/s, committed ${Math.round(point.achieved)}/s, p50 ${point.p50.toFixed(1)} ms, p99 ${point.p99.toFixed(1)} ms, max ${point.max.toFixed(1)} ms`,
        );
      }
    }
  } finally {
    undo();
    await sample.close().catch(() => {});
    await queue.close();
    await schema.drop();
    await connection.close().catch(() => {});
    await pool.end();
  }
  const table: FreeTable = {
    title: `Commit to publisher confirm, ms (poll interval ${pollIntervalMs} ms, ${seconds} s per point, first ${Math.min(2, seconds / 4)} s not counted)`,
    header: [
      'LISTEN/NOTIFY',
      '% of drain rate',
      'offered tx/s',
      'committed tx/s',
      'messages',
      'p50',
      'p90',
      'p99',
      'max',
    ],
    rows: points.map((p) => [
      p.listen ? 'on' : 'off',
      p.percent,
      Math.round(p.offered),
      Math.round(p.achieved),
      p.count,
      p.p50,
      p.p90,
      p.p99,
      p.max,
    ]),
  };
  return {
    benchmark: 'steady-state',
    title: 'Steady state: commit-to-ack latency',
    settings: {
      seconds,
      clients,
      percents,
      pollIntervalMs,
      relayDrainRate: Math.round(maxRate),
      ...versions,
    },
    sections: [],
    tables: [table],
    notes: [
      `target: p99 at 25% below ${pollIntervalMs / 10} ms (a tenth of the poll interval)`,
      'committed below offered means the producers (Postgres commits) could not keep up',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(steadyState);

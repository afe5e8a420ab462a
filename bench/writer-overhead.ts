/**
 * Benchmark 5, writer overhead: a business transaction alone (BEGIN; INSERT an order; COMMIT)
 * against the same transaction with 1 and with 10 outbox rows of 1 KiB written by OutboxWriter,
 * from many clients at once, for a fixed time each.
 *
 *   node dist/bench/writer-overhead.js [--quick] [--json FILE] [--runs 3] [--clients 32]
 *     [--seconds 5]
 */
import type pg from 'pg';
import type { OutboxMessage } from '../src/writer/outbox-message.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import {
  type BenchArgs,
  type BenchReport,
  intFlag,
  isMain,
  type Measurement,
  measurement,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import { benchSchema, newPool, serverVersionsPg, sleep } from './support/bench-services.js';

const PAD = 'x'.repeat(1000);

async function measure(
  pool: pg.Pool,
  clients: number,
  seconds: number,
  transaction: (client: pg.PoolClient, i: number) => Promise<void>,
): Promise<number> {
  const connections = await Promise.all(Array.from({ length: clients }, () => pool.connect()));
  let done = 0;
  let stop = false;
  const start = performance.now();
  const workers = connections.map(async (client, w) => {
    let i = 0;
    while (!stop) {
      await client.query('BEGIN');
      await transaction(client, w * 1_000_000 + i);
      await client.query('COMMIT');
      i += 1;
      done += 1;
    }
  });
  await sleep(seconds * 1000);
  stop = true;
  await Promise.all(workers);
  const ms = performance.now() - start;
  for (const c of connections) c.release();
  return (done / ms) * 1000;
}

export async function writerOverhead(args: BenchArgs): Promise<BenchReport> {
  const clients = intFlag(args, 'clients', 4, 32);
  const seconds = intFlag(args, 'seconds', 1, 5);
  const pool = newPool(clients + 2);
  const versions = await serverVersionsPg(pool);
  const schema = await benchSchema(pool, 'bench_writer');
  const orders = `"${schema.name}".orders`;
  await pool.query(
    `CREATE TABLE ${orders} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       customer text NOT NULL, amount integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
  );
  const writer = new OutboxWriter({ schema: schema.name });
  const insertOrder = `INSERT INTO ${orders} (customer, amount) VALUES ($1, $2)`;
  const message = (i: number, k: number): OutboxMessage => ({
    exchange: 'orders',
    routingKey: 'order.placed',
    payload: { order: i, line: k, pad: PAD },
  });
  const variants: {
    name: string;
    /** Runs the variant with the outbox's NOTIFY trigger disabled, to show what it costs. */
    withoutNotify?: boolean;
    tx: (c: pg.PoolClient, i: number) => Promise<void>;
  }[] = [
    {
      name: 'business transaction alone',
      tx: async (c, i) => {
        await c.query(insertOrder, [`customer-${i % 1000}`, i % 500]);
      },
    },
    {
      name: 'with 1 outbox row (writer.add)',
      tx: async (c, i) => {
        await c.query(insertOrder, [`customer-${i % 1000}`, i % 500]);
        await writer.add(c, message(i, 0));
      },
    },
    {
      name: 'with 1 outbox row, NOTIFY trigger disabled',
      withoutNotify: true,
      tx: async (c, i) => {
        await c.query(insertOrder, [`customer-${i % 1000}`, i % 500]);
        await writer.add(c, message(i, 0));
      },
    },
    {
      name: 'with 10 outbox rows (writer.addMany)',
      tx: async (c, i) => {
        await c.query(insertOrder, [`customer-${i % 1000}`, i % 500]);
        await writer.addMany(
          c,
          Array.from({ length: 10 }, (_, k) => message(i, k)),
        );
      },
    },
  ];
  const rates = variants.map(() => [] as number[]);
  const ratios = variants.map(() => [] as number[]);
  try {
    for (let run = 1; run <= args.runs; run += 1) {
      const runRates: number[] = new Array(variants.length);
      // Alternate the order so that a growing WAL or a neighbour's load hits every variant.
      const order = variants.map((_, i) => i);
      if (run % 2 === 0) order.reverse();
      for (const i of order) {
        await pool.query(`TRUNCATE ${orders}, ${schema.outbox}`);
        await pool.query('CHECKPOINT');
        const trigger = variants[i]!.withoutNotify ? 'DISABLE' : 'ENABLE';
        await pool.query(`ALTER TABLE ${schema.outbox} ${trigger} TRIGGER outbox_notify`);
        await waitForQuiet();
        runRates[i] = await measure(pool, clients, seconds, variants[i]!.tx);
        progress(`run ${run}: ${variants[i]!.name}: ${Math.round(runRates[i]!)} tx/s`);
      }
      runRates.forEach((r, i) => {
        rates[i]!.push(r);
        ratios[i]!.push(r / runRates[0]!);
      });
    }
  } finally {
    await schema.drop();
    await pool.end();
  }
  const rows: Measurement[] = variants.map((v, i) =>
    measurement(v.name, 'tx/s', rates[i]!, { ratios: ratios[i]! }),
  );
  return {
    benchmark: 'writer-overhead',
    title: 'Writer overhead: business transaction with and without outbox rows',
    settings: { clients, seconds, payload: '1 KiB JSON', ...versions },
    sections: [{ title: `${clients} clients, ${seconds} s per measurement`, rows }],
    notes: ['ratio: to the business transaction alone, measured in the same run'],
  };
}

if (isMain(import.meta.url)) await runStandalone(writerOverhead);

/**
 * Benchmark 5, writer overhead: a business transaction alone against the same transaction with 1
 * and with 10 outbox rows of 1 KiB written by OutboxWriter, from many clients at once, for a fixed
 * time each. Two business transactions: the smallest there is (BEGIN; INSERT an order; COMMIT),
 * and an order of three lines that also updates stock and reads back (four statements). The one-row case runs
 * with the writer's default NOTIFY throttle (with and without an ordering key), with a NOTIFY from
 * every transaction, and with none; the one-row cases and the order also with the writer's
 * `preparedStatements` on.
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
import { type CpuSnapshot, cpuPerMessage, cpuSnapshot } from './support/process-cpu.js';

const PAD = 'x'.repeat(1000);

/** Transactions per second, and CPU microseconds per transaction of this process and Postgres. */
async function measure(
  pool: pg.Pool,
  clients: number,
  seconds: number,
  transaction: (client: pg.PoolClient, i: number) => Promise<void>,
): Promise<{ rate: number; cpu: CpuSnapshot }> {
  const connections = await Promise.all(Array.from({ length: clients }, () => pool.connect()));
  let done = 0;
  let stop = false;
  const cpu = cpuSnapshot();
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
  const perTransaction = cpuPerMessage(cpu, cpuSnapshot(), done);
  for (const c of connections) c.release();
  return { rate: (done / ms) * 1000, cpu: perTransaction };
}

export async function writerOverhead(args: BenchArgs): Promise<BenchReport> {
  const clients = intFlag(args, 'clients', 4, 32);
  const seconds = intFlag(args, 'seconds', 1, 5);
  const pool = newPool(clients + 2);
  const versions = await serverVersionsPg(pool);
  const schema = await benchSchema(pool, 'bench_writer');
  const orders = `"${schema.name}".orders`;
  const lines = `"${schema.name}".order_lines`;
  const stock = `"${schema.name}".stock`;
  await pool.query(
    `CREATE TABLE ${orders} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       customer text NOT NULL, amount integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
  );
  await pool.query(
    `CREATE TABLE ${lines} (order_id bigint NOT NULL, line integer NOT NULL, sku text NOT NULL,
       quantity integer NOT NULL, PRIMARY KEY (order_id, line))`,
  );
  await pool.query(`CREATE TABLE ${stock} (sku text PRIMARY KEY, available integer NOT NULL)`);
  await pool.query(
    `INSERT INTO ${stock} SELECT 'sku-' || i, 1000000000 FROM generate_series(0, 9999) AS i`,
  );
  const writer = new OutboxWriter({ schema: schema.name });
  const notifyEvery = new OutboxWriter({ schema: schema.name, notifyIntervalMs: 0 });
  const notifyNever = new OutboxWriter({ schema: schema.name, notifyIntervalMs: false });
  const prepared = new OutboxWriter({ schema: schema.name, preparedStatements: true });
  const insertOrder = `INSERT INTO ${orders} (customer, amount) VALUES ($1, $2)`;
  const insertOrderReturning = `${insertOrder} RETURNING id`;
  const insertLines = `INSERT INTO ${lines} (order_id, line, sku, quantity)
    SELECT $1, l, 'sku-' || (($2::int + l * 3331) % 10000), 1 + l FROM generate_series(1, 3) AS l`;
  const takeStock = `UPDATE ${stock} SET available = available - 1 WHERE sku = $1`;
  /** The order with its lines and a stock update: what a real order service might commit. */
  const placeOrder = async (c: pg.PoolClient, i: number) => {
    const { rows } = await c.query<{ id: string }>(insertOrderReturning, [
      `customer-${i % 1000}`,
      i % 500,
    ]);
    await c.query(insertLines, [rows[0]!.id, i % 10000]);
    await c.query(takeStock, [`sku-${i % 10000}`]);
    await c.query(`SELECT sum(quantity) FROM ${lines} WHERE order_id = $1`, [rows[0]!.id]);
  };
  const message = (i: number, k: number): OutboxMessage => ({
    exchange: 'orders',
    routingKey: 'order.placed',
    payload: { order: i, line: k, pad: PAD },
  });
  /** The smallest business transaction's one statement. */
  const insertOneOrder = async (c: pg.PoolClient, i: number) => {
    await c.query(insertOrder, [`customer-${i % 1000}`, i % 500]);
  };
  /**
   * `business`, then one outbox row from `by`; `keyed`: with a key of its own per transaction,
   * so that the key's lock costs its statement, never a wait.
   */
  const withRow =
    (business: (c: pg.PoolClient, i: number) => Promise<void>, by: OutboxWriter, keyed = false) =>
    async (c: pg.PoolClient, i: number) => {
      await business(c, i);
      await by.add(c, keyed ? { ...message(i, 0), orderingKey: `order-${i}` } : message(i, 0));
    };
  const variants: {
    name: string;
    /** Index of the variant this one is compared with: its business transaction alone. */
    baseline: number;
    tx: (c: pg.PoolClient, i: number) => Promise<void>;
  }[] = [
    { name: 'one INSERT: business transaction alone', baseline: 0, tx: insertOneOrder },
    {
      name: 'one INSERT: with 1 outbox row (writer.add, default NOTIFY throttle)',
      baseline: 0,
      tx: withRow(insertOneOrder, writer),
    },
    {
      name: 'one INSERT: with 1 outbox row with an ordering key (writer.add, default throttle)',
      baseline: 0,
      tx: withRow(insertOneOrder, writer, true),
    },
    {
      name: 'one INSERT: with 1 outbox row, NOTIFY from every transaction',
      baseline: 0,
      tx: withRow(insertOneOrder, notifyEvery),
    },
    {
      name: 'one INSERT: with 1 outbox row, no NOTIFY',
      baseline: 0,
      tx: withRow(insertOneOrder, notifyNever),
    },
    {
      name: 'one INSERT: with 10 outbox rows (writer.addMany)',
      baseline: 0,
      tx: async (c, i) => {
        await insertOneOrder(c, i);
        await writer.addMany(
          c,
          Array.from({ length: 10 }, (_, k) => message(i, k)),
        );
      },
    },
    {
      name: 'order of 3 lines + stock update: business transaction alone',
      baseline: 6,
      tx: placeOrder,
    },
    {
      name: 'order of 3 lines + stock update: with 1 outbox row (writer.add)',
      baseline: 6,
      tx: withRow(placeOrder, writer),
    },
    {
      name: 'one INSERT: with 1 outbox row, preparedStatements: true (default throttle)',
      baseline: 0,
      tx: withRow(insertOneOrder, prepared),
    },
    {
      name: 'one INSERT: with 1 outbox row with an ordering key, preparedStatements: true',
      baseline: 0,
      tx: withRow(insertOneOrder, prepared, true),
    },
    {
      name: 'order of 3 lines + stock update: with 1 outbox row, preparedStatements: true',
      baseline: 6,
      tx: withRow(placeOrder, prepared),
    },
  ];
  const rates = variants.map(() => [] as number[]);
  const cpus = variants.map(() => [] as CpuSnapshot[]);
  const ratios = variants.map(() => [] as number[]);
  try {
    for (let run = 1; run <= args.runs; run += 1) {
      const runRates: number[] = new Array(variants.length);
      // Alternate the order so that a growing WAL or a neighbour's load hits every variant.
      const order = variants.map((_, i) => i);
      if (run % 2 === 0) order.reverse();
      for (const i of order) {
        await pool.query(`TRUNCATE ${orders}, ${lines}, ${schema.outbox}`);
        await pool.query('CHECKPOINT');
        await waitForQuiet();
        const { rate, cpu } = await measure(pool, clients, seconds, variants[i]!.tx);
        runRates[i] = rate;
        cpus[i]!.push(cpu);
        progress(`run ${run}: ${variants[i]!.name}: ${Math.round(runRates[i]!)} tx/s`);
      }
      runRates.forEach((r, i) => {
        rates[i]!.push(r);
        ratios[i]!.push(r / runRates[variants[i]!.baseline]!);
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
    sections: [
      { title: `${clients} clients, ${seconds} s per measurement`, rows },
      {
        // Both sides share the machine's cores: the client's CPU is taken from Postgres.
        title: 'CPU time per transaction: this process (the 32 clients) and Postgres',
        rows: variants.flatMap((v, i) => [
          measurement(
            `${v.name}: Node`,
            'CPU µs/tx',
            cpus[i]!.map((c) => c.node),
          ),
          measurement(
            `${v.name}: postgres`,
            'CPU µs/tx',
            cpus[i]!.map((c) => c.postgres),
          ),
        ]),
      },
    ],
    notes: [
      'ratio: to the same business transaction alone, measured in the same run',
      'default NOTIFY throttle: the writer notifies at most once per 20 ms',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(writerOverhead);

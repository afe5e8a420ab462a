/**
 * Hot key: the rate of ONE ordering key through the relay at its defaults, against the same
 * relay claiming one row per key per batch (`keyRunSize: 1`, the path before key runs), in the
 * same run. The outbox holds N 1 KiB rows of one key; the one-row path is timed over its first
 * `--baseline` rows only (at a few dozen rows a second it would take an hour to drain 20k), the
 * run path over all N. Then, so that runs cost the other workloads nothing: N rows without a key
 * and N rows over many keys, drained by both paths. For reference, the broker's ceiling for one
 * message in flight: raw amqplib publishing each message once the one before is confirmed.
 *
 *   node dist/bench/hot-key.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--baseline 200] [--keys 2000] [--run-sizes 100,500]
 */
import type pg from 'pg';
import { DEFAULT_KEY_RUN_SIZE } from '../src/relay/relay-options.js';
import {
  type BenchArgs,
  type BenchReport,
  intFlag,
  isMain,
  listFlag,
  type Measurement,
  measurement,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  amqpConnect,
  BenchQueue,
  benchSchema,
  DATABASE_URL,
  insertOutboxRows,
  loadMessages,
  newPool,
  publishAsyncConfirms,
  serverVersions,
} from './support/bench-services.js';
import { RELAY_DEFAULTS, timeRelayDrainAt } from './support/relay-drain-timer.js';

/** How the outbox's rows are keyed: one key, none, or `keys` keys round robin. */
type Keying = { readonly kind: 'hot' } | { readonly kind: 'none' } | { keys: number; kind: 'many' };

/** Fills the outbox with `count` 1 KiB rows keyed as asked, and vacuums. */
async function fill(
  pool: pg.Pool,
  outbox: string,
  queue: BenchQueue,
  count: number,
  keying: Keying,
): Promise<void> {
  await pool.query(`TRUNCATE ${outbox}`);
  await insertOutboxRows(pool, outbox, count, queue.exchange, queue.routingKey);
  if (keying.kind === 'hot') await pool.query(`UPDATE ${outbox} SET ordering_key = 'hot'`);
  if (keying.kind === 'many') {
    await pool.query(`UPDATE ${outbox} SET ordering_key = 'k' || (id % $1)`, [keying.keys]);
  }
  await pool.query(`VACUUM ANALYZE ${outbox}`);
}

/** The relay at its defaults but `keyRunSize`, on a filled outbox: messages/s. */
async function relayRate(schema: string, expected: number, keyRunSize: number): Promise<number> {
  const ms = await timeRelayDrainAt(DATABASE_URL, schema, expected, RELAY_DEFAULTS, { keyRunSize });
  return (expected / ms) * 1000;
}

export async function hotKey(args: BenchArgs): Promise<BenchReport> {
  const messages = intFlag(args, 'messages', 2000, 20_000);
  const baselineRows = Math.min(messages, intFlag(args, 'baseline', 100, 200));
  const keys = intFlag(args, 'keys', 500, 2000);
  const ceilingRows = Math.min(messages, 2000);
  const runSizes = listFlag(args, 'run-sizes', [String(DEFAULT_KEY_RUN_SIZE)]).map(Number);
  const pool = newPool(4);
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_hot');
  const queue = await BenchQueue.open(connection, 'classic');
  const sections: BenchReport['sections'][number][] = [];
  try {
    /** Fills, empties the queue, waits for a quiet machine, and measures one relay. */
    const measure = async (keying: Keying, expected: number, keyRunSize: number) => {
      await fill(pool, schema.outbox, queue, messages, keying);
      await queue.reset();
      await waitForQuiet();
      const rate = await relayRate(schema.name, expected, keyRunSize);
      if (expected === messages) await queue.expectDepth(messages);
      return rate;
    };
    const workloads: Array<{ title: string; keying: Keying; baselineCount: number }> = [
      {
        title: `one hot key: ${messages} rows of one ordering key, 1 KiB, classic queue`,
        keying: { kind: 'hot' },
        baselineCount: baselineRows,
      },
      {
        title: `no key: ${messages} rows without an ordering key (regression check)`,
        keying: { kind: 'none' },
        baselineCount: messages,
      },
      {
        title: `many keys: ${messages} rows over ${keys} ordering keys (regression check)`,
        keying: { kind: 'many', keys },
        baselineCount: messages,
      },
    ];
    // The ceiling of any path that keeps one message per key in flight: raw amqplib, each
    // publish sent once the one before it is confirmed.
    const ceiling: number[] = [];
    for (let run = 1; run <= args.runs; run += 1) {
      await fill(pool, schema.outbox, queue, ceilingRows, { kind: 'hot' });
      const prepared = await loadMessages(pool, schema.outbox);
      await queue.reset();
      await waitForQuiet();
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => {});
      ceiling.push((ceilingRows / (await publishAsyncConfirms(channel, prepared, 1))) * 1000);
      await channel.close();
      await queue.expectDepth(ceilingRows);
    }
    for (const w of workloads) {
      const baseline: number[] = [];
      const rates: number[][] = runSizes.map(() => []);
      const ratios: number[][] = runSizes.map(() => []);
      for (let run = 1; run <= args.runs; run += 1) {
        // Alternate the order, so that drift (a neighbour's load, a growing WAL) hits both sides.
        const measureBaseline = () => measure(w.keying, w.baselineCount, 1);
        let base = 0;
        if (run % 2 === 1) base = await measureBaseline();
        const after: number[] = [];
        for (const size of runSizes) after.push(await measure(w.keying, messages, size));
        if (run % 2 === 0) base = await measureBaseline();
        baseline.push(base);
        after.forEach((rate, i) => {
          rates[i]!.push(rate);
          ratios[i]!.push(rate / base);
        });
        progress(
          `${w.keying.kind}: run ${run}: one row per key ${Math.round(base)}/s, runs ${after
            .map((r, i) => `${runSizes[i]} ${Math.round(r)}/s`)
            .join(', ')}`,
        );
      }
      const reference =
        w.keying.kind === 'hot'
          ? [
              measurement(
                `raw amqplib, one publish at a time, each after the one before is confirmed (${ceilingRows} messages; the ceiling)`,
                'msgs/s',
                ceiling,
              ),
            ]
          : [];
      const rows: Measurement[] = [
        ...reference,
        measurement(
          `keyRunSize 1: one row per key per batch (before; baseline)${
            w.baselineCount < messages ? `, first ${w.baselineCount} rows` : ''
          }`,
          'msgs/s',
          baseline,
          { ratios: baseline.map(() => 1) },
        ),
        ...runSizes.map((size, i) =>
          measurement(
            `keyRunSize ${size}${size === DEFAULT_KEY_RUN_SIZE ? ' (default)' : ''}, all ${messages} rows`,
            'msgs/s',
            rates[i]!,
            { ratios: ratios[i]! },
          ),
        ),
      ];
      sections.push({ title: w.title, rows });
    }
  } finally {
    await queue.close();
    await schema.drop();
    await pool.end();
    await connection.close();
  }
  return {
    benchmark: 'hot-key',
    title: 'Hot key: one ordering key through the relay, runs against one row per key',
    settings: {
      messages,
      baselineRows,
      keys,
      runSizes,
      relay: 'defaults (batchSize 500, concurrency 4), listen off',
      ...versions,
    },
    sections,
    notes: [
      'A key run is published one message at a time, each after the previous confirm: the ceiling row is the most any path that keeps one message of a key in flight can do. Below it, the cost left is the claim, which reads past the key waiting rows.',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(hotKey);

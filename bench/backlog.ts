/**
 * Benchmark 7, backlog: does the cost per message stay flat when the outbox holds 10k, 100k or
 * 1M rows? At each size: the SQL cost of the relay's claim and delete per message (the relay's
 * own queries, publish left out), and the relay's drain rate of a slice of the backlog, with
 * publishing. Then, at the middle size, a steady flow in and out while another session holds a
 * transaction open for 60 s, so that deleted rows cannot be vacuumed (dead tuples, claim time).
 *
 *   node dist/bench/backlog.js [--quick] [--json FILE] [--runs 3] [--sizes 10000,100000,1000000]
 *     [--slice 20000] [--hold-seconds 60] [--flow-rate 2000]
 */
import type pg from 'pg';
import { relayQueries } from '../src/relay/relay-queries.js';
import { timeRelayDrain } from './relay-drain.js';
import {
  type BenchArgs,
  type BenchReport,
  type FreeTable,
  intFlag,
  isMain,
  listFlag,
  type Measurement,
  measurement,
  median,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  amqpConnect,
  BenchQueue,
  benchSchema,
  insertOutboxRows,
  newPool,
  prefillOutbox,
  serverVersions,
  sleep,
} from './support/bench-services.js';
import { RELAY_DEFAULTS } from './support/relay-drain-timer.js';

interface CycleCost {
  /** Per-message microseconds of the claim, the delete and the commit. */
  readonly claimUs: number;
  readonly deleteUs: number;
  readonly commitUs: number;
  readonly claimMsPerBatch: number[];
}

/** Runs the relay's claim + delete cycles (no publish) until `messages` rows are gone. */
async function sqlCycles(
  client: pg.PoolClient,
  schema: string,
  messages: number,
  batch = 500,
): Promise<CycleCost> {
  const q = relayQueries(schema);
  let claim = 0;
  let del = 0;
  let commit = 0;
  let done = 0;
  const claimMsPerBatch: number[] = [];
  while (done < messages) {
    await client.query('BEGIN');
    const t0 = performance.now();
    const { rows } = await client.query<{ id: string }>(q.claimFresh, [batch]);
    const t1 = performance.now();
    await client.query(q.deleteIds, [rows.map((r) => r.id)]);
    const t2 = performance.now();
    await client.query('COMMIT');
    const t3 = performance.now();
    if (rows.length === 0) break;
    claim += t1 - t0;
    del += t2 - t1;
    commit += t3 - t2;
    claimMsPerBatch.push(t1 - t0);
    done += rows.length;
  }
  const per = (ms: number) => (ms * 1000) / Math.max(1, done);
  return { claimUs: per(claim), deleteUs: per(del), commitUs: per(commit), claimMsPerBatch };
}

async function deadTuples(pool: pg.Pool, outbox: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    'SELECT n_dead_tup AS n FROM pg_stat_user_tables WHERE relid = $1::regclass',
    [outbox],
  );
  return Number(rows[0]?.n ?? 0);
}

interface HeldOptions {
  readonly holdSeconds: number;
  /** Rows written and taken per second, so the backlog keeps its size. */
  readonly rate: number;
  readonly sampleSeconds: number;
}

/**
 * A producer writes `rate` rows a second while a worker claims and deletes as many, in batches
 * of 500, through the relay's own queries; another session holds a REPEATABLE READ transaction
 * for `holdSeconds`, then commits, and the flow goes on for a while. Samples every
 * `sampleSeconds`: rows waiting, dead tuples and the claim's time.
 */
async function heldHorizon(
  pool: pg.Pool,
  schemaName: string,
  outbox: string,
  queue: BenchQueue,
  options: HeldOptions,
): Promise<(string | number)[][]> {
  const q = relayQueries(schemaName);
  const holder = await pool.connect();
  const worker = await pool.connect();
  const producer = await pool.connect();
  const samples: (string | number)[][] = [];
  let claimMs: number[] = [];
  let claimedRows = 0;
  let produced = 0;
  let taken = 0;
  let stop = false;
  const tickMs = 50;
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const produce = async () => {
    while (!stop) {
      const due = Math.floor(elapsed() * options.rate) - produced;
      if (due > 0) {
        await insertOutboxRows(producer, outbox, due, queue.exchange, queue.routingKey);
        produced += due;
      }
      await sleep(tickMs);
    }
  };
  // Takes no more than was produced: the backlog keeps its size and the claim its depth.
  const work = async () => {
    while (!stop) {
      if (taken + 500 > produced) {
        await sleep(tickMs / 5);
        continue;
      }
      await worker.query('BEGIN');
      const t0 = performance.now();
      const { rows } = await worker.query<{ id: string }>(q.claimFresh, [500]);
      claimMs.push(performance.now() - t0);
      claimedRows += rows.length;
      await worker.query(q.deleteIds, [rows.map((r) => r.id)]);
      await worker.query('COMMIT');
      taken += rows.length;
    }
  };
  const sample = async (phase: string) => {
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${outbox}`);
    const claimUs = claimedRows > 0 ? (claimMs.reduce((a, b) => a + b, 0) * 1000) / claimedRows : 0;
    samples.push([
      elapsed().toFixed(0),
      phase,
      rows[0]!.n,
      await deadTuples(pool, outbox),
      claimMs.length > 0 ? median(claimMs) : 0,
      claimMs.length > 0 ? Math.max(...claimMs) : 0,
      claimUs,
    ]);
    progress(
      `held horizon, ${phase}, ${elapsed().toFixed(0)} s: ${rows[0]!.n} waiting, claim median ${
        claimMs.length > 0 ? median(claimMs).toFixed(1) : '-'
      } ms`,
    );
    claimMs = [];
    claimedRows = 0;
  };
  const flows = [produce(), work()];
  try {
    await sleep(options.sampleSeconds * 1000);
    await sample('before');
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await holder.query('SELECT txid_current()');
    const heldAt = elapsed();
    while (elapsed() - heldAt < options.holdSeconds) {
      await sleep(options.sampleSeconds * 1000);
      await sample('held');
    }
    await holder.query('COMMIT');
    for (let i = 0; i < 2; i += 1) {
      await sleep(options.sampleSeconds * 1000);
      await sample('after COMMIT');
    }
  } finally {
    stop = true;
    await Promise.allSettled(flows);
    await holder.query('ROLLBACK').catch(() => {});
    for (const c of [holder, worker, producer]) c.release();
  }
  return samples;
}

export async function backlog(args: BenchArgs): Promise<BenchReport> {
  const sizes = listFlag(
    args,
    'sizes',
    args.quick ? ['1000', '5000'] : ['10000', '100000', '1000000'],
  ).map(Number);
  const slice = intFlag(args, 'slice', 500, 20_000);
  const holdSeconds = intFlag(args, 'hold-seconds', 3, 60);
  const flowRate = intFlag(args, 'flow-rate', 1000, 2000);
  const pool = newPool(4);
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_backlog');
  const queue = await BenchQueue.open(connection, 'classic');
  const sections: { title: string; rows: Measurement[] }[] = [];
  const tables: FreeTable[] = [];
  try {
    const claim: number[][] = sizes.map(() => []);
    const del: number[][] = sizes.map(() => []);
    const commit: number[][] = sizes.map(() => []);
    const drain: number[][] = sizes.map(() => []);
    for (const [s, size] of sizes.entries()) {
      await pool.query(`TRUNCATE ${schema.outbox}`);
      progress(`filling the outbox with ${size} rows`);
      await prefillOutbox(pool, schema.outbox, size, queue.exchange, queue.routingKey);
      for (let run = 1; run <= args.runs; run += 1) {
        // Each run takes `slice` rows off the backlog and puts them back, so the size holds.
        await waitForQuiet();
        const client = await pool.connect();
        const cost = await sqlCycles(client, schema.name, Math.min(slice, size));
        client.release();
        claim[s]!.push(cost.claimUs);
        del[s]!.push(cost.deleteUs);
        commit[s]!.push(cost.commitUs);
        await prefillOutbox(
          pool,
          schema.outbox,
          Math.min(slice, size),
          queue.exchange,
          queue.routingKey,
        );
        await queue.reset();
        await waitForQuiet();
        const n = Math.min(slice, size);
        const ms = await timeRelayDrain(schema.name, n, RELAY_DEFAULTS);
        drain[s]!.push((n / ms) * 1000);
        await prefillOutbox(pool, schema.outbox, n, queue.exchange, queue.routingKey);
        progress(
          `${size} rows, run ${run}: claim ${cost.claimUs.toFixed(1)} µs/msg, delete ${cost.deleteUs.toFixed(1)} µs/msg, commit ${cost.commitUs.toFixed(1)} µs/msg, relay ${Math.round(drain[s]!.at(-1)!)} msgs/s`,
        );
      }
    }
    sections.push({
      title: `Per message, taking ${slice} rows off a backlog of each size (batch 500)`,
      rows: sizes.flatMap((size, s) => [
        measurement(`${size} rows: claim (SQL)`, 'µs/msg', claim[s]!),
        measurement(`${size} rows: delete (SQL)`, 'µs/msg', del[s]!),
        measurement(`${size} rows: commit`, 'µs/msg', commit[s]!),
        measurement(`${size} rows: relay drain of ${slice}, with publishing`, 'msgs/s', drain[s]!),
      ]),
    });

    // A steady flow through a backlog while a REPEATABLE READ transaction elsewhere pins the
    // xmin horizon for `hold` seconds, so nothing deleted meanwhile can be vacuumed.
    const heldSize = sizes[Math.min(1, sizes.length - 1)]!;
    await pool.query(`TRUNCATE ${schema.outbox}`);
    await prefillOutbox(pool, schema.outbox, heldSize, queue.exchange, queue.routingKey);
    const rows = await heldHorizon(pool, schema.name, schema.outbox, queue, {
      holdSeconds,
      rate: flowRate,
      sampleSeconds: Math.max(1, Math.round(holdSeconds / 6)),
    });
    tables.push({
      title: `Backlog of ${heldSize} rows, ${flowRate} rows/s in and out (claim + delete in batches of 500), another session holding a REPEATABLE READ transaction for ${holdSeconds} s`,
      header: [
        't (s)',
        'phase',
        'rows waiting',
        'n_dead_tup',
        'claim median ms/batch',
        'claim max ms',
        'claim µs/msg',
      ],
      rows,
    });
  } finally {
    await queue.close();
    await schema.drop();
    await connection.close().catch(() => {});
    await pool.end();
  }
  return {
    benchmark: 'backlog',
    title: 'Backlog: cost per message against outbox size',
    settings: { sizes, slice, ...versions },
    sections,
    tables,
    notes: [
      "SQL costs are client-side round trips of the relay's own statements, payloads included",
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(backlog);

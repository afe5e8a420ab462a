/**
 * The claim strategy, at the SQL level: the relay's way (one transaction per batch: claim with
 * `FOR UPDATE SKIP LOCKED`, publish while the rows stay locked, DELETE, COMMIT) against a lease
 * (UPDATE ... SET lease_until, lease_owner ... RETURNING, commit; publish; then a DELETE fenced
 * by the owner, commit). The publish is simulated by a delay, so only the database's share shows.
 *
 * Part 1: drain throughput of a pre-filled table, several workers.
 * Part 2: a steady stream while another session holds a transaction open: dead tuples, table
 * size and claim time over time.
 *
 *   node dist/bench/claim-strategy.js [--quick] [--json FILE] [--runs 3] [--messages 50000]
 *     [--workers 4] [--batch 500] [--publish-ms 0,5] [--rate 2000] [--hold-seconds 45]
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { relayQueries } from '../src/relay/relay-queries.js';
import {
  type BenchArgs,
  type BenchReport,
  type FreeTable,
  intFlag,
  isMain,
  listFlag,
  type Measurement,
  measurement,
  percentile,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import { benchSchema, newPool, prefillOutbox, sleep } from './support/bench-services.js';

// The relay's claim columns.
const LEASE_COLUMNS = `o.id, o.message_id, o.exchange, o.routing_key, o.payload,
  o.content_type, o.headers, o.ordering_key, o.correlation_id, o.causation_id, o.created_at, o.attempts`;

/** One way to take a batch of rows, publish it (simulated) and settle it. */
interface Strategy {
  readonly name: string;
  readonly table: string;
  /** Claims, waits `publishMs`, settles; returns rows done and the claim's duration. */
  cycle(
    client: pg.PoolClient,
    batch: number,
    publishMs: number,
  ): Promise<{ rows: number; claimMs: number }>;
}

async function publish(ms: number): Promise<void> {
  if (ms > 0) await sleep(ms);
}

function lockStrategy(schema: string, table: string): Strategy {
  const q = relayQueries(schema);
  return {
    name: 'lock: SKIP LOCKED, held across the publish, one transaction',
    table,
    async cycle(client, batch, publishMs) {
      await client.query('BEGIN');
      try {
        const t = performance.now();
        const { rows } = await client.query<{ id: string }>(q.claimFresh, [batch]);
        const claimMs = performance.now() - t;
        if (rows.length > 0) {
          await publish(publishMs);
          await client.query(q.deleteIds, [rows.map((r) => r.id)]);
        }
        await client.query('COMMIT');
        return { rows: rows.length, claimMs };
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    },
  };
}

function leaseClaimSql(table: string, leaseSeconds = 30): string {
  return `UPDATE ${table} o
      SET lease_until = now() + ${leaseSeconds} * interval '1 second', lease_owner = $2
      FROM (SELECT id FROM ${table}
            WHERE available_at <= now() AND attempts = 0
              AND (lease_until IS NULL OR lease_until < now())
            ORDER BY available_at, id
            LIMIT $1
            FOR UPDATE SKIP LOCKED) c
      WHERE o.id = c.id
      RETURNING ${LEASE_COLUMNS}`;
}

function leaseDeleteSql(table: string): string {
  return `DELETE FROM ${table} WHERE id = ANY($1::bigint[]) AND lease_owner = $2`;
}

function leaseStrategy(table: string): Strategy {
  const claim = leaseClaimSql(table);
  const fencedDelete = leaseDeleteSql(table);
  return {
    name: 'lease: UPDATE lease, commit, publish, fenced DELETE',
    table,
    async cycle(client, batch, publishMs) {
      const owner = randomUUID();
      const t = performance.now();
      const { rows } = await client.query<{ id: string }>(claim, [batch, owner]);
      const claimMs = performance.now() - t;
      if (rows.length > 0) {
        await publish(publishMs);
        const { rowCount } = await client.query(fencedDelete, [rows.map((r) => r.id), owner]);
        if (rowCount !== rows.length)
          throw new Error(`fenced delete took ${rowCount}/${rows.length}`);
      }
      return { rows: rows.length, claimMs };
    },
  };
}

/** A copy of the outbox with the two lease columns, and the outbox's autovacuum settings. */
async function createLeaseTable(pool: pg.Pool, outbox: string, schema: string): Promise<string> {
  const table = `"${schema}".lease_outbox`;
  await pool.query(`CREATE TABLE ${table} (LIKE ${outbox} INCLUDING ALL)`);
  await pool.query(
    `ALTER TABLE ${table} ADD COLUMN lease_until timestamptz, ADD COLUMN lease_owner text`,
  );
  const { rows } = await pool.query<{ reloptions: string[] }>(
    'SELECT reloptions FROM pg_class WHERE oid = $1::regclass',
    [outbox],
  );
  await pool.query(`ALTER TABLE ${table} SET (${rows[0]!.reloptions.join(', ')})`);
  return table;
}

interface Wal {
  readonly records: number;
  readonly bytes: number;
}

/** WAL written by one statement, from EXPLAIN (ANALYZE, WAL): it runs the statement. */
async function walOf(client: pg.PoolClient, sql: string, params: unknown[]): Promise<Wal> {
  const { rows } = await client.query(`EXPLAIN (ANALYZE, WAL, FORMAT JSON) ${sql}`, params);
  const plan = (rows[0] as { 'QUERY PLAN': { Plan: Record<string, number> }[] })['QUERY PLAN'][0]!
    .Plan;
  return { records: plan['WAL Records'] ?? 0, bytes: plan['WAL Bytes'] ?? 0 };
}

/** WAL per message of claim and settle, for one batch of each strategy. */
async function walPerMessage(
  pool: pg.Pool,
  schema: string,
  _outbox: string,
  leaseTable: string,
  batch: number,
): Promise<{ name: string; claim: Wal; settle: Wal }[]> {
  const q = relayQueries(schema);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const lockClaim = await walOf(client, q.claimFresh, [batch]);
    // Our own locks are taken again without writing anything; this only fetches the ids.
    const { rows } = await client.query<{ id: string }>(q.claimFresh, [batch]);
    const lockSettle = await walOf(client, q.deleteIds, [rows.map((r) => r.id)]);
    await client.query('COMMIT');
    const owner = randomUUID();
    const leaseClaim = await walOf(client, leaseClaimSql(leaseTable), [batch, owner]);
    const { rows: leased } = await client.query<{ id: string }>(
      `SELECT id FROM ${leaseTable} WHERE lease_owner = $1`,
      [owner],
    );
    const leaseSettle = await walOf(client, leaseDeleteSql(leaseTable), [
      leased.map((r) => r.id),
      owner,
    ]);
    const per = (w: Wal, n: number): Wal => ({ records: w.records / n, bytes: w.bytes / n });
    return [
      { name: 'lock', claim: per(lockClaim, rows.length), settle: per(lockSettle, rows.length) },
      {
        name: 'lease',
        claim: per(leaseClaim, leased.length),
        settle: per(leaseSettle, leased.length),
      },
    ];
  } finally {
    client.release();
  }
}

async function drain(
  pool: pg.Pool,
  strategy: Strategy,
  workers: number,
  batch: number,
  publishMs: number,
): Promise<number> {
  const clients = await Promise.all(Array.from({ length: workers }, () => pool.connect()));
  const start = performance.now();
  let done = 0;
  await Promise.all(
    clients.map(async (client) => {
      for (;;) {
        const { rows } = await strategy.cycle(client, batch, publishMs);
        if (rows === 0) return;
        done += rows;
      }
    }),
  );
  const ms = performance.now() - start;
  for (const c of clients) c.release();
  return (done / ms) * 1000;
}

interface Sample {
  readonly t: number;
  readonly phase: string;
  readonly deadTuples: number;
  readonly sizeMiB: number;
  readonly claimP50: number;
  readonly claimMax: number;
  readonly backlog: number;
  readonly throughput: number;
}

/**
 * A producer inserts `rate` rows a second, `workers` claim and settle them; after `warmS`
 * seconds another session opens a REPEATABLE READ transaction and holds it `holdS` seconds.
 */
async function steadyStream(
  pool: pg.Pool,
  strategy: Strategy,
  opts: {
    rate: number;
    workers: number;
    batch: number;
    publishMs: number;
    warmS: number;
    holdS: number;
    afterS: number;
    sampleS: number;
  },
): Promise<Sample[]> {
  await pool.query(`VACUUM ${strategy.table}`);
  const stop = new AbortController();
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((opts.rate * tickMs) / 1000));
  const start = performance.now();
  const producer = (async () => {
    let tick = 0;
    while (!stop.signal.aborted) {
      await pool.query(
        `INSERT INTO ${strategy.table} (message_id, exchange, routing_key, payload, content_type)
         SELECT gen_random_uuid()::text, 'x', 'k', convert_to(repeat('x', 1024), 'UTF8'), 'application/json'
         FROM generate_series(1, $1)`,
        [perTick],
      );
      tick += 1;
      const due = start + tick * tickMs;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
    }
  })();
  let claims: number[] = [];
  let done = 0;
  const consumers = Array.from({ length: opts.workers }, async () => {
    const client = await pool.connect();
    try {
      while (!stop.signal.aborted) {
        const { rows, claimMs } = await strategy.cycle(client, opts.batch, opts.publishMs);
        claims.push(claimMs);
        done += rows;
        if (rows < opts.batch) await sleep(tickMs);
      }
    } finally {
      client.release();
    }
  });
  const holder = await pool.connect();
  const samples: Sample[] = [];
  const total = opts.warmS + opts.holdS + opts.afterS;
  let held = false;
  let lastDone = 0;
  try {
    for (let t = opts.sampleS; t <= total; t += opts.sampleS) {
      if (!held && t > opts.warmS) {
        await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        await holder.query('SELECT txid_current()');
        held = true;
      }
      if (held && t > opts.warmS + opts.holdS) {
        await holder.query('COMMIT');
        held = false;
      }
      const due = start + t * 1000;
      await sleep(Math.max(0, due - performance.now()));
      const { rows } = await pool.query<{ dead: string; size: string; backlog: string }>(
        `SELECT n_dead_tup AS dead, pg_total_relation_size($1::regclass) AS size,
                (SELECT count(*) FROM ${strategy.table}) AS backlog
         FROM pg_stat_user_tables WHERE relid = $1::regclass`,
        [strategy.table],
      );
      const window = claims;
      claims = [];
      const phase = t <= opts.warmS ? 'before' : t <= opts.warmS + opts.holdS ? 'held' : 'after';
      samples.push({
        t,
        phase,
        deadTuples: Number(rows[0]!.dead),
        sizeMiB: Number(rows[0]!.size) / 2 ** 20,
        claimP50: percentile(window, 50),
        claimMax: Math.max(...window),
        backlog: Number(rows[0]!.backlog),
        throughput: (done - lastDone) / opts.sampleS,
      });
      lastDone = done;
      const s = samples.at(-1)!;
      progress(
        `${strategy.name.split(':')[0]} t=${t}s ${phase}: dead ${s.deadTuples}, ${s.sizeMiB.toFixed(1)} MiB, claim p50 ${s.claimP50.toFixed(1)} ms max ${s.claimMax.toFixed(1)} ms, backlog ${s.backlog}`,
      );
    }
  } finally {
    if (held) await holder.query('COMMIT').catch(() => {});
    holder.release();
    stop.abort();
    await producer;
    await Promise.all(consumers);
  }
  return samples;
}

export async function claimStrategy(args: BenchArgs): Promise<BenchReport> {
  const messages = intFlag(args, 'messages', 1000, 50_000);
  const workers = intFlag(args, 'workers', 2, 4);
  const batch = intFlag(args, 'batch', 500, 500);
  const publishMs = listFlag(args, 'publish-ms', ['0', '5']).map(Number);
  const rate = intFlag(args, 'rate', 500, 2000);
  const holdS = intFlag(args, 'hold-seconds', 2, 45);
  const warmS = args.quick ? 1 : 10;
  const afterS = args.quick ? 1 : 15;
  const sampleS = args.quick ? 1 : 5;
  const pool = newPool(workers + 4);
  const schema = await benchSchema(pool, 'bench_claim');
  const leaseTable = await createLeaseTable(pool, schema.outbox, schema.name);
  const strategies = [lockStrategy(schema.name, schema.outbox), leaseStrategy(leaseTable)];
  const sections: { title: string; rows: Measurement[] }[] = [];
  const tables: FreeTable[] = [];
  try {
    for (const ms of publishMs) {
      const rates = strategies.map(() => [] as number[]);
      const ratios: number[] = [];
      for (let run = 1; run <= args.runs; run += 1) {
        const runRates: number[] = [];
        for (const [i, strategy] of strategies.entries()) {
          await pool.query(`TRUNCATE ${strategy.table}`);
          await prefillOutbox(pool, strategy.table, messages, 'x', 'k');
          await waitForQuiet();
          const r = await drain(pool, strategy, workers, batch, ms);
          rates[i]!.push(r);
          runRates.push(r);
        }
        ratios.push(runRates[1]! / runRates[0]!);
        progress(
          `drain, publish ${ms} ms, run ${run}: lock ${Math.round(runRates[0]!)}/s, lease ${Math.round(runRates[1]!)}/s`,
        );
      }
      sections.push({
        title: `Drain of ${messages} rows, ${workers} workers, batch ${batch}, publish simulated as ${ms} ms`,
        rows: [
          measurement(strategies[0]!.name, 'rows/s', rates[0]!, { ratios: rates[0]!.map(() => 1) }),
          measurement(strategies[1]!.name, 'rows/s', rates[1]!, { ratios }),
        ],
      });
    }
    for (const strategy of strategies) {
      await pool.query(`TRUNCATE ${strategy.table}`);
      await prefillOutbox(pool, strategy.table, batch, 'x', 'k');
    }
    const wal = await walPerMessage(pool, schema.name, schema.outbox, leaseTable, batch);
    tables.push({
      title: `WAL written per message, batch of ${batch} (EXPLAIN (ANALYZE, WAL) of each statement)`,
      header: [
        'strategy',
        'claim records',
        'claim bytes',
        'settle records',
        'settle bytes',
        'total bytes',
      ],
      rows: wal.map((w) => [
        w.name,
        w.claim.records,
        w.claim.bytes,
        w.settle.records,
        w.settle.bytes,
        w.claim.bytes + w.settle.bytes,
      ]),
    });
    for (const strategy of strategies) {
      await pool.query(`TRUNCATE ${strategy.table}`);
      progress(`steady stream, ${strategy.name}: ${rate}/s, transaction held ${holdS} s`);
      const samples = await steadyStream(pool, strategy, {
        rate,
        workers: 2,
        batch,
        publishMs: 2,
        warmS,
        holdS,
        afterS,
        sampleS,
      });
      tables.push({
        title: `Steady ${rate} rows/s, 2 workers, publish 2 ms, another transaction open from ${warmS} s to ${warmS + holdS} s: ${strategy.name}`,
        header: [
          't (s)',
          'phase',
          'rows/s settled',
          'backlog',
          'n_dead_tup',
          'table+indexes MiB',
          'claim p50 ms',
          'claim max ms',
        ],
        rows: samples.map((s) => [
          s.t,
          s.phase,
          s.throughput,
          s.backlog,
          s.deadTuples,
          s.sizeMiB,
          s.claimP50,
          s.claimMax,
        ]),
      });
    }
  } finally {
    await schema.drop();
    await pool.end();
  }
  return {
    benchmark: 'claim-strategy',
    title: 'Claim strategy: row lock held across the publish vs lease and fenced delete',
    settings: { messages, workers, batch, publishMs, rate, holdSeconds: holdS },
    sections,
    tables,
    notes: [
      'ratio: lease rate / lock rate measured in the same run',
      'claim time is the client-side round trip of the claim statement, payloads included',
      'n_dead_tup comes from the statistics system, which lags by up to a second',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(claimStrategy);

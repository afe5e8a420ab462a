/**
 * What the consumer's claim costs Postgres against the hand-written loop's dedupe INSERT, with
 * Postgres alone (no RabbitMQ, no Kysely): per transaction on its own connection, BEGIN; the
 * dedupe row; the business row; COMMIT, 16 in flight on a pool of 16. Four forms of the dedupe
 * row: the loop's plain INSERT; the claim as shipped (its time limits set in the statement);
 * the same claim as a named prepared statement (parsed once per connection); the claim without
 * its time limits. Rounds alternate the order. Not part of `run-all`.
 *
 *   node dist/bench/claim-statement.js [--transactions 8000] [--rounds 4]
 */
import type pg from 'pg';
import { processedQueries } from '../src/consumer/processed-queries.js';
import { intFlag, median, parseBenchArgs } from './support/bench-cli.js';
import { benchSchema, newPool } from './support/bench-services.js';
import { cpuPerMessage, cpuSnapshot } from './support/process-cpu.js';

const args = parseBenchArgs();
const transactions = intFlag(args, 'transactions', 2000, 8000);
const rounds = intFlag(args, 'rounds', 2, 4);
const IN_FLIGHT = 16;
const LIMIT_MS = 60_000;

const pool = newPool(IN_FLIGHT);
const schema = await benchSchema(pool, 'bench_claim');
const processed = `"${schema.name}".processed_messages`;
const effects = `"${schema.name}".effects`;
await pool.query(
  `CREATE TABLE ${effects} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL, amount integer NOT NULL)`,
);

const shipped = processedQueries(schema.name).claimOne;
const plain = `INSERT INTO ${processed} (consumer, business_key, message_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`;
const noLimits = `${plain} RETURNING pg_backend_pid() AS pid`;
const insertEffect = `INSERT INTO ${effects} (key, amount) VALUES ($1, $2)`;

type Claim = (client: pg.PoolClient, key: string) => Promise<pg.QueryResult>;
const variants: Record<string, { begin: string; claim: Claim }> = {
  'hand-written loop: plain INSERT': {
    begin: 'BEGIN',
    claim: (c, key) => c.query(plain, ['bench', key, key]),
  },
  'claim as shipped (time limits in the statement)': {
    begin: 'start transaction isolation level read committed',
    claim: (c, key) => c.query(shipped, ['bench', key, key, LIMIT_MS]),
  },
  'claim as shipped, as a named prepared statement': {
    begin: 'start transaction isolation level read committed',
    claim: (c, key) =>
      c.query({
        name: 'outboxkit_bench_claim',
        text: shipped,
        values: ['bench', key, key, LIMIT_MS],
      }),
  },
  'claim without time limits': {
    begin: 'start transaction isolation level read committed',
    claim: (c, key) => c.query(noLimits, ['bench', key, key]),
  },
};

let sequence = 0;
async function run(name: string): Promise<{ rate: number; postgres: number; node: number }> {
  const { begin, claim } = variants[name]!;
  let started = 0;
  const before = cpuSnapshot();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (started < transactions) {
        started += 1;
        sequence += 1;
        const key = `k-${sequence}`;
        const client = await pool.connect();
        try {
          await client.query(begin);
          const claimed = await claim(client, key);
          if (claimed.rowCount === 1) await client.query(insertEffect, [key, sequence % 100]);
          await client.query('COMMIT');
        } finally {
          client.release();
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuPerMessage(before, cpuSnapshot(), transactions);
  return { rate: transactions / seconds, postgres: cpu.postgres, node: cpu.node };
}

try {
  const names = Object.keys(variants);
  for (const name of names) await run(name); // warm every connection and plan cache once
  const results = new Map(names.map((n) => [n, [] as Awaited<ReturnType<typeof run>>[]]));
  for (let r = 0; r < rounds; r += 1) {
    for (const name of r % 2 === 0 ? names : [...names].reverse()) {
      results.get(name)!.push(await run(name));
    }
  }
  const loop = median(results.get(names[0]!)!.map((x) => x.rate));
  console.log(
    `| dedupe row (${transactions} transactions, ${IN_FLIGHT} in flight, median of ${rounds}) | tx/s | / loop | Postgres µs/tx | Node µs/tx |`,
  );
  console.log('|---|--:|--:|--:|--:|');
  for (const name of names) {
    const rs = results.get(name)!;
    const rate = median(rs.map((x) => x.rate));
    console.log(
      `| ${name} | ${rate.toFixed(0)} | ${(rate / loop).toFixed(2)} | ${median(rs.map((x) => x.postgres)).toFixed(0)} | ${median(rs.map((x) => x.node)).toFixed(0)} |`,
    );
  }
} finally {
  await schema.drop();
  await pool.end();
}

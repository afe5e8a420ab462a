/**
 * The claim's head-of-key check on a deep backlog of one key, at the SQL level: the relay's claim
 * (`claimFresh`, limit 500) against the same claim with the check it had before (`NOT EXISTS` an
 * older row of the key), in the same run on the same table. The outbox holds N 1 KiB rows of one
 * key and some rows without one, with statistics taken while it was empty (no autovacuum), and
 * the key's oldest rows deleted as the relay deletes what it sent. Timed twice: while a
 * transaction older than the delete is open, so the deleted rows' index entries cannot be marked
 * dead yet, and after it ended and a claim of each kind has marked them.
 *
 *   node dist/bench/claim-head-check.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--deleted 5000] [--keyless 200] [--explain]
 */
import type pg from 'pg';
import { relayQueries } from '../src/relay/relay-queries.js';
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
import { benchSchema, insertOutboxRows, newPool } from './support/bench-services.js';

const LIMIT = 500;

/** The relay's claim with the head-of-key check it had before: the baseline. */
function claimBefore(schema: string, outbox: string): string {
  const current = relayQueries(schema).claimFresh;
  const from = current.indexOf('(o.ordering_key IS NULL OR');
  const to = current.indexOf('ORDER BY o.available_at');
  if (from < 0 || to < from) throw new Error('the claim has changed: update the baseline');
  const check = `(o.ordering_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM ${outbox} p WHERE p.ordering_key = o.ordering_key AND p.id < o.id))`;
  return `${current.slice(0, from)}${check}\n    ${current.slice(to)}`;
}

/** Runs one claim in a transaction it rolls back (the claim locks its rows); returns ms. */
async function timeClaim(client: pg.PoolClient, sql: string, expected: number): Promise<number> {
  await client.query('BEGIN');
  try {
    const start = performance.now();
    const { rows } = await client.query(sql, [LIMIT]);
    const ms = performance.now() - start;
    if (rows.length !== expected) throw new Error(`claimed ${rows.length}, expected ${expected}`);
    return ms;
  } finally {
    await client.query('ROLLBACK');
  }
}

async function explain(client: pg.PoolClient, title: string, sql: string): Promise<void> {
  await client.query('BEGIN');
  try {
    const { rows } = await client.query(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, [LIMIT]);
    process.stderr.write(`\n${title}\n${rows.map((r) => r['QUERY PLAN']).join('\n')}\n\n`);
  } finally {
    await client.query('ROLLBACK');
  }
}

export async function claimHeadCheck(args: BenchArgs): Promise<BenchReport> {
  const messages = intFlag(args, 'messages', 5000, 20_000);
  const deleted = Math.min(messages - 1, intFlag(args, 'deleted', 1000, 5000));
  const keyless = intFlag(args, 'keyless', 100, 200);
  const pool = newPool(3);
  const schema = await benchSchema(pool, 'bench_head');
  const client = await pool.connect();
  const holder = await pool.connect();
  const sections: BenchReport['sections'][number][] = [];
  try {
    const outbox = schema.outbox;
    const claims = {
      before: claimBefore(schema.name, outbox),
      after: relayQueries(schema.name).claimFresh,
    };
    await pool.query(`ALTER TABLE ${outbox} SET (autovacuum_enabled = false)`);
    await pool.query(`ANALYZE ${outbox}`);
    await insertOutboxRows(pool, outbox, messages, 'x', 'r');
    await pool.query(`UPDATE ${outbox} SET ordering_key = 'hot'`);
    await insertOutboxRows(pool, outbox, keyless, 'x', 'r');
    // Clears the UPDATE's old row versions; the column statistics stay those of the empty table.
    await pool.query(`VACUUM ${outbox}`);
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await holder.query(`SELECT count(*) FROM ${outbox}`);
    await pool.query(
      `DELETE FROM ${outbox} WHERE id IN (
         SELECT id FROM ${outbox} WHERE ordering_key = 'hot' ORDER BY id LIMIT $1)`,
      [deleted],
    );
    const expected = Math.min(LIMIT, 1 + keyless);

    /** Times both claims `args.runs` times each, alternating which goes first. */
    const measure = async (title: string) => {
      await waitForQuiet();
      const before: number[] = [];
      const after: number[] = [];
      for (let run = 1; run <= args.runs; run += 1) {
        const order =
          run % 2 === 1 ? (['before', 'after'] as const) : (['after', 'before'] as const);
        for (const which of order) {
          const ms = await timeClaim(client, claims[which], expected);
          (which === 'before' ? before : after).push(ms);
        }
        progress(
          `${title}: run ${run}: before ${before.at(-1)!.toFixed(1)} ms, after ${after.at(-1)!.toFixed(1)} ms`,
        );
      }
      const rows: Measurement[] = [
        measurement('NOT EXISTS an older row of the key (before; baseline)', 'ms', before),
        measurement('the row before it in (ordering_key, id), read backward (after)', 'ms', after, {
          ratios: before.map((b, i) => b / after[i]!),
        }),
      ];
      sections.push({ title, rows });
    };

    if (args.extra.has('explain')) {
      await explain(client, 'before, dead entries not yet removable:', claims.before);
      await explain(client, 'after, dead entries not yet removable:', claims.after);
    }
    await measure(
      `claim ${LIMIT} of ${messages - deleted} rows of one key (${deleted} deleted, not yet removable) and ${keyless} without`,
    );
    await holder.query('COMMIT');
    // The first claim of each kind marks the deleted rows' index entries dead.
    await timeClaim(client, claims.before, expected);
    await timeClaim(client, claims.after, expected);
    if (args.extra.has('explain')) {
      await explain(client, 'before, dead entries marked:', claims.before);
      await explain(client, 'after, dead entries marked:', claims.after);
    }
    await measure(
      `claim ${LIMIT} of ${messages - deleted} rows of one key (${deleted} deleted, entries marked dead) and ${keyless} without`,
    );
  } finally {
    await holder.query('ROLLBACK').catch(() => {});
    holder.release();
    client.release();
    await schema.drop();
    await pool.end();
  }
  return {
    benchmark: 'claim-head-check',
    title: 'Claim: the head-of-key check on a deep backlog of one key',
    settings: { messages, deleted, keyless, limit: LIMIT },
    sections,
    notes: [
      'Ratio: the time of the claim before over the time after, per run (higher is better). Every waiting row of the key is read by the claim either way; only the check per row differs.',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(claimHeadCheck);

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { relayQueries } from '../src/relay/relay-queries.js';
import { outboxTables } from '../src/sql/outbox-tables.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

const HOT_ROWS = 2000;
const DELETED = 500;
const KEYS = 30;
const ROWS_PER_KEY = 10;
const KEYLESS = 100;

/** One node of `EXPLAIN (FORMAT JSON)`, with the fields this test reads. */
interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Parent Relationship'?: string;
  readonly 'Index Name'?: string;
  readonly 'Scan Direction'?: string;
  readonly 'Actual Loops'?: number;
  readonly 'Heap Fetches'?: number;
  readonly Plans?: readonly PlanNode[];
}

/** The plan nodes under the first SubPlan: the head-of-key check, run once per candidate row. */
function headCheck(node: PlanNode): PlanNode[] {
  if (node['Parent Relationship'] === 'SubPlan') return flatten(node);
  for (const child of node.Plans ?? []) {
    const found = headCheck(child);
    if (found.length > 0) return found;
  }
  return [];
}

const flatten = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(flatten)];

/** Runs `sql` with the claim's limit in a transaction it rolls back: the claim locks its rows. */
async function inRolledBack<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  sql: string,
  limit: number,
): Promise<R[]> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    return (await client.query<R>(sql, [limit])).rows;
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

// The hot-key benchmark's conditions: a deep backlog of one key whose oldest rows the relay has
// deleted, statistics taken on an empty table (no autovacuum), and a transaction elsewhere old
// enough that the deleted rows' index entries cannot yet be marked dead.
describe('claim: the head-of-key check on a deep backlog of one key', () => {
  let t: TestDatabase;
  let outbox: string;
  let holder: pg.PoolClient;

  before(async () => {
    t = await testDatabase('claimplan');
    outbox = outboxTables(t.schema).outbox;
    await t.pool.query(`ALTER TABLE ${outbox} SET (autovacuum_enabled = false)`);
    await t.pool.query(`ANALYZE ${outbox}`);
    const insert = (count: number, key: string) =>
      t.pool.query(
        `INSERT INTO ${outbox} (message_id, exchange, routing_key, payload, content_type, ordering_key)
         SELECT 'm' || i, 'x', 'r', '\\x00', 'application/octet-stream', ${key}
         FROM generate_series(1, $1::int) AS i`,
        [count],
      );
    await insert(HOT_ROWS, `'hot'`);
    await insert(KEYS * ROWS_PER_KEY, `'k' || (i % ${KEYS})`);
    await insert(KEYLESS, 'NULL');
    holder = await t.pool.connect();
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await holder.query(`SELECT count(*) FROM ${outbox}`);
    await t.pool.query(
      `DELETE FROM ${outbox} WHERE id IN (
         SELECT id FROM ${outbox} WHERE ordering_key = 'hot' ORDER BY id LIMIT $1)`,
      [DELETED],
    );
  });

  after(async () => {
    await holder?.query('ROLLBACK');
    holder?.release();
    await t?.close();
  });

  it('claims each key’s oldest row and every row without a key, nothing else', async () => {
    const claimed = await inRolledBack<{ id: string }>(
      t.pool,
      relayQueries(t.schema).claimFresh,
      500,
    );
    const { rows: heads } = await t.pool.query<{ id: string }>(
      `SELECT min(id) AS id FROM ${outbox} WHERE ordering_key IS NOT NULL GROUP BY ordering_key
       UNION ALL SELECT id FROM ${outbox} WHERE ordering_key IS NULL`,
    );
    assert.equal(claimed.length, 1 + KEYS + KEYLESS);
    assert.deepEqual(claimed.map((r) => r.id).sort(), heads.map((r) => r.id).sort());
  });

  it('reads the ordering-key index backward from each row, one entry per waiting row', async () => {
    const [explained] = await inRolledBack<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      t.pool,
      `EXPLAIN (ANALYZE, FORMAT JSON) ${relayQueries(t.schema).claimFresh}`,
      500,
    );
    assert.ok(explained);
    const check = headCheck(explained['QUERY PLAN'][0].Plan);
    const scan = check.find((n) => n['Index Name'] !== undefined);
    assert.ok(scan, `no index scan in the head check: ${JSON.stringify(check)}`);
    assert.equal(scan['Index Name'], 'outbox_ordering_key_idx');
    assert.equal(scan['Scan Direction'], 'Backward');
    // Every keyed row is a candidate. Reading forward from the key's oldest entry, each of the
    // key's waiting rows would pass all 500 deleted entries first; backward, only its head does.
    const loops = scan['Actual Loops'] ?? 0;
    const fetches = scan['Heap Fetches'] ?? 0;
    assert.equal(loops, HOT_ROWS - DELETED + KEYS * ROWS_PER_KEY);
    assert.ok(fetches < loops + DELETED * 2, `${fetches} entries read in ${loops} checks`);
  });
});

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { RetentionCleaner } from '../src/consumer/retention-cleaner.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

const DAY = 24 * 3600 * 1000;

describe('processed-keys retention', () => {
  let f: ConsumerFixture;
  let table: string;
  before(async () => {
    f = await ConsumerFixture.open('cret');
    table = `"${f.t.schema}".processed_messages`;
  });
  afterEach(async () => {
    await f.stopHosts();
    await f.t.pool.query(`TRUNCATE ${table}`);
  });
  after(() => f.close());

  /** Inserts `count` keys of `consumer` processed `ageDays` ago. */
  const seed = async (consumer: string, prefix: string, count: number, ageDays: number) => {
    await f.t.pool.query(
      `INSERT INTO ${table} (consumer, business_key, message_id, processed_at)
       SELECT $1, $2 || i, $2 || i, now() - $3 * interval '1 day' FROM generate_series(1, $4) AS i`,
      [consumer, prefix, ageDays, count],
    );
  };
  const keys = async () => {
    const { rows } = await f.t.pool.query(
      `SELECT consumer || ':' || business_key AS k FROM ${table} ORDER BY 1`,
    );
    return rows.map((r) => r.k as string).sort();
  };

  it('deletes only keys older than the retention, only of its consumers, in small batches', async () => {
    await seed('a', 'old', 5, 8);
    await seed('a', 'new', 3, 1);
    await seed('b', 'old', 4, 8);
    const cleaner = new RetentionCleaner({
      db: f.t.db,
      schema: f.t.schema,
      retentionMs: 7 * DAY,
      batchSize: 2,
      consumers: ['a'],
    });
    assert.equal(await cleaner.runOnce(), 5);
    assert.deepEqual(await keys(), [
      'a:new1',
      'a:new2',
      'a:new3',
      'b:old1',
      'b:old2',
      'b:old3',
      'b:old4',
    ]);
    assert.equal(await cleaner.runOnce(), 0);

    const everyone = new RetentionCleaner({
      db: f.t.db,
      schema: f.t.schema,
      retentionMs: 7 * DAY,
      batchSize: 3,
    });
    assert.equal(await everyone.runOnce(), 4);
    assert.deepEqual(await keys(), ['a:new1', 'a:new2', 'a:new3']);
  });

  it('skips keys a transaction holds instead of waiting for it', async () => {
    await seed('a', 'old', 6, 30);
    const holder = await f.t.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM ${table} WHERE business_key = 'old3' FOR UPDATE`);
      const cleaner = new RetentionCleaner({
        db: f.t.db,
        schema: f.t.schema,
        retentionMs: DAY,
        batchSize: 2,
      });
      // Resolves while the lock is still held: it did not wait.
      assert.equal(await cleaner.runOnce(), 5);
      assert.deepEqual(await keys(), ['a:old3']);
      await holder.query('COMMIT');
      assert.equal(await cleaner.runOnce(), 1);
      assert.deepEqual(await keys(), []);
    } finally {
      holder.release();
    }
  });

  it('runs in the background of a consumer host, for that host’s consumers', async () => {
    const def = f.definition('kept', f.recordEffect);
    await seed(def.name, 'old', 3, 10);
    await seed(def.name, 'fresh', 2, 0);
    await seed('someone-else', 'old', 2, 10);
    await f.host([def], { retention: { retentionMs: DAY, intervalMs: 60_000 } });
    await waitFor('old keys of the host’s consumer gone', async () => (await keys()).length === 4);
    assert.deepEqual(
      await keys(),
      [`${def.name}:fresh1`, `${def.name}:fresh2`, 'someone-else:old1', 'someone-else:old2'].sort(),
    );
  });
});

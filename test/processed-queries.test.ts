import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { processedQueries } from '../src/consumer/processed-queries.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/** SQLSTATE lock_not_available. */
const LOCK_NOT_AVAILABLE = '55P03';

interface Limits {
  readonly lock: string;
  readonly statement: string;
  readonly idle: string;
}

describe('processed queries: the claim and its time limits', () => {
  let t: TestDatabase;
  let queries: ReturnType<typeof processedQueries>;
  before(async () => {
    t = await testDatabase('pq');
    queries = processedQueries(t.schema);
  });
  after(async () => {
    await t.close();
  });

  const limits = async (client: pg.PoolClient): Promise<Limits> => {
    const { rows } = await client.query<Limits>(
      `SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS statement,
         current_setting('idle_in_transaction_session_timeout') AS idle`,
    );
    return rows[0]!;
  };

  /** Claims `key` in a transaction on a session with `session` limits, and reports them. */
  async function claimOn(
    session: Limits | undefined,
    claim: (client: pg.PoolClient) => Promise<pg.QueryResult>,
  ): Promise<{ inside: Limits; afterwards: Limits; rows: pg.QueryResultRow[]; pid: number }> {
    const client = await t.pool.connect();
    try {
      if (session) {
        await client.query(`SET lock_timeout = '${session.lock}'`);
        await client.query(`SET statement_timeout = '${session.statement}'`);
        await client.query(`SET idle_in_transaction_session_timeout = '${session.idle}'`);
      }
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!
        .pid;
      await client.query('BEGIN');
      const { rows } = await claim(client);
      const inside = await limits(client);
      await client.query('COMMIT');
      const afterwards = await limits(client);
      return { inside, afterwards, rows, pid };
    } finally {
      // After a failed claim: end its transaction, then give the session back as it was.
      await client.query('ROLLBACK');
      await client.query(
        'RESET lock_timeout; RESET statement_timeout; RESET idle_in_transaction_session_timeout',
      );
      client.release();
    }
  }

  const claimOne = (consumer: string, key: string, limitMs: number) => (client: pg.PoolClient) =>
    client.query(queries.claimOne, [consumer, key, `m-${key}`, limitMs]);
  const claimMany =
    (consumer: string, keys: string[], limitMs: number) => (client: pg.PoolClient) =>
      client.query(queries.claimMany, [consumer, keys, keys.map((k) => `m-${k}`), limitMs]);

  for (const [name, claim] of [
    ['one key', (key: string, ms: number) => claimOne('limits', key, ms)],
    ['a batch', (key: string, ms: number) => claimMany('limits', [key, `${key}-b`], ms)],
  ] as const) {
    it(`${name}: sets both limits for the transaction when the session has none`, async () => {
      const { inside, afterwards } = await claimOn(undefined, claim(`${name}-none`, 300));
      // No idle limit stays none: the host's own time-out bounds the transaction.
      assert.deepEqual(inside, { lock: '300ms', statement: '300ms', idle: '0' });
      assert.deepEqual(afterwards, { lock: '0', statement: '0', idle: '0' });
    });

    it(`${name}: shortens longer session limits, for the transaction only`, async () => {
      const session = { lock: '10s', statement: '1min', idle: '1min' };
      const { inside, afterwards } = await claimOn(session, claim(`${name}-longer`, 300));
      assert.deepEqual(inside, { lock: '300ms', statement: '300ms', idle: '1min' });
      assert.deepEqual(afterwards, session);
    });

    it(`${name}: never lengthens a shorter session limit, but the idle limit to the handler's`, async () => {
      const session = { lock: '100ms', statement: '250ms', idle: '250ms' };
      const { inside, afterwards } = await claimOn(session, claim(`${name}-shorter`, 300));
      assert.deepEqual(inside, { ...session, idle: '300ms' });
      assert.deepEqual(afterwards, session);
      const mixed = { lock: '5s', statement: '200ms', idle: '2s' };
      const both = await claimOn(mixed, claim(`${name}-mixed`, 300));
      assert.deepEqual(both.inside, { lock: '300ms', statement: '200ms', idle: '2s' });
    });
  }

  it('one key: returns the pid for a new key, no row for a claimed one, and stores the message id', async () => {
    const first = await claimOn(undefined, claimOne('pid', 'k1', 1000));
    assert.deepEqual(first.rows, [{ pid: first.pid }]);
    const again = await claimOn(undefined, claimOne('pid', 'k1', 1000));
    assert.deepEqual(again.rows, []);
    const { rows } = await t.pool.query(
      `SELECT consumer, business_key, message_id FROM "${t.schema}".processed_messages WHERE consumer = 'pid'`,
    );
    assert.deepEqual(rows, [{ consumer: 'pid', business_key: 'k1', message_id: 'm-k1' }]);
  });

  for (const [name, claim] of [
    ['one key', claimOne('held', 'held-1', 200)],
    ['a batch', claimMany('held', ['held-0', 'held-1'], 200)],
  ] as const) {
    it(`${name}: waits for a key another transaction holds no longer than the limit`, async () => {
      const holder = await t.pool.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(
          `INSERT INTO "${t.schema}".processed_messages (consumer, business_key) VALUES ('held', 'held-1')`,
        );
        const started = performance.now();
        await assert.rejects(
          claimOn(undefined, claim),
          (error: { code?: string }) => error.code === LOCK_NOT_AVAILABLE,
        );
        const waited = performance.now() - started;
        assert.ok(waited >= 150 && waited < 5000, `waited ${Math.round(waited)} ms`);
      } finally {
        await holder.query('ROLLBACK');
        holder.release();
      }
    });
  }
});

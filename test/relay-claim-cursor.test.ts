import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it, mock } from 'node:test';
import { ClaimCursor, CURSOR_TTL_MS, TURN_WAIT_MS } from '../src/relay/claim-cursor.js';
import type { OutboxRow } from '../src/relay/outbox-row.js';
import { relayQueries } from '../src/relay/relay-queries.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

describe('ClaimCursor', () => {
  const at = { availableAtEpoch: '1767225600.000000', id: '5' };

  it('starts from the head, then after the last row of each claim', () => {
    const cursor = new ClaimCursor();
    const position = () => cursor.position;
    assert.equal(position(), undefined);
    cursor.claimed(at);
    assert.deepEqual(position(), at);
    cursor.claimed({ ...at, id: '9' });
    assert.equal(position()?.id, '9');
  });

  it('runs claims one at a time, each after those started before it, a failed one included', async () => {
    const cursor = new ClaimCursor();
    const log: string[] = [];
    let releaseFirst = () => {};
    const first = cursor.inTurn(async () => {
      log.push('first starts');
      await new Promise<void>((resolve) => {
        releaseFirst = resolve;
      });
      log.push('first ends');
      throw new Error('claim failed');
    });
    const second = cursor.inTurn(async () => {
      log.push('second starts');
      cursor.claimed(at);
      return 'second';
    });
    const third = cursor.inTurn(async () => {
      log.push(`third starts after ${cursor.position?.id}`);
      return 'third';
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(log, ['first starts'], 'the others wait for the claim in progress');
    releaseFirst();
    await assert.rejects(first, /claim failed/);
    assert.equal(await second, 'second');
    assert.equal(await third, 'third');
    assert.deepEqual(log, ['first starts', 'first ends', 'second starts', 'third starts after 5']);
  });

  it(`a claim that hangs holds the next one at most ${TURN_WAIT_MS} ms`, async () => {
    const cursor = new ClaimCursor();
    let releaseHung = () => {};
    const hung = cursor.inTurn(
      () =>
        new Promise<string>((resolve) => {
          releaseHung = () => resolve('hung');
        }),
    );
    const started = performance.now();
    assert.equal(await cursor.inTurn(async () => 'next'), 'next');
    const waited = performance.now() - started;
    assert.ok(waited >= TURN_WAIT_MS - 20, `the next claim went after ${waited} ms`);
    assert.ok(waited < TURN_WAIT_MS + 2500, `the next claim waited ${waited} ms`);
    releaseHung();
    assert.equal(await hung, 'hung');
  });

  it('starts from the head again once its first position is older than the TTL', () => {
    const now = mock.method(performance, 'now', () => 1_000);
    try {
      const cursor = new ClaimCursor();
      const position = () => cursor.position;
      cursor.claimed(at);
      now.mock.mockImplementation(() => 1_000 + CURSOR_TTL_MS / 2);
      cursor.claimed({ ...at, id: '9' });
      assert.equal(position()?.id, '9', 'a later claim keeps the cursor');
      now.mock.mockImplementation(() => 1_001 + CURSOR_TTL_MS);
      assert.equal(position(), undefined, 'the TTL counts from the first position');
      cursor.claimed({ ...at, id: '12' });
      now.mock.mockImplementation(() => 1_002 + CURSOR_TTL_MS);
      assert.equal(position()?.id, '12', 'a claim from the head starts a new TTL');
    } finally {
      now.mock.restore();
    }
  });
});

describe('claimFreshAfter', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('claim_cursor');
  });
  after(async () => {
    await t?.close();
  });
  beforeEach(async () => {
    await t.pool.query(`TRUNCATE "${t.schema}".outbox`);
    await t.pool.query(
      `INSERT INTO "${t.schema}".outbox (message_id, exchange, routing_key, payload, content_type, available_at)
       SELECT g::text, 'x', 'k', '\\x00', 'application/json', now() - interval '1 hour' + g * interval '1 second'
       FROM generate_series(1, 10) g`,
    );
  });

  /**
   * The message ids claimed after the 5th row (rows are a second apart), with `limit` and
   * `lookbackMs`, while `lockedElsewhere` are locked. The position is the one the claim of the
   * first five gives, in a session with `settings` (run with `SET LOCAL`).
   */
  async function claimAfterFifth(
    limit: number,
    { lockedElsewhere = [] as string[], lookbackMs = 3_600_000, settings = [] as string[] } = {},
  ): Promise<string[]> {
    const queries = relayQueries(t.schema);
    const other = await t.pool.connect();
    const client = await t.pool.connect();
    const begin = async () => {
      await client.query('BEGIN');
      for (const setting of settings) await client.query(`SET LOCAL ${setting}`);
    };
    try {
      await begin();
      const { rows: firstFive } = await client.query<OutboxRow>(queries.claimFresh, [5]);
      await client.query('ROLLBACK');
      const fifth = firstFive[4]!;
      assert.equal(fifth.message_id, '5');
      await other.query('BEGIN');
      await other.query(
        `SELECT id FROM "${t.schema}".outbox WHERE message_id = ANY($1) FOR UPDATE`,
        [lockedElsewhere],
      );
      await begin();
      const { rows } = await client.query<OutboxRow>(queries.claimFreshAfter, [
        limit,
        fifth.available_at_epoch,
        fifth.id,
        lookbackMs,
      ]);
      return rows.map((r) => r.message_id);
    } finally {
      await client.query('ROLLBACK');
      await other.query('ROLLBACK');
      client.release();
      other.release();
    }
  }

  it('claims the rows after the position first', async () => {
    assert.deepEqual(await claimAfterFifth(3), ['6', '7', '8']);
  });

  it('claims the rows up to the position when those after it run short', async () => {
    assert.deepEqual(await claimAfterFifth(8), ['6', '7', '8', '9', '10', '1', '2', '3']);
  });

  it('looks back no further than the lookback behind the position', async () => {
    assert.deepEqual(await claimAfterFifth(8, { lookbackMs: 1_500 }), [
      '6',
      '7',
      '8',
      '9',
      '10',
      '4',
      '5',
    ]);
  });

  it('skips rows locked by another transaction on both sides', async () => {
    assert.deepEqual(await claimAfterFifth(5, { lockedElsewhere: ['7', '2'] }), [
      '6',
      '8',
      '9',
      '10',
      '1',
    ]);
  });

  // With DateStyle Postgres and TimeZone Asia/Kolkata, a timestamptz prints as "... IST",
  // which reads back as Israel's time, 3.5 hours off: the cursor would find nothing after it.
  it('goes back to the same position whatever the session prints a timestamptz as', async () => {
    const settings = [
      [`DateStyle = 'Postgres, DMY'`, `TimeZone = 'Asia/Kolkata'`],
      [`DateStyle = 'SQL, MDY'`, `TimeZone = 'America/Sao_Paulo'`],
      [`DateStyle = 'German'`, `TimeZone = 'UTC'`],
    ];
    for (const session of settings) {
      assert.deepEqual(
        await claimAfterFifth(8, { settings: session, lookbackMs: 1_500 }),
        ['6', '7', '8', '9', '10', '4', '5'],
        session.join(', '),
      );
    }
  });

  it('returns each row once when it claims everything', async () => {
    assert.deepEqual(
      (await claimAfterFifth(50)).sort((a, b) => Number(a) - Number(b)),
      ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10'],
    );
  });
});

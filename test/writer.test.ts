import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql, type Transaction } from 'kysely';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import {
  InvalidMessageError,
  type InvalidMessageReason,
} from '../src/errors/invalid-message-error.js';
import { NotInTransactionError } from '../src/errors/not-in-transaction-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { ADVISORY_LOCK_CLASS } from '../src/sql/advisory-locks.js';
import { outboxTables } from '../src/sql/outbox-tables.js';
import type { TransactionLike } from '../src/sql/sql-executor.js';
import type { OutboxMessage } from '../src/writer/outbox-message.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/**
 * Whether a writer of this test's schema waits for a key's advisory lock. Other test files take
 * advisory locks of their own at the same time (migrations, their writers' keys).
 */
async function keyLockWaiting(t: TestDatabase): Promise<boolean> {
  const { rows } = await t.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
     WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = $1::oid
       AND position($2 in a.query) > 0`,
    [ADVISORY_LOCK_CLASS, outboxTables(t.schema).outbox],
  );
  return rows[0]!.n > 0;
}

describe('OutboxWriter', () => {
  let t: TestDatabase;
  let writer: OutboxWriter;
  before(async () => {
    t = await testDatabase('writer');
    writer = new OutboxWriter({ schema: t.schema, maxMessageBytes: 1000 });
    await t.pool.query(`CREATE TABLE "${t.schema}".orders (id int PRIMARY KEY)`);
  });
  after(() => t.close());

  const base = { exchange: 'orders', routingKey: 'order.placed', payload: { id: 1 } };

  it('names the migration to run when the schema has no outbox table', async () => {
    const unmigrated = new OutboxWriter({ schema: `${t.schema}_never_migrated` });
    const error = await t.db
      .transaction()
      .execute((trx) => unmigrated.add(trx, base))
      .then(
        () => assert.fail('the write succeeded'),
        (e: unknown) => e,
      );
    assert.ok(error instanceof OutboxkitError, `not an OutboxkitError: ${String(error)}`);
    assert.equal(error.code, 'schema-not-migrated');
    assert.match(
      error.message,
      new RegExp(`outboxkit migrate --schema ${t.schema}_never_migrated`),
    );
    assert.equal((error.cause as { code?: string }).code, '42P01');
  });

  it('commits the message with the business row', async () => {
    const id = await t.db.transaction().execute(async (trx) => {
      await trx.insertInto(`${t.schema}.orders`).values({ id: 1 }).execute();
      return writer.add(trx, {
        ...base,
        headers: { tenant: 'a', n: 1 },
        orderingKey: 'o-1',
        correlationId: 'c',
      });
    });
    const { rows } = await t.pool.query(
      `SELECT * FROM "${t.schema}".outbox WHERE message_id = $1`,
      [id],
    );
    assert.equal(rows.length, 1);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.deepEqual(JSON.parse(rows[0].payload.toString()), { id: 1 });
    assert.equal(rows[0].content_type, 'application/json');
    assert.deepEqual(rows[0].headers, { tenant: 'a', n: 1 });
    assert.equal(rows[0].ordering_key, 'o-1');
    assert.equal(rows[0].correlation_id, 'c');
  });

  it('writes nothing when the business transaction rolls back', async () => {
    const before = await t.count();
    await assert.rejects(
      t.db.transaction().execute(async (trx) => {
        await writer.add(trx, base);
        throw new Error('business failure');
      }),
      /business failure/,
    );
    assert.equal(await t.count(), before);
  });

  it('adds many messages in one statement, in order, and keeps given ids', async () => {
    const before = await t.count();
    const messages = Array.from({ length: 50 }, (_, i) => ({
      ...base,
      payload: { i },
      messageId: `m-${i}`,
    }));
    const ids = await t.db.transaction().execute((trx) => writer.addMany(trx, messages));
    assert.deepEqual(
      ids,
      messages.map((m) => m.messageId),
    );
    const { rows } = await t.pool.query(
      `SELECT message_id FROM "${t.schema}".outbox WHERE message_id LIKE 'm-%' ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((r) => r.message_id),
      ids,
    );
    assert.equal(await t.count(), before + 50);
  });

  // Under array_nulls = off an array's NULL is the text "NULL": a message without an ordering
  // key got the key "NULL" (every such message ordered behind one key), and one without headers
  // failed the whole write ("invalid input syntax for type json").
  it('adds many messages with and without their optional fields where array_nulls is off', async () => {
    const messages: OutboxMessage[] = [
      { ...base, payload: 1, messageId: 'an-1' },
      {
        ...base,
        payload: 2,
        messageId: 'an-2',
        orderingKey: 'o-1',
        headers: { tenant: 'a' },
        correlationId: 'c-1',
        causationId: 'x-1',
      },
      { ...base, payload: 3, messageId: 'an-3' },
    ];
    await t.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL array_nulls = off`.execute(trx);
      await writer.addMany(trx, messages);
    });
    const { rows } = await t.pool.query(
      `SELECT message_id, ordering_key, headers, correlation_id, causation_id
       FROM "${t.schema}".outbox WHERE message_id LIKE 'an-%' ORDER BY id`,
    );
    assert.deepEqual(rows, [
      {
        message_id: 'an-1',
        ordering_key: null,
        headers: null,
        correlation_id: null,
        causation_id: null,
      },
      {
        message_id: 'an-2',
        ordering_key: 'o-1',
        headers: { tenant: 'a' },
        correlation_id: 'c-1',
        causation_id: 'x-1',
      },
      {
        message_id: 'an-3',
        ordering_key: null,
        headers: null,
        correlation_id: null,
        causation_id: null,
      },
    ]);
  });

  it('stores a Buffer payload with its content type, and a delay', async () => {
    const id = await t.db.transaction().execute((trx) =>
      writer.add(trx, {
        ...base,
        payload: Buffer.from([0, 1, 2]),
        contentType: 'application/octet-stream',
        delayMs: 60_000,
      }),
    );
    const { rows } = await t.pool.query(
      `SELECT payload, content_type, available_at - created_at AS delay FROM "${t.schema}".outbox WHERE message_id = $1`,
      [id],
    );
    assert.deepEqual([...rows[0].payload], [0, 1, 2]);
    assert.equal(rows[0].content_type, 'application/octet-stream');
    assert.equal(rows[0].delay.minutes, 1);
  });

  // now() is when the transaction began: a delay counted from it ran out early, or before the
  // commit, in a transaction that worked a while before its add.
  it('counts a delay from the add, not from the start of the transaction', async () => {
    const { id, began } = await t.db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ began: Date }>`SELECT now() AS began`.execute(trx);
      await sql`SELECT pg_sleep(0.6)`.execute(trx);
      return { id: await writer.add(trx, { ...base, delayMs: 1000 }), began: rows[0]!.began };
    });
    const { rows } = await t.pool.query<{ at: Date }>(
      `SELECT available_at AS at FROM "${t.schema}".outbox WHERE message_id = $1`,
      [id],
    );
    const waited = rows[0]!.at.getTime() - began.getTime();
    assert.ok(waited >= 1600, `available ${waited} ms after the transaction began`);
  });

  it('accepts a pg client inside a transaction and refuses one outside', async () => {
    const client = await t.pool.connect();
    try {
      await assert.rejects(writer.add(client, base), NotInTransactionError);
      await client.query('BEGIN');
      const id = await writer.add(client, base);
      await client.query('ROLLBACK');
      const { rows } = await t.pool.query(
        `SELECT 1 FROM "${t.schema}".outbox WHERE message_id = $1`,
        [id],
      );
      assert.equal(rows.length, 0);
    } finally {
      client.release();
    }
  });

  it('refuses a pg pool, whose statements would each commit on their own', async () => {
    // TypeScript refuses it (a pool has `totalCount`), and so does the writer, for JavaScript.
    const before = await t.count('outbox');
    // @ts-expect-error a pg Pool is not a transaction
    await assert.rejects(writer.add(t.pool, base), (error: unknown) => {
      assert.ok(error instanceof NotInTransactionError);
      assert.match(error.message, /pool\.connect\(\)/);
      return true;
    });
    assert.equal(await t.count('outbox'), before);
  });

  it('refuses no transaction at all (undefined, null) with a NotInTransactionError', async () => {
    for (const nothing of [undefined, null]) {
      await assert.rejects(
        writer.add(nothing as unknown as TransactionLike, base),
        NotInTransactionError,
      );
    }
  });

  it("leaves the caller's transaction usable after refusing a message", async () => {
    const committed = await t.db.transaction().execute(async (trx) => {
      await assert.rejects(
        writer.add(trx, { ...base, headers: { note: 'a\u0000b' } }),
        InvalidMessageError,
      );
      return writer.add(trx, base);
    });
    const { rows } = await t.pool.query(
      `SELECT count(*)::int AS n FROM "${t.schema}".outbox WHERE message_id = $1`,
      [committed],
    );
    assert.equal(rows[0].n, 1);
    await t.pool.query(`DELETE FROM "${t.schema}".outbox WHERE message_id = $1`, [committed]);
  });

  it('refuses a Kysely instance that is not a transaction', async () => {
    await assert.rejects(
      writer.add(t.db as unknown as TransactionLike, base),
      NotInTransactionError,
    );
  });

  it('refuses a Kysely transaction kept past its end, saying it ended, and writes nothing', async () => {
    // biome-ignore lint/suspicious/noExplicitAny: a transaction of any database type
    let kept: Transaction<any> | undefined;
    await t.db.transaction().execute(async (trx) => {
      kept = trx;
    });
    const controlled = await t.db.startTransaction().execute();
    await controlled.rollback().execute();
    const before = await t.count('outbox');
    for (const [what, trx] of [
      ['committed', kept!],
      ['rolled back', controlled],
    ] as const) {
      await assert.rejects(writer.add(trx, base), (error: unknown) => {
        assert.ok(error instanceof NotInTransactionError, `${what}: ${String(error)}`);
        assert.match(error.message, /transaction has ended/);
        assert.match(String((error.cause as Error | undefined)?.message), /already/);
        return true;
      });
    }
    assert.equal(await t.count('outbox'), before);
  });

  // Kysely and pg say that a transaction has ended only once its COMMIT or ROLLBACK is answered:
  // an add not awaited by the transaction's callback (an event listener, a CQRS EventBus
  // handler) reached the connection after the ROLLBACK, and its row committed on its own.
  it('refuses an add that would reach the connection after its ROLLBACK or COMMIT was sent', async () => {
    const phantoms = async (ending: 'rollback' | 'commit', via: 'kysely' | 'pg') => {
      const tag = `late-${ending}-${via}`;
      let late: Promise<unknown> | undefined;
      // Holds the connection, so that the ROLLBACK or COMMIT waits in pg's queue behind it.
      const busy = (trx: TransactionLike) =>
        'executeQuery' in trx
          ? sql`SELECT pg_sleep(0.3)`.execute(trx as Transaction<unknown>)
          : trx.query('SELECT pg_sleep(0.3)');
      const body = async (trx: TransactionLike) => {
        await writer.add(trx, { ...base, messageId: `${tag}-first` });
        const sleeping = busy(trx);
        // The sleep is on the wire; the add comes once the COMMIT or ROLLBACK is queued.
        await new Promise((resolve) => setTimeout(resolve, 30));
        setTimeout(() => {
          late = writer.add(trx, { ...base, messageId: `${tag}-late` });
          late.catch(() => {});
        }, 30);
        if (ending === 'rollback') {
          void sleeping.catch(() => {});
          throw new Error('the command failed');
        }
        await new Promise((resolve) => setTimeout(resolve, 0));
      };
      if (via === 'kysely') {
        await t.db
          .transaction()
          .execute((trx) => body(trx))
          .catch(() => {});
      } else {
        const client = await t.pool.connect();
        try {
          await client.query('BEGIN');
          const ok = await body(client).then(
            () => true,
            () => false,
          );
          await client.query(ok ? 'COMMIT' : 'ROLLBACK');
          await waitFor('the late add to settle', async () => late !== undefined);
          await late!.catch(() => {});
        } finally {
          client.release();
        }
      }
      await waitFor('the late add to be made', async () => late !== undefined);
      await assert.rejects(late!, (error: unknown) => {
        assert.ok(error instanceof NotInTransactionError, `${tag}: ${String(error)}`);
        assert.match(error.message, /told to commit or roll back|has ended/);
        return true;
      });
      const { rows } = await t.pool.query(
        `SELECT message_id FROM "${t.schema}".outbox WHERE message_id LIKE $1 ORDER BY id`,
        [`${tag}-%`],
      );
      return rows.map((r) => r.message_id);
    };
    assert.deepEqual(await phantoms('rollback', 'kysely'), []);
    assert.deepEqual(await phantoms('rollback', 'pg'), []);
    assert.deepEqual(await phantoms('commit', 'kysely'), ['late-commit-kysely-first']);
    assert.deepEqual(await phantoms('commit', 'pg'), ['late-commit-pg-first']);
  });

  const circular: Record<string, unknown> = {};
  circular.self = circular;
  const bad: Array<
    [string, Partial<OutboxMessage> & Record<string, unknown>, InvalidMessageReason]
  > = [
    ['no exchange', { exchange: undefined }, 'missing-exchange'],
    ['empty exchange', { exchange: '' }, 'missing-exchange'],
    ['routing key not a string', { routingKey: 42 as unknown as string }, 'invalid-routing-key'],
    ['circular payload', { payload: circular }, 'payload-not-serializable'],
    ['bigint payload', { payload: { n: 1n } }, 'payload-not-serializable'],
    ['undefined payload', { payload: undefined }, 'payload-not-serializable'],
    ['payload over the limit', { payload: 'x'.repeat(2000) }, 'payload-too-large'],
    ['Buffer without content type', { payload: Buffer.from('x') }, 'missing-content-type'],
    [
      'undefined header value',
      { headers: { a: undefined as unknown as string } },
      'invalid-header',
    ],
    ['object header value', { headers: { a: { b: 1 } as unknown as string } }, 'invalid-header'],
    ['NaN header value', { headers: { a: Number.NaN } }, 'invalid-header'],
    ['negative delay', { delayMs: -1 }, 'invalid-delay'],
    ['empty message id', { messageId: '' }, 'invalid-message-id'],
    ['overlong ordering key', { orderingKey: 'k'.repeat(300) }, 'invalid-ordering-key'],
    // Text Postgres cannot store: caught before the INSERT, which would abort the transaction.
    ['NUL in the exchange', { exchange: 'ord\u0000ers' }, 'missing-exchange'],
    ['NUL in the routing key', { routingKey: 'a\u0000' }, 'invalid-routing-key'],
    ['a lone surrogate in the routing key', { routingKey: 'a\uD800' }, 'invalid-routing-key'],
    ['NUL in the message id', { messageId: 'm\u0000' }, 'invalid-message-id'],
    ['NUL in the ordering key', { orderingKey: 'k\u0000' }, 'invalid-ordering-key'],
    ['NUL in the correlation id', { correlationId: 'c\u0000' }, 'invalid-correlation-id'],
    ['NUL in a header value', { headers: { a: 'x\u0000' } }, 'invalid-header'],
    ['a lone surrogate in a header value', { headers: { a: ['x\uDC00'] } }, 'invalid-header'],
    ['NUL in a header name', { headers: { 'a\u0000': 1 } }, 'invalid-header'],
    ["outboxkit's own header", { headers: { 'x-outboxkit-retries': 9 } }, 'invalid-header'],
  ];
  for (const [what, patch, reason] of bad) {
    it(`rejects ${what} with a typed error and writes nothing`, async () => {
      const before = await t.count();
      await assert.rejects(
        t.db
          .transaction()
          .execute((trx) => writer.addMany(trx, [base, { ...base, ...patch } as OutboxMessage])),
        (error: unknown) => {
          assert.ok(error instanceof InvalidMessageError, String(error));
          assert.equal(error.reason, reason);
          assert.equal(error.index, 1);
          assert.match(error.message, /#1/);
          return true;
        },
      );
      assert.equal(await t.count(), before);
    });
  }

  it('makes id order equal commit order for one ordering key', async () => {
    // The first writer takes the key and holds its transaction open; the second must wait for
    // it, so the second row gets the higher id although its transaction began writing later.
    let releaseFirst!: () => void;
    const firstHolds = new Promise<void>((r) => {
      releaseFirst = r;
    });
    let firstWrote!: () => void;
    const firstHasWritten = new Promise<void>((r) => {
      firstWrote = r;
    });
    const first = t.db.transaction().execute(async (trx) => {
      await writer.add(trx, { ...base, orderingKey: 'inversion', messageId: 'first' });
      firstWrote();
      await firstHolds;
    });
    await firstHasWritten;
    let secondDone = false;
    const second = t.db
      .transaction()
      .execute((trx) => writer.add(trx, { ...base, orderingKey: 'inversion', messageId: 'second' }))
      .then(() => {
        secondDone = true;
      });
    // The second writer is blocked on the key's lock: it shows up as a waiting lock in pg_locks.
    await waitFor('second writer blocked on the key lock', () => keyLockWaiting(t));
    assert.equal(secondDone, false);
    releaseFirst();
    await Promise.all([first, second]);
    const { rows } = await t.pool.query(
      `SELECT message_id FROM "${t.schema}".outbox WHERE ordering_key = 'inversion' ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((r) => r.message_id),
      ['first', 'second'],
    );
  });

  for (const [how, write] of [
    [
      'add',
      (w: OutboxWriter, trx: TransactionLike, m: OutboxMessage): Promise<unknown> => w.add(trx, m),
    ],
    [
      'addMany',
      (w: OutboxWriter, trx: TransactionLike, m: OutboxMessage): Promise<unknown> =>
        w.addMany(trx, [
          m,
          { ...m, orderingKey: `${String(m.orderingKey)}-other`, messageId: undefined },
        ]),
    ],
  ] as const) {
    it(`${how}: a keyed row takes its id only once it holds the key's lock`, async () => {
      // The key's lock, the INSERT and the NOTIFY are one statement: the lock must still come
      // before the row's id. A row written meanwhile without a key gets an id in between.
      const key = `lock-before-id-${how}`;
      const client = await t.pool.connect();
      try {
        await client.query('BEGIN');
        await writer.add(client, { ...base, orderingKey: key, messageId: `${how}-first` });
        const every = new OutboxWriter({ schema: t.schema, notifyIntervalMs: 0 });
        const second = t.db
          .transaction()
          .execute((trx) =>
            write(every, trx, { ...base, orderingKey: key, messageId: `${how}-second` }),
          );
        await waitFor('second writer blocked on the key lock', () => keyLockWaiting(t));
        await t.db
          .transaction()
          .execute((trx) => writer.add(trx, { ...base, messageId: `${how}-between` }));
        await client.query('COMMIT');
        await second;
      } finally {
        client.release();
      }
      const { rows } = await t.pool.query(
        `SELECT message_id FROM "${t.schema}".outbox WHERE message_id LIKE $1 ORDER BY id`,
        [`${how}-%`],
      );
      assert.deepEqual(
        rows.map((r) => r.message_id),
        [`${how}-first`, `${how}-between`, `${how}-second`],
      );
    });
  }

  describe('waking the relays', () => {
    /**
     * Counts the NOTIFYs on the outbox channel that `write` causes. A sentinel NOTIFY committed
     * after it marks the end: notifications arrive in commit order, so nothing is still on its way.
     */
    async function notificationsDuring(write: () => Promise<void>): Promise<string[]> {
      const channel = outboxTables(t.schema).notifyChannelName;
      const listener = await t.pool.connect();
      const received: string[] = [];
      try {
        let sentinelSeen: () => void = () => {};
        const sentinel = new Promise<void>((resolve) => {
          sentinelSeen = resolve;
        });
        listener.on('notification', (n) => {
          if (n.payload === 'sentinel') sentinelSeen();
          else received.push(n.payload ?? '');
        });
        await listener.query(`LISTEN ${outboxTables(t.schema).notifyChannel}`);
        await write();
        await t.pool.query(`SELECT pg_notify($1, 'sentinel')`, [channel]);
        await sentinel;
      } finally {
        listener.release(true);
      }
      return received;
    }

    const writeTwice = (w: OutboxWriter) => async () => {
      for (let i = 0; i < 2; i++) {
        await t.db.transaction().execute((trx) => w.add(trx, base).then(() => {}));
      }
    };

    it('notifies once per interval, from the first transaction in it', async () => {
      const w = new OutboxWriter({ schema: t.schema, notifyIntervalMs: 60_000 });
      assert.equal((await notificationsDuring(writeTwice(w))).length, 1);
    });

    it('notifies from every transaction with an interval of 0, and never with false', async () => {
      const every = new OutboxWriter({ schema: t.schema, notifyIntervalMs: 0 });
      assert.equal((await notificationsDuring(writeTwice(every))).length, 2);
      const never = new OutboxWriter({ schema: t.schema, notifyIntervalMs: false });
      assert.equal((await notificationsDuring(writeTwice(never))).length, 0);
    });

    it('sends no notification when the transaction rolls back', async () => {
      const w = new OutboxWriter({ schema: t.schema, notifyIntervalMs: 0 });
      const received = await notificationsDuring(async () => {
        await assert.rejects(
          t.db.transaction().execute(async (trx) => {
            await w.add(trx, base);
            throw new Error('business failure');
          }),
          /business failure/,
        );
      });
      assert.equal(received.length, 0);
    });

    it('rejects an interval that is not a non-negative integer, naming the option', () => {
      for (const notifyIntervalMs of [-1, 1.5, Number.NaN]) {
        assert.throws(
          () => new OutboxWriter({ schema: t.schema, notifyIntervalMs }),
          (error: unknown) =>
            error instanceof ConfigurationError && /notifyIntervalMs/.test(error.message),
        );
      }
    });
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import knexFactory from 'knex';
import pg from 'pg';
import type { ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { handleGateOf } from '../src/consumer/consumer-transactions.js';
import { HandlerTimeoutError } from '../src/consumer/handler-timeout-error.js';
import { drizzleConsumerTransactions } from '../src/drizzle/drizzle-consumer-transactions.js';
import { drizzleStatements, drizzleTransaction } from '../src/drizzle/drizzle-transaction.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { knexTransaction } from '../src/knex/index.js';
import {
  type ConsumerTransactionHostLike,
  clsConsumerTransactions,
} from '../src/nestjs-cls/cls-consumer-transactions.js';
import type { PgQueryable } from '../src/sql/sql-executor.js';
import { typeormTransaction } from '../src/typeorm/index.js';
import { openClsDrizzle } from './support/cls-drizzle.js';
import { openClsTypeOrm } from './support/cls-typeorm.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

/** A CLS stack: its transaction host, how the handler runs SQL on `txHost.tx`, its `join`. */
interface ClsStack {
  readonly name: string;
  open(url: string): Promise<{
    readonly txHost: ConsumerTransactionHostLike<never, undefined>;
    query(text: string, params: unknown[]): Promise<Record<string, unknown>[]>;
    close(): Promise<void>;
  }>;
  readonly join: (tx: never) => PgQueryable;
}

const stacks: ClsStack[] = [
  {
    name: 'typeorm',
    join: typeormTransaction as (tx: never) => PgQueryable,
    async open(url) {
      const cls = await openClsTypeOrm(url);
      return {
        txHost: cls.txHost as unknown as ConsumerTransactionHostLike<never, undefined>,
        query: (text, params) => cls.txHost.tx.query(text, params),
        close: () => cls.close(),
      };
    },
  },
  {
    name: 'drizzle',
    join: drizzleTransaction as (tx: never) => PgQueryable,
    async open(url) {
      const cls = await openClsDrizzle(url);
      return {
        txHost: cls.txHost as unknown as ConsumerTransactionHostLike<never, undefined>,
        // `txHost.tx` read at each statement, as a handler's repository would.
        query: async (text, params) =>
          (await drizzleStatements(cls.txHost.tx)(text, params)).rows as Record<string, unknown>[],
        close: () => cls.close(),
      };
    },
  },
];

/**
 * nestjs-cls opens the consumer's transaction through its own callback, and the handler writes
 * through the ambient `txHost.tx`, which outboxkit never wraps. A timed-out handler's statement
 * sent while the ROLLBACK is on its way back queues behind it on the same connection: unless it
 * is refused, it runs after the ROLLBACK, on its own, and commits a write of an attempt that
 * was rolled back (the retry then writes it again).
 */
for (const stack of stacks) {
  describe(`nestjs-cls with ${stack.name}: a timed-out handler`, () => {
    let f: ConsumerFixture;
    let proxy: TcpProxy;
    let cls: Awaited<ReturnType<ClsStack['open']>>;
    before(async () => {
      f = await ConsumerFixture.open(`clslate${stack.name.slice(0, 2)}`);
      const { hostname, port } = new URL(DATABASE_URL);
      proxy = await TcpProxy.start(hostname, Number(port || 5432));
      cls = await stack.open(proxy.url(DATABASE_URL));
    });
    after(async () => {
      await f.stopHosts();
      await cls.close();
      await proxy.close();
      await f.close();
    });

    it('cannot run a statement after the ROLLBACK, on its own', async () => {
      const insert = (key: string, attempt: number) =>
        cls.query(
          `INSERT INTO "${f.t.schema}".effects (consumer, key, attempt) VALUES ($1, $2, $3)`,
          [consumer, key, attempt],
        );
      let late: unknown;
      const definition: ConsumerDefinition = f.definition(
        'late',
        async (_payload, ctx) => {
          if (ctx.attempt > 1) {
            await insert(ctx.businessKey, ctx.attempt);
            return;
          }
          const [row] = await cls.query('SELECT pg_backend_pid() AS pid', []);
          const pid = Number(row?.pid);
          await once(ctx.signal, 'abort');
          // The server ran the ROLLBACK; its answer is still held in the proxy, so the ORM has
          // not released the connection, and a statement sent now queues behind the ROLLBACK.
          await waitFor('the ROLLBACK ran on the server', async () => {
            const { rows } = await f.t.pool.query<{ query: string }>(
              'SELECT query FROM pg_stat_activity WHERE pid = $1',
              [pid],
            );
            return /^rollback$/i.test(rows[0]?.query ?? '');
          });
          late = await insert(ctx.businessKey, ctx.attempt).then(
            () => 'it ran',
            (error: unknown) => error,
          );
        },
        { timeoutMs: 2000 },
      );
      const consumer = definition.name;
      const host = await f.host([definition], {
        transactions: clsConsumerTransactions(cls.txHost, stack.join),
      });
      // Every answer of Postgres to the CLS stack comes 400 ms late.
      proxy.latency(400, 'toClient');
      try {
        await f.publish('late', { n: 1 }, { messageId: 'late-m1' });
        await waitFor('the retry handled', () => host.stats(consumer).handled === 1, 30_000);
        await waitFor('the late statement tried', () => late !== undefined);
      } finally {
        proxy.latency(0, 'toClient');
      }
      // Drizzle wraps the driver's error in its DrizzleQueryError, the refusal as its cause.
      const refusal = late instanceof Error && stack.name === 'drizzle' ? late.cause : late;
      assert.ok(
        refusal instanceof HandlerTimeoutError,
        `the late statement was refused; ${String(late)}`,
      );
      assert.deepEqual(
        (await f.effects()).filter((e) => e.consumer === consumer).map((e) => e.attempt),
        [2],
        "the timed-out attempt's write did not commit",
      );
    });
  });
}

describe('knexTransaction', () => {
  it('carries the gate clsConsumerTransactions puts in front of a Knex transaction', async () => {
    const knex = knexFactory({ client: 'pg', connection: DATABASE_URL });
    try {
      const gate = handleGateOf<object>(knexTransaction);
      assert.ok(gate, 'knexTransaction carries a gate');
      const refused = new Error('given up');
      let closed: Error | undefined;
      await knex.transaction(async (trx) => {
        gate(trx, () => closed);
        await trx.raw('SELECT 1');
        closed = refused;
        await assert.rejects(trx.raw('SELECT 1'), (error) => error === refused);
        // The transaction's own end still goes through.
      });
    } finally {
      await knex.destroy();
    }
  });
});

describe('the Drizzle gate', () => {
  const refused = new Error('given up');
  const select = sql`SELECT 1 AS one`;

  it('refuses a kept tx of a database on a pool, after its transaction too', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    const orm = drizzle(pool);
    try {
      let closed: Error | undefined;
      let kept: { execute(q: typeof select): Promise<unknown> } | undefined;
      await drizzleConsumerTransactions(orm).run(
        { isolationLevel: 'read committed', timeoutMs: 5000, handlers: 1, closed: () => closed },
        async ({ tx }) => {
          kept = tx;
          await tx.execute(select);
          closed = refused;
          await assert.rejects(tx.execute(select), (error: Error) => error.cause === refused);
          closed = undefined;
        },
      );
      closed = refused;
      await assert.rejects(kept!.execute(select), (error: Error) => error.cause === refused);
      // The pool's other connections, and the database object, are untouched.
      assert.equal((await orm.execute(select)).rows.length, 1);
    } finally {
      await pool.end();
    }
  });

  it("comes off a single client's session once the transaction has ended", async () => {
    // On a single client the transaction's session is the database's own: a gate left on it
    // would refuse every later statement of the application.
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    const orm = drizzle(client);
    try {
      let closed: Error | undefined;
      const gate = handleGateOf<object>(drizzleTransaction);
      assert.ok(gate, 'drizzleTransaction carries a gate');
      await orm.transaction(async (tx) => {
        const remove = gate(tx, () => closed);
        try {
          await tx.execute(select);
          closed = refused;
          await assert.rejects(tx.execute(select), (error: Error) => error.cause === refused);
        } finally {
          remove?.();
        }
      });
      assert.equal((await orm.execute(select)).rows.length, 1);
      // Two transactions' gates on the one client, taken off in the wrong order: both pass.
      await orm.transaction(async (tx) => {
        const first = gate(tx, () => refused);
        const second = gate(tx, () => refused);
        first?.();
        second?.();
      });
      assert.equal((await orm.execute(select)).rows.length, 1);
      // The consumer's own transactions refuse a single client: concurrent ones would share it.
      assert.throws(
        () => drizzleConsumerTransactions(orm),
        (error: unknown) =>
          error instanceof ConfigurationError &&
          error.option === 'transactions' &&
          /needs Drizzle on a pg Pool/.test(error.message),
      );
      assert.equal((await orm.execute(select)).rows.length, 1);
    } finally {
      await client.end();
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Knex } from 'knex';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { EntityManager } from 'typeorm';
import { type AnyConsumerDefinition, defineConsumer } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import type { ConsumerTransactions } from '../src/consumer/consumer-transactions.js';
import { DATABASE_URL } from './support/env.js';

// Compile-time tests: `tsc` fails the build when a line marked `@ts-expect-error` compiles, so
// each marked line proves that a consumer written for another transaction handle than the
// host's is a compile error. The function is never called; only the runtime test runs.

interface Order {
  orderId: number;
}
const base = { exchange: 'orders', routingKeys: ['order.placed'] };
const kyselyC = defineConsumer<Order>({ ...base, name: 'k', async handler() {} });
const typedC = defineConsumer<Order, { orders: { id: number } }>({
  ...base,
  name: 't',
  async handler(order, { tx }) {
    await tx.insertInto('orders').values({ id: order.orderId }).execute();
  },
});
const knexC = defineConsumer<Order, unknown, Knex.Transaction>({
  ...base,
  name: 'x',
  async handler() {},
});
const ormC = defineConsumer<Order, unknown, EntityManager>({
  ...base,
  name: 'o',
  async handler() {},
});

// A backoff's fields left out take the defaults (1 s doubling to 5 min), so each may be left out.
defineConsumer<Order>({
  ...base,
  name: 'b',
  retry: { backoff: { initialMs: 300 } },
  async handler() {},
});

// `context.trx` is the Kysely transaction when `tx` is one, and is not set with an ORM's handle.
defineConsumer<Order, { orders: { id: number } }>({
  ...base,
  name: 'trx',
  async handler(order, { trx }) {
    await trx.insertInto('orders').values({ id: order.orderId }).execute();
  },
});
defineConsumer<Order, unknown, EntityManager>({
  ...base,
  name: 'orm-trx',
  async handler(order, { trx, tx }) {
    // @ts-expect-error trx is undefined when the transaction is TypeORM's: write through tx
    await trx.insertInto('orders').values({ id: order.orderId }).execute();
    await tx.insert('orders', { id: order.orderId });
  },
});

// biome-ignore lint/suspicious/noExplicitAny: the application's own database type
export function hostChecks(db: Kysely<any>, knexTx: ConsumerTransactions<Knex.Transaction>): void {
  const amqpUrl = 'amqp://localhost';
  new ConsumerHost({ db, amqpUrl, consumers: [kyselyC, typedC] });
  new ConsumerHost({ db, amqpUrl, transactions: knexTx, consumers: [knexC] });
  const loose: AnyConsumerDefinition[] = [ormC];
  new ConsumerHost({ db, amqpUrl, transactions: knexTx, consumers: loose });
  // @ts-expect-error a TypeORM consumer on a host whose transactions are Knex's
  new ConsumerHost({ db, amqpUrl, transactions: knexTx, consumers: [ormC] });
  // @ts-expect-error a Kysely consumer on a host whose transactions are Knex's
  new ConsumerHost({ db, amqpUrl, transactions: knexTx, consumers: [kyselyC] });
  // @ts-expect-error a Knex consumer on a host with Kysely transactions (no `transactions`)
  new ConsumerHost({ db, amqpUrl, consumers: [knexC] });
  // @ts-expect-error one consumer of the wrong kind among right ones
  new ConsumerHost({ db, amqpUrl, transactions: knexTx, consumers: [knexC, ormC] });
}

describe('ConsumerHost types', () => {
  it('builds hosts whose consumers fit their transaction handle', async () => {
    // The compile-time checks above are the test of the mismatches; the pairings they accept
    // must also build (the constructor checks every option and definition, connecting nothing).
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    const db = new Kysely<{ orders: { id: number } }>({ dialect: new PostgresDialect({ pool }) });
    const knexTx: ConsumerTransactions<Knex.Transaction> = { run: async () => {} };
    try {
      const amqpUrl = 'amqp://localhost';
      const hosts = [
        new ConsumerHost({ db, amqpUrl, consumers: [kyselyC, typedC] }),
        new ConsumerHost({ db, amqpUrl, transactions: knexTx, consumers: [knexC] }),
      ];
      for (const host of hosts) assert.ok(host instanceof ConsumerHost);
      assert.equal(typeof hostChecks, 'function');
    } finally {
      await db.destroy();
    }
  });
});

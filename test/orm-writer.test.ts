import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MikroORM } from '@mikro-orm/postgresql';
import { PrismaPg } from '@prisma/adapter-pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import knexFactory from 'knex';
import { DataSource } from 'typeorm';
import { drizzleTransaction } from '../src/drizzle/index.js';
import { NotInTransactionError } from '../src/errors/not-in-transaction-error.js';
import { knexTransaction } from '../src/knex/index.js';
import { mikroOrmTransaction } from '../src/mikro-orm/index.js';
import { clsTransaction } from '../src/nestjs-cls/index.js';
import { prismaTransaction } from '../src/prisma/index.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import type { PgQueryable } from '../src/sql/sql-executor.js';
import { typeormTransaction } from '../src/typeorm/index.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { openClsTypeOrm } from './support/cls-typeorm.js';
import { DATABASE_URL } from './support/env.js';
import { openOrmHandles } from './support/orm-handles.js';
import { PrismaClient } from './support/prisma/generated/client.js';
import { testRelay } from './support/relay-fixture.js';
import { payloadOf, TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/**
 * The writer joins the transaction of each ORM: a commit publishes the message, a rollback
 * leaves neither the business row nor the message, and a handle that would commit on its own is
 * refused before anything is written.
 */

/** One ORM: opens a transaction, hands the work the outbox's view of it and a business insert. */
interface Stack {
  transaction<T>(
    work: (outbox: () => PgQueryable, insertOrder: (id: number) => Promise<void>) => Promise<T>,
  ): Promise<T>;
  /** Joins what would commit on its own: the ORM's database object outside a transaction. */
  outside(): PgQueryable;
  close(): Promise<void>;
}

type StackFactory = (schema: string) => Promise<Stack>;

const insert = (schema: string, id: number) =>
  `INSERT INTO "${schema}".orders (id, total) VALUES (${id}, 1)`;

const stacks: Record<string, StackFactory> = {
  async typeorm(schema) {
    const dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
    return {
      transaction: (work) =>
        dataSource.transaction((manager) =>
          work(
            () => typeormTransaction(manager),
            async (id) => void (await manager.query(insert(schema, id))),
          ),
        ),
      outside: () => typeormTransaction(dataSource.manager),
      close: () => dataSource.destroy(),
    };
  },
  async 'typeorm query runner'(schema) {
    const dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
    return {
      async transaction(work) {
        const runner = dataSource.createQueryRunner();
        await runner.startTransaction();
        try {
          const result = await work(
            () => typeormTransaction(runner),
            async (id) => void (await runner.query(insert(schema, id))),
          );
          await runner.commitTransaction();
          return result;
        } catch (error) {
          await runner.rollbackTransaction();
          throw error;
        } finally {
          await runner.release();
        }
      },
      outside: () => typeormTransaction(dataSource.createQueryRunner()),
      close: () => dataSource.destroy(),
    };
  },
  async 'nestjs-cls with typeorm'(schema) {
    const { cls, txHost, close } = await openClsTypeOrm();
    return {
      // What `@Transactional()` does around a method.
      transaction: (work) =>
        cls.run(() =>
          txHost.withTransaction(() =>
            work(
              () => clsTransaction(txHost, typeormTransaction),
              async (id) => void (await txHost.tx.query(insert(schema, id))),
            ),
          ),
        ),
      outside: () => cls.run(() => clsTransaction(txHost, typeormTransaction)),
      close,
    };
  },
  async drizzle(schema) {
    const db = drizzle(DATABASE_URL);
    return {
      transaction: (work) =>
        db.transaction((tx) =>
          work(
            () => drizzleTransaction(tx),
            async (id) => void (await tx.execute(insert(schema, id))),
          ),
        ),
      // @ts-expect-error the database object has no `rollback`: TypeScript refuses it too.
      outside: () => drizzleTransaction(db),
      close: () => db.$client.end(),
    };
  },
  async knex(schema) {
    const knex = knexFactory({ client: 'pg', connection: DATABASE_URL });
    return {
      transaction: (work) =>
        knex.transaction((trx) =>
          work(
            () => knexTransaction(trx),
            async (id) => void (await trx.raw(insert(schema, id))),
          ),
        ),
      outside: () => knexTransaction(knex),
      close: () => knex.destroy(),
    };
  },
  async prisma(schema) {
    const prisma = new PrismaClient({
      adapter: new PrismaPg({ connectionString: DATABASE_URL }, { schema }),
    });
    return {
      transaction: (work) =>
        prisma.$transaction((tx) =>
          work(
            () => prismaTransaction(tx),
            async (id) => void (await tx.order.create({ data: { id, total: 1 } })),
          ),
        ),
      outside: () => prismaTransaction(prisma),
      close: () => prisma.$disconnect(),
    };
  },
  async 'mikro-orm'(schema) {
    const orm = await MikroORM.init({
      clientUrl: DATABASE_URL,
      entities: [],
      discovery: { warnWhenNoEntities: false },
    });
    return {
      transaction: (work) =>
        orm.em.fork().transactional((em) =>
          work(
            () => mikroOrmTransaction(em),
            async (id) => void (await em.execute(insert(schema, id))),
          ),
        ),
      outside: () => mikroOrmTransaction(orm.em.fork()),
      close: () => orm.close(),
    };
  },
};

describe('the writer in the transaction of an ORM', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  let relay: OutboxRelay;
  let exchange: string;
  let writer: OutboxWriter;
  let nextId = 0;
  before(async () => {
    t = await testDatabase('orm');
    await t.pool.query(`CREATE TABLE "${t.schema}".orders (id int PRIMARY KEY, total int)`);
    broker = await TestBroker.open();
    exchange = await broker.exchange('orders');
    writer = new OutboxWriter({ schema: t.schema });
    relay = testRelay(t);
    await relay.start();
  });
  after(async () => {
    await relay.stop();
    await broker.close();
    await t.close();
  });

  const orderExists = async (id: number) =>
    (await t.pool.query(`SELECT 1 FROM "${t.schema}".orders WHERE id = $1`, [id])).rowCount === 1;

  // Each has a `query()`, so it passed for a pg client: `dataSource.manager` wrote the row on
  // its own, and a failed business write after it left the message.
  it("refuses TypeORM's own handles outside a transaction, naming the adapter; takes them inside one", async () => {
    const dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
    const runner = dataSource.createQueryRunner();
    const write = (handle: unknown, routingKey: string) =>
      writer.add(handle as PgQueryable, { exchange, routingKey, payload: {} });
    const written = async (routingKey: string) =>
      (
        await t.pool.query(`SELECT 1 FROM "${t.schema}".outbox WHERE routing_key = $1`, [
          routingKey,
        ])
      ).rowCount;
    try {
      const before = await t.count();
      for (const [handle, kind] of [
        [dataSource.manager, 'EntityManager'],
        [dataSource, 'DataSource'],
        [runner, 'QueryRunner'],
      ] as const) {
        await assert.rejects(
          async () => write(handle, 'raw'),
          (error: unknown) => {
            assert.ok(error instanceof NotInTransactionError, `${kind}: ${String(error)}`);
            assert.match(error.message, new RegExp(`TypeORM ${kind} .*typeormTransaction\\(`));
            return true;
          },
        );
      }
      assert.equal(await t.count(), before, 'nothing written');
      // In a transaction, as they always were: the row goes with it.
      await runner.startTransaction();
      await write(runner, 'raw-runner');
      await runner.rollbackTransaction();
      assert.equal(await written('raw-runner'), 0, 'rolled back with the runner');
      await assert.rejects(
        dataSource.transaction(async (manager) => {
          await write(manager, 'raw-manager');
          throw new Error('business failure');
        }),
        /business failure/,
      );
      assert.equal(await written('raw-manager'), 0, 'rolled back with the manager');
    } finally {
      await runner.release();
      await dataSource.destroy();
    }
  });

  // TypeORM's runner says its transaction is open until the ROLLBACK is answered: an add not
  // awaited by the transaction's callback (a CQRS EventBus handler's) reached the connection
  // after the ROLLBACK and committed its row on its own.
  it('refuses a TypeORM add that would reach the connection after its ROLLBACK was sent', async () => {
    const dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
    try {
      let late: Promise<unknown> | undefined;
      await assert.rejects(
        dataSource.transaction(async (manager) => {
          await writer.add(typeormTransaction(manager), {
            exchange,
            routingKey: 'late-first',
            payload: {},
          });
          // Holds the connection, so that the ROLLBACK waits in pg's queue behind it.
          void manager.query('SELECT pg_sleep(0.3)').catch(() => {});
          await new Promise((resolve) => setTimeout(resolve, 30));
          setTimeout(() => {
            late = writer.add(typeormTransaction(manager), {
              exchange,
              routingKey: 'late-late',
              payload: {},
            });
            late.catch(() => {});
          }, 30);
          throw new Error('the command failed');
        }),
        /the command failed/,
      );
      await assert.rejects(late!, (error: unknown) => {
        assert.ok(error instanceof NotInTransactionError, String(error));
        assert.match(error.message, /told to commit or roll back|has ended/);
        return true;
      });
      const { rowCount } = await t.pool.query(
        `SELECT 1 FROM "${t.schema}".outbox WHERE routing_key LIKE 'late-%'`,
      );
      assert.equal(rowCount, 0, 'a row of the rolled-back transaction committed');
    } finally {
      await dataSource.destroy();
    }
  });

  it("names the adapter for an ORM's own transaction handle given without it", async () => {
    const orms = await openOrmHandles();
    const { knex, db, prisma, orm } = orms;
    const refusedNaming = async (handle: unknown, call: RegExp) =>
      assert.rejects(
        async () => writer.add(handle as PgQueryable, { exchange, routingKey: 'x', payload: {} }),
        (error: unknown) => {
          assert.ok(error instanceof NotInTransactionError, String(error));
          assert.match(error.message, call);
          return true;
        },
      );
    try {
      const before = await t.count();
      await knex.transaction((trx) =>
        refusedNaming(trx, /knexTransaction\(trx\).*outboxkit\/knex/),
      );
      await refusedNaming(knex, /knexTransaction\(trx\)/);
      await db.transaction((tx) =>
        refusedNaming(tx, /drizzleTransaction\(tx\).*outboxkit\/drizzle/),
      );
      await refusedNaming(db, /drizzleTransaction\(tx\)/);
      await prisma.$transaction((tx) =>
        refusedNaming(tx, /prismaTransaction\(tx\).*outboxkit\/prisma/),
      );
      await refusedNaming(prisma, /prismaTransaction\(tx\)/);
      await orm.em
        .fork()
        .transactional((em) =>
          refusedNaming(em, /mikroOrmTransaction\(em\).*outboxkit\/mikro-orm/),
        );
      assert.equal(await t.count(), before, 'nothing written');
    } finally {
      await orms.close();
    }
  });

  it('refuses what is not a handle at all with the typed error of each adapter, not a TypeError', () => {
    const adapters: Array<[string, (handle: never) => PgQueryable]> = [
      ['typeormTransaction', typeormTransaction],
      ['prismaTransaction', prismaTransaction],
      ['drizzleTransaction', drizzleTransaction],
      ['knexTransaction', knexTransaction],
      ['mikroOrmTransaction', mikroOrmTransaction],
    ];
    for (const [name, adapter] of adapters) {
      for (const handle of [undefined, null, 'tx', {}]) {
        assert.throws(
          () => adapter(handle as never),
          (error: unknown) => {
            assert.ok(
              error instanceof NotInTransactionError,
              `${name}(${String(handle)}): ${String(error)}`,
            );
            return true;
          },
        );
      }
    }
    // The MikroORM instance instead of its EntityManager: told apart, and told what to pass.
    const orm = { em: { fork: () => undefined } };
    assert.throws(() => mikroOrmTransaction(orm as never), /the MikroORM instance is not one/);
  });

  for (const [name, factory] of Object.entries(stacks)) {
    describe(name, () => {
      let stack: Stack;
      let queue: string;
      const routingKey = name.replaceAll(' ', '-');
      before(async () => {
        stack = await factory(t.schema);
        queue = await broker.queue(routingKey, exchange, routingKey);
      });
      after(() => stack.close());

      it('publishes the message once the transaction commits', async () => {
        const id = ++nextId;
        await stack.transaction(async (outbox, insertOrder) => {
          await insertOrder(id);
          await writer.add(outbox(), { exchange, routingKey, payload: { id } });
          // Several rows, an ordering key: the writer's other statements run in it too.
          await writer.addMany(outbox(), [
            { exchange, routingKey, payload: { id, n: 2 }, orderingKey: `o-${id}` },
            { exchange, routingKey, payload: { id, n: 3 }, orderingKey: `o-${id}` },
          ]);
        });
        assert.ok(await orderExists(id));
        await broker.waitForDepth(queue, 3);
        const payloads = (await broker.drain(queue)).map(payloadOf) as { n?: number }[];
        // Order is promised per ordering key only: the unkeyed message may go before or after.
        assert.deepEqual(
          payloads.filter((p) => p.n !== undefined),
          [
            { id, n: 2 },
            { id, n: 3 },
          ],
        );
        assert.deepEqual(
          payloads.filter((p) => p.n === undefined),
          [{ id }],
        );
      });

      it('writes neither the row nor the message when the transaction rolls back', async () => {
        const id = ++nextId;
        await assert.rejects(
          stack.transaction(async (outbox, insertOrder) => {
            await insertOrder(id);
            await writer.add(outbox(), { exchange, routingKey, payload: { id } });
            throw new Error('business failure');
          }),
          /business failure/,
        );
        assert.equal(await orderExists(id), false);
        const { rows } = await t.pool.query(
          `SELECT count(*)::int AS n FROM "${t.schema}".outbox WHERE routing_key = $1`,
          [routingKey],
        );
        assert.equal(rows[0].n, 0);
      });

      it('refuses a handle that would commit on its own', async () => {
        const before = await t.count();
        await assert.rejects(
          async () => writer.add(stack.outside(), { exchange, routingKey, payload: {} }),
          (error: unknown) =>
            error instanceof NotInTransactionError && error.code === 'not-in-transaction',
        );
        assert.equal(await t.count(), before);
      });

      // Drizzle does not tell when its transaction has ended (docs/orm.md): no such test for it.
      if (name === 'drizzle') return;
      it('refuses a handle kept past its transaction', async () => {
        const kept = await stack.transaction(async (outbox) => outbox);
        const before = await t.count();
        await assert.rejects(
          async () => writer.add(kept(), { exchange, routingKey, payload: {} }),
          (error: unknown) =>
            error instanceof NotInTransactionError &&
            // With nestjs-cls the handle is the ambient transaction, read again: it is outside one.
            (name === 'nestjs-cls with typeorm'
              ? /@Transactional\(\)/.test(error.message)
              : /transaction has ended/.test(error.message)),
        );
        assert.equal(await t.count(), before);
      });
    });
  }
});

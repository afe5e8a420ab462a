import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MikroORM } from '@mikro-orm/postgresql';
import { Inject, Injectable } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { PrismaPg } from '@prisma/adapter-pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import knexFactory from 'knex';
import type { ConsumerTransactions } from '../src/consumer/consumer-transactions.js';
import { drizzleConsumerTransactions, drizzleTransaction } from '../src/drizzle/index.js';
import { knexConsumerTransactions, knexTransaction } from '../src/knex/index.js';
import { mikroOrmConsumerTransactions, mikroOrmTransaction } from '../src/mikro-orm/index.js';
import {
  type ConsumeContext,
  defineMessage,
  OutboxHandler,
  OutboxModule,
  OutboxService,
} from '../src/nestjs/index.js';
import type { OutboxTransaction } from '../src/nestjs/outbox.service.js';
import { prismaConsumerTransactions, prismaTransaction } from '../src/prisma/index.js';
import { DATABASE_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { orderQueries } from './support/order-queries.js';
import { PrismaClient } from './support/prisma/generated/client.js';
import { waitFor } from './support/wait-for.js';

/**
 * OutboxModule with each ORM adapter but TypeORM and nestjs-cls (test/nestjs-orm.test.ts has
 * those): `OutboxService.add` with the ORM's writer adapter commits and rolls back with the
 * business write, and an `@OutboxHandler`'s writes through `context.tx` commit with its dedupe
 * row, or roll back with it when the handler fails.
 */

const quick = {
  queueType: 'classic',
  retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 100 } },
} as const;

interface Order {
  id: number;
  /** The handler throws on its first attempt, after its writes. */
  failFirst?: boolean;
}

/** One ORM: its consumer transactions, a transaction of its own, and a statement through a tx. */
interface Stack {
  readonly transactions: ConsumerTransactions<unknown>;
  /** Runs `statement` in a transaction of the ORM, then `add` with the ORM's writer adapter. */
  transaction<T>(statement: string, add: (trx: OutboxTransaction) => Promise<T>): Promise<T>;
  /** Runs a statement through a consumer's `context.tx`. */
  execute(tx: unknown, statement: string): Promise<void>;
  close(): Promise<void>;
}

const stacks: Record<string, () => Promise<Stack>> = {
  async prisma() {
    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: DATABASE_URL }) });
    type Tx = Parameters<Parameters<typeof prisma.$transaction>[0]>[0];
    return {
      transactions: prismaConsumerTransactions(prisma) as ConsumerTransactions<unknown>,
      transaction: (statement, add) =>
        prisma.$transaction(async (tx) => {
          await tx.$executeRawUnsafe(statement);
          return add(prismaTransaction(tx));
        }),
      execute: async (tx, statement) => void (await (tx as Tx).$executeRawUnsafe(statement)),
      close: () => prisma.$disconnect(),
    };
  },
  async drizzle() {
    const db = drizzle(DATABASE_URL);
    type Tx = Parameters<Parameters<typeof db.transaction>[0]>[0];
    return {
      transactions: drizzleConsumerTransactions(db) as ConsumerTransactions<unknown>,
      transaction: (statement, add) =>
        db.transaction(async (tx) => {
          await tx.execute(statement);
          return add(drizzleTransaction(tx));
        }),
      execute: async (tx, statement) => void (await (tx as Tx).execute(statement)),
      close: () => db.$client.end(),
    };
  },
  async knex() {
    const knex = knexFactory({ client: 'pg', connection: DATABASE_URL });
    type Tx = Parameters<Parameters<typeof knex.transaction>[0]>[0];
    return {
      transactions: knexConsumerTransactions(knex) as ConsumerTransactions<unknown>,
      transaction: (statement, add) =>
        knex.transaction(async (trx) => {
          await trx.raw(statement);
          return add(knexTransaction(trx));
        }),
      execute: async (tx, statement) => void (await (tx as Tx).raw(statement)),
      close: () => knex.destroy(),
    };
  },
  async 'mikro-orm'() {
    const orm = await MikroORM.init({
      clientUrl: DATABASE_URL,
      entities: [],
      discovery: { warnWhenNoEntities: false },
    });
    type Tx = typeof orm.em;
    return {
      transactions: mikroOrmConsumerTransactions(orm.em) as ConsumerTransactions<unknown>,
      transaction: (statement, add) =>
        orm.em.fork().transactional(async (em) => {
          await em.execute(statement);
          return add(mikroOrmTransaction(em));
        }),
      execute: async (tx, statement) => void (await (tx as Tx).execute(statement)),
      close: () => orm.close(),
    };
  },
};

describe('nestjs: OutboxModule with the Prisma, Drizzle, Knex and MikroORM adapters', () => {
  let f: NestFixture;
  let nextId = 0;
  before(async () => {
    f = await NestFixture.open('nadp');
    for (const table of [
      'orders (id int PRIMARY KEY)',
      'invoices (order_id int NOT NULL, attempt int NOT NULL)',
    ]) {
      await f.t.pool.query(`CREATE TABLE "${f.t.schema}".${table}`);
    }
  });
  after(() => f.close());

  const { count, attempts } = orderQueries(() => f);

  for (const [name, open] of Object.entries(stacks)) {
    describe(name, () => {
      const tag = name.replace(/[^a-z]/g, '');
      const OrderPlaced = defineMessage<Order>({
        exchange: `${tag}-orders`,
        routingKey: 'order.placed',
      });
      const STACK = Symbol('stack');

      @Injectable()
      class Orders {
        constructor(
          @Inject(OutboxService) private readonly outbox: OutboxService,
          @Inject(STACK) private readonly stack: Stack,
        ) {}

        /** The order and its message in one ORM transaction; `fail` rolls both back. */
        async place(order: Order, fail = false): Promise<string> {
          return this.stack.transaction(
            `INSERT INTO "${f.t.schema}".orders (id) VALUES (${order.id})`,
            async (trx) => {
              const messageId = await this.outbox.add(trx, OrderPlaced, order, {
                messageId: `${tag}-${order.id}`,
              });
              if (fail) throw new Error('business failure');
              return messageId;
            },
          );
        }
      }

      @Injectable()
      class Invoicing {
        constructor(@Inject(STACK) private readonly stack: Stack) {}

        @OutboxHandler(OrderPlaced, {
          ...quick,
          name: `${tag}.invoices`,
          businessKey: (o) => `${o.id}`,
        })
        async invoice(order: Order, ctx: ConsumeContext<unknown, unknown>): Promise<void> {
          await this.stack.execute(
            ctx.tx,
            `INSERT INTO "${f.t.schema}".invoices (order_id, attempt) VALUES (${order.id}, ${ctx.attempt})`,
          );
          if (order.failFirst && ctx.attempt === 1) throw new Error('first attempt fails');
        }
      }

      let stack: Stack;
      let app: TestingModule;
      let orders: Orders;
      before(async () => {
        stack = await open();
        app = await f.init(
          await Test.createTestingModule({
            imports: [OutboxModule.forRoot(f.options({ transactions: stack.transactions }))],
            providers: [{ provide: STACK, useValue: stack }, Orders, Invoicing],
          }).compile(),
        );
        orders = app.get(Orders);
      });
      after(async () => {
        await f.closeApp(app);
        await stack.close();
      });

      it("publishes what the ORM's transaction wrote, and the handler's writes commit with its dedupe row", async () => {
        const id = ++nextId;
        await orders.place({ id });
        await waitFor('the invoice', async () => (await attempts(id)).length === 1);
        assert.deepEqual(await attempts(id), [1]);
        assert.equal(
          await count('processed_messages', 'consumer = $1 AND business_key = $2', [
            f.name(`${tag}.invoices`),
            `${id}`,
          ]),
          1,
        );
      });

      it('writes neither the order nor its message when the transaction rolls back', async () => {
        const id = ++nextId;
        await assert.rejects(orders.place({ id }, true), /business failure/);
        assert.equal(await count('orders', 'id = $1', [id]), 0);
        assert.equal(await count('outbox', 'message_id = $1', [`${tag}-${id}`]), 0);
      });

      it("rolls a failed attempt's writes back with its dedupe row", async () => {
        const id = ++nextId;
        await orders.place({ id, failFirst: true });
        await waitFor('the retry', async () => (await attempts(id)).length > 0);
        const host = app.get(OutboxService).consumerHost!;
        await waitFor(
          'the retry counted',
          () => host.stats(f.name(`${tag}.invoices`)).failures >= 1,
        );
        assert.deepEqual(await attempts(id), [2]);
        assert.equal(
          await count('processed_messages', 'consumer = $1 AND business_key = $2', [
            f.name(`${tag}.invoices`),
            `${id}`,
          ]),
          1,
        );
      });
    });
  }
});

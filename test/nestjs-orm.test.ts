import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Inject, Injectable, Module } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { ClsPluginTransactional, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { ClsModule } from 'nestjs-cls';
import { DataSource, type EntityManager } from 'typeorm';
import { NotInTransactionError } from '../src/errors/not-in-transaction-error.js';
import {
  type ConsumeContext,
  defineMessage,
  OutboxHandler,
  OutboxModule,
  OutboxService,
} from '../src/nestjs/index.js';
import { clsOutbox } from '../src/nestjs-cls/index.js';
import { typeormConsumerTransactions, typeormTransaction } from '../src/typeorm/index.js';
import { DATABASE_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { orderQueries } from './support/order-queries.js';
import { waitFor } from './support/wait-for.js';

/**
 * OutboxModule with an ORM: `transactions` opens the handlers' transactions with TypeORM (the
 * handler writes through `context.tx`), and with nestjs-cls `OutboxService.add` joins the
 * ambient transaction of `@Transactional()`, in services and in handlers alike.
 */

/** The test schema, for the services' raw SQL. */
const SCHEMA = Symbol('schema');

const quick = {
  queueType: 'classic',
  retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 100 } },
} as const;

interface Order {
  id: number;
  /** The handler throws on its first attempt, after its writes. */
  failFirst?: boolean;
}

// --- TypeORM, without nestjs-cls --------------------------------------------------------------

const OrmOrderPlaced = defineMessage<Order>({ exchange: 'orm-orders', routingKey: 'order.placed' });

@Injectable()
class OrmOrders {
  constructor(
    @Inject(OutboxService) private readonly outbox: OutboxService,
    @Inject(DataSource) private readonly dataSource: DataSource,
    @Inject(SCHEMA) private readonly schema: string,
  ) {}

  /** Writes the order and its message in one TypeORM transaction; `fail` rolls both back. */
  async place(order: Order, fail = false): Promise<string> {
    let messageId = '';
    await this.dataSource.transaction(async (manager) => {
      await manager.query(`INSERT INTO "${this.schema}".orders (id) VALUES ($1)`, [order.id]);
      messageId = await this.outbox.add(typeormTransaction(manager), OrmOrderPlaced, order);
      if (fail) throw new Error('business failure');
    });
    return messageId;
  }
}

@Injectable()
class OrmInvoicing {
  constructor(@Inject(SCHEMA) private readonly schema: string) {}

  @OutboxHandler(OrmOrderPlaced, { ...quick, name: 'orm.invoices', businessKey: (o) => `${o.id}` })
  async invoice(order: Order, ctx: ConsumeContext<unknown, EntityManager>): Promise<void> {
    await ctx.tx.query(
      `INSERT INTO "${this.schema}".invoices (order_id, attempt) VALUES ($1, $2)`,
      [order.id, ctx.attempt],
    );
    if (order.failFirst && ctx.attempt === 1) throw new Error('first attempt fails');
  }
}

// --- TypeORM through nestjs-cls -----------------------------------------------------------------

const ClsOrderPlaced = defineMessage<Order>({ exchange: 'cls-orders', routingKey: 'order.placed' });
const ClsInvoiceIssued = defineMessage<{ orderId: number }>({
  exchange: 'cls-orders',
  routingKey: 'invoice.issued',
});

@Injectable()
class ClsOrders {
  constructor(
    @Inject(OutboxService) private readonly outbox: OutboxService,
    @Inject(TransactionHost) private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    @Inject(SCHEMA) private readonly schema: string,
  ) {}

  /** The order and its message in the ambient transaction: `add` is given none. */
  @Transactional()
  async place(order: Order, fail = false): Promise<string> {
    await this.txHost.tx.query(`INSERT INTO "${this.schema}".orders (id) VALUES ($1)`, [order.id]);
    const messageId = await this.outbox.add(ClsOrderPlaced, order);
    if (fail) throw new Error('business failure');
    return messageId;
  }
}

/** A service of the application's, unaware of outboxkit: it joins whatever transaction is ambient. */
@Injectable()
class ClsInvoices {
  constructor(
    @Inject(TransactionHost) private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    @Inject(SCHEMA) private readonly schema: string,
  ) {}

  @Transactional()
  async record(orderId: number, attempt: number): Promise<void> {
    await this.txHost.tx.query(
      `INSERT INTO "${this.schema}".invoices (order_id, attempt) VALUES ($1, $2)`,
      [-orderId, attempt],
    );
  }
}

@Injectable()
class ClsInvoicing {
  constructor(
    @Inject(OutboxService) private readonly outbox: OutboxService,
    @Inject(ClsInvoices) private readonly invoices: ClsInvoices,
    @Inject(TransactionHost) private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    @Inject(SCHEMA) private readonly schema: string,
  ) {}

  @OutboxHandler(ClsOrderPlaced, { ...quick, name: 'cls.invoices', businessKey: (o) => `${o.id}` })
  async invoice(order: Order, ctx: ConsumeContext<unknown, EntityManager>): Promise<void> {
    assert.equal(ctx.tx, this.txHost.tx, 'the context carries the ambient transaction');
    await this.invoices.record(order.id, ctx.attempt);
    await this.outbox.add(ClsInvoiceIssued, { orderId: order.id }, { causedBy: ctx });
    if (order.failFirst && ctx.attempt === 1) throw new Error('first attempt fails');
  }

  @OutboxHandler(ClsInvoiceIssued, { ...quick, name: 'cls.notices' })
  async notify(issued: { orderId: number }): Promise<void> {
    await this.txHost.tx.query(`INSERT INTO "${this.schema}".notices (order_id) VALUES ($1)`, [
      -issued.orderId,
    ]);
  }
}

describe('nestjs: OutboxModule with an ORM', () => {
  let f: NestFixture;
  let dataSource: DataSource;
  let nextId = 0;
  before(async () => {
    f = await NestFixture.open('norm');
    for (const table of [
      'orders (id int PRIMARY KEY)',
      'invoices (order_id int NOT NULL, attempt int NOT NULL)',
      'notices (order_id int NOT NULL)',
    ]) {
      await f.t.pool.query(`CREATE TABLE "${f.t.schema}".${table}`);
    }
    dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
  });
  after(async () => {
    await f.close();
    await dataSource.destroy();
  });

  const { count, attempts } = orderQueries(() => f);
  const outboxRows = (messageId: string) => count('outbox', 'message_id = $1', [messageId]);

  describe('TypeORM (transactions: typeormConsumerTransactions)', () => {
    let app: TestingModule;
    let orders: OrmOrders;
    before(async () => {
      @Module({
        providers: [
          { provide: DataSource, useValue: dataSource },
          { provide: SCHEMA, useValue: f.t.schema },
        ],
        exports: [DataSource, SCHEMA],
      })
      class DatabaseModule {}
      app = await f.init(
        await Test.createTestingModule({
          imports: [
            DatabaseModule,
            OutboxModule.forRoot(
              f.options({ transactions: typeormConsumerTransactions(dataSource) }),
            ),
          ],
          providers: [OrmOrders, OrmInvoicing],
        }).compile(),
      );
      orders = app.get(OrmOrders);
    });
    after(() => f.closeApp(app));

    it("publishes what a TypeORM transaction wrote, and the handler's writes commit with its dedupe row", async () => {
      const id = ++nextId;
      await orders.place({ id });
      await waitFor('the invoice', async () => (await attempts(id)).length === 1);
      assert.deepEqual(await attempts(id), [1]);
      const consumer = f.name('orm.invoices');
      assert.equal(
        await count('processed_messages', 'consumer = $1 AND business_key = $2', [
          consumer,
          `${id}`,
        ]),
        1,
      );
    });

    it('writes neither the order nor its message when the transaction rolls back', async () => {
      const id = ++nextId;
      let messageId = '';
      await assert.rejects(
        orders.place({ id }, true).then((m) => {
          messageId = m;
        }),
        /business failure/,
      );
      assert.equal(await count('orders', 'id = $1', [id]), 0);
      assert.equal(messageId, '');
    });

    it("rolls a failed attempt's writes back with its dedupe row", async () => {
      const id = ++nextId;
      await orders.place({ id, failFirst: true });
      await waitFor('the retry', async () => (await attempts(id)).length > 0);
      const host = app.get(OutboxService).consumerHost!;
      await waitFor('the retry counted', () => host.stats(f.name('orm.invoices')).failures >= 1);
      assert.deepEqual(await attempts(id), [2]);
    });

    it('refuses add without a transaction when the module has no ambient one', async () => {
      await assert.rejects(
        app.get(OutboxService).add(OrmOrderPlaced, { id: ++nextId }),
        (error: unknown) =>
          error instanceof NotInTransactionError &&
          /without one, and the module has no `ambientTransaction`/.test(error.message),
      );
    });
  });

  describe('nestjs-cls with TypeORM (clsOutbox)', () => {
    let app: TestingModule;
    let orders: ClsOrders;
    before(async () => {
      @Module({
        providers: [
          { provide: DataSource, useValue: dataSource },
          { provide: SCHEMA, useValue: f.t.schema },
        ],
        exports: [DataSource, SCHEMA],
      })
      class DatabaseModule {}
      app = await f.init(
        await Test.createTestingModule({
          imports: [
            DatabaseModule,
            ClsModule.forRoot({
              global: true,
              plugins: [
                new ClsPluginTransactional({
                  imports: [DatabaseModule],
                  adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }),
                }),
              ],
            }),
            OutboxModule.forRootAsync({
              inject: [TransactionHost],
              useFactory: (txHost: TransactionHost<TransactionalAdapterTypeOrm>) =>
                f.options({
                  ...clsOutbox(txHost, typeormTransaction, (level) => ({
                    isolationLevel: level.toUpperCase() as 'READ COMMITTED',
                  })),
                }),
            }),
          ],
          providers: [ClsOrders, ClsInvoices, ClsInvoicing],
        }).compile(),
      );
      orders = app.get(ClsOrders);
    });
    after(() => f.closeApp(app));

    it('add joins the ambient transaction, in a service and in a handler', async () => {
      const id = ++nextId;
      await orders.place({ id });
      // The handler's service wrote through the ambient transaction, and its `add` was
      // published after the handler's commit.
      await waitFor(
        'the notice',
        async () => (await count('notices', 'order_id = $1', [-id])) === 1,
      );
      assert.deepEqual(await attempts(-id), [1]);
    });

    it('rolls the order and its message back with the ambient transaction', async () => {
      const id = ++nextId;
      await assert.rejects(orders.place({ id }, true), /business failure/);
      assert.equal(await count('orders', 'id = $1', [id]), 0);
    });

    it("rolls a failed attempt's writes and messages back with its dedupe row", async () => {
      const id = ++nextId;
      await orders.place({ id, failFirst: true });
      await waitFor('the notice', async () => (await count('notices', 'order_id = $1', [-id])) > 0);
      assert.deepEqual(await attempts(-id), [2]);
      // One InvoiceIssued: the first attempt's rolled back with it. Its handler has had the
      // time the retry's took; a second notice would come from a second message.
      const host = app.get(OutboxService).consumerHost!;
      await waitFor('the queue drained', () => host.inFlight === 0);
      assert.equal(await count('notices', 'order_id = $1', [-id]), 1);
    });

    it('refuses add outside a transaction', async () => {
      const outbox = app.get(OutboxService);
      await assert.rejects(
        outbox.add(ClsOrderPlaced, { id: ++nextId }),
        (error: unknown) => error instanceof NotInTransactionError,
      );
      assert.equal(await outboxRows('none'), 0);
    });
  });
});

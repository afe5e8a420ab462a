import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, afterEach, before, describe, it } from 'node:test';
import { EntitySchema } from '@mikro-orm/core';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import type { ConsumerTransactions } from '../src/consumer/consumer-transactions.js';
import { NotInTransactionError } from '../src/errors/not-in-transaction-error.js';
import { mikroOrmConsumerTransactions, mikroOrmTransaction } from '../src/mikro-orm/index.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import {
  type Effect,
  effectEntity,
  MIKRO_ORM_MAJOR,
  MIKRO_ORM_VERSION,
  openMikroOrm,
} from './support/mikro-orm.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/**
 * What MikroORM 7 changed under the adapter, on the MikroORM installed (6 by default, 7 in CI's
 * LTS leg): entities the writer's transaction or a consumer's fork flushes commit or roll back
 * with the outbox and dedupe rows, handles whose transaction ended are refused, and so are a
 * timed-out handler's late statements through a nested transaction's EntityManager.
 */

interface Order {
  id: number;
  total: number;
}

const isRefusal = (error: unknown, message: RegExp) =>
  error instanceof NotInTransactionError && message.test(error.message);

describe(`MikroORM ${MIKRO_ORM_VERSION}: the writer`, () => {
  let t: TestDatabase;
  let orm: MikroORM;
  let writer: OutboxWriter;
  let OrderEntity: EntitySchema<Order>;
  let nextId = 0;
  before(async () => {
    t = await testDatabase('mkw');
    await t.pool.query(`CREATE TABLE "${t.schema}".orders (id int PRIMARY KEY, total int)`);
    OrderEntity = new EntitySchema<Order>({
      name: 'Order',
      tableName: 'orders',
      schema: t.schema,
      properties: { id: { type: 'number', primary: true }, total: { type: 'number' } },
    });
    orm = await openMikroOrm(DATABASE_URL, [OrderEntity]);
    writer = new OutboxWriter({ schema: t.schema });
  });
  after(async () => {
    await orm.close();
    await t.close();
  });

  const add = (em: EntityManager, id: number) =>
    writer.add(mikroOrmTransaction(em), { exchange: 'orders', routingKey: 'x', payload: { id } });
  const orderExists = async (id: number) =>
    (await t.pool.query(`SELECT 1 FROM "${t.schema}".orders WHERE id = $1`, [id])).rowCount === 1;

  it('joins the transaction context of the installed major version', async () => {
    assert.ok([6, 7].includes(MIKRO_ORM_MAJOR), `MikroORM ${MIKRO_ORM_VERSION}`);
    const context = await orm.em.fork().transactional(async (em) => em.getTransactionContext());
    if (MIKRO_ORM_MAJOR === 6) {
      assert.equal(typeof (context as { raw?: unknown }).raw, 'function', 'a Knex transaction');
    } else {
      // A Kysely ControlledTransaction, committed by now.
      assert.equal((context as { isCommitted?: unknown }).isCommitted, true);
    }
  });

  it('commits the outbox row with the entities flushed at the commit, or neither', async () => {
    const committed = ++nextId;
    const before = await t.count();
    await orm.em.fork().transactional(async (em) => {
      em.persist(em.create(OrderEntity, { id: committed, total: 1 }));
      await add(em, committed);
    });
    assert.ok(await orderExists(committed));
    assert.equal(await t.count(), before + 1);

    const rolledBack = ++nextId;
    await assert.rejects(
      orm.em.fork().transactional(async (em) => {
        em.persist(em.create(OrderEntity, { id: rolledBack, total: 1 }));
        await add(em, rolledBack);
        // Flushed, then rolled back: the entity's INSERT ran in the transaction.
        await em.flush();
        throw new Error('business failure');
      }),
      /business failure/,
    );
    assert.equal(await orderExists(rolledBack), false);
    assert.equal(await t.count(), before + 1);
  });

  for (const end of ['commit', 'rollback'] as const) {
    it(`refuses an EntityManager of begin() and its kept handle after ${end}()`, async () => {
      const before = await t.count();
      const em = orm.em.fork();
      await em.begin();
      const kept = mikroOrmTransaction(em);
      await writer.add(kept, { exchange: 'orders', routingKey: 'x', payload: {} });
      await em[end]();
      // The writer asks the handle before it writes: idle now.
      await assert.rejects(
        writer.add(kept, { exchange: 'orders', routingKey: 'x', payload: {} }),
        (error: unknown) => error instanceof NotInTransactionError,
      );
      // MikroORM dropped the context: the EntityManager is outside any transaction again.
      assert.throws(
        () => mikroOrmTransaction(em),
        (error: unknown) => isRefusal(error, /em\.begin\(\)/),
      );
      assert.equal(await t.count(), before + (end === 'commit' ? 1 : 0));
    });
  }

  it("writes through a nested transactional()'s EntityManager into the outer transaction", async () => {
    const before = await t.count();
    await assert.rejects(
      orm.em.fork().transactional(async (em) => {
        await em.transactional(async (nested) => add(nested, ++nextId));
        throw new Error('the outer transaction fails');
      }),
      /the outer transaction fails/,
    );
    assert.equal(await t.count(), before, 'rolled back with the outer transaction');
    await orm.em.fork().transactional(async (em) => {
      await em.transactional(async (nested) => add(nested, ++nextId));
    });
    assert.equal(await t.count(), before + 1);
  });
});

describe(`MikroORM ${MIKRO_ORM_VERSION}: a consumer`, () => {
  let f: ConsumerFixture;
  let orm: MikroORM;
  let EffectEntity: EntitySchema<Effect>;
  let transactions: ConsumerTransactions<unknown>;
  before(async () => {
    f = await ConsumerFixture.open('mkc');
    EffectEntity = effectEntity(f.t.schema);
    orm = await openMikroOrm(DATABASE_URL, [EffectEntity]);
    transactions = mikroOrmConsumerTransactions(orm.em) as ConsumerTransactions<unknown>;
  });
  afterEach(() => f.stopHosts());
  after(async () => {
    await orm.close();
    await f.close();
  });

  const run = async (
    suffix: string,
    handler: (tx: EntityManager, ctx: ConsumeContext<unknown, unknown>) => Promise<void>,
    overrides: Partial<ConsumerDefinition> = {},
  ) => {
    const definition = f.definition(
      suffix,
      ((_payload: unknown, ctx: ConsumeContext<unknown, unknown>) =>
        handler(ctx.tx as EntityManager, ctx)) as unknown as ConsumerDefinition['handler'],
      { routingKeys: [suffix], ...overrides },
    );
    const host = await f.host([definition], { transactions });
    return { host, consumer: definition.name };
  };
  const attemptsOf = async (consumer: string) =>
    (await f.effects()).filter((e) => e.consumer === consumer).map((e) => e.attempt);
  const effect = (ctx: ConsumeContext<unknown, unknown>): Effect => ({
    consumer: ctx.consumer,
    key: ctx.businessKey,
    attempt: ctx.attempt,
  });

  it('flushes the entities the handler persisted with its dedupe row, or rolls both back', async () => {
    const { host, consumer } = await run('persisted', async (tx, ctx) => {
      // Not flushed by the handler: the adapter flushes the fork before its commit.
      tx.persist(tx.create(EffectEntity, effect(ctx)));
      if (ctx.attempt === 1) throw new Error('first attempt fails after its persist');
    });
    await f.publish('persisted', { n: 1 }, { messageId: 'persisted-m1' });
    await waitFor('the retry handled', () => host.stats(consumer).handled === 1);
    assert.equal(host.stats(consumer).failures, 1);
    assert.equal(host.stats(consumer).duplicates, 0, 'the first attempt left no dedupe row');
    assert.deepEqual(await attemptsOf(consumer), [2]);
  });

  it("refuses a timed-out handler's late statement through a nested transaction's EntityManager", async () => {
    let late: unknown;
    const insert = (ctx: ConsumeContext<unknown, unknown>) =>
      `INSERT INTO "${f.t.schema}".effects (consumer, key, attempt)
       VALUES ('${ctx.consumer}', '${ctx.businessKey}', ${ctx.attempt})`;
    const { host, consumer } = await run(
      'nested-late',
      async (tx, ctx) => {
        if (ctx.attempt > 1) {
          await tx.execute(insert(ctx));
          return;
        }
        // A savepoint's EntityManager, kept past its nested transaction.
        let nested!: EntityManager;
        await tx.transactional(async (em) => {
          nested = em;
        });
        await once(ctx.signal, 'abort');
        await waitFor('the rollback over', () => host.stats(consumer).timeouts === 1);
        late = await nested.execute(insert(ctx)).then(
          () => 'committed on its own',
          (error: unknown) => error,
        );
      },
      { timeoutMs: 500 },
    );
    await f.publish('nested-late', { n: 1 }, { messageId: 'nested-late-m1' });
    await waitFor('the retry handled', () => host.stats(consumer).handled === 1, 20_000);
    await waitFor('the late statement tried', () => late !== undefined);
    assert.ok(late instanceof Error, `the late statement was refused, got ${String(late)}`);
    assert.deepEqual(await attemptsOf(consumer), [2]);
  });
});

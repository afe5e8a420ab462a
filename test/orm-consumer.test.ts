import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, afterEach, before, describe, it } from 'node:test';
import { MikroORM } from '@mikro-orm/postgresql';
import { PrismaPg } from '@prisma/adapter-pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import knexFactory from 'knex';
import { DataSource } from 'typeorm';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import type { ConsumerTransactions } from '../src/consumer/consumer-transactions.js';
import { TransactionAbortedError } from '../src/consumer/transaction-aborted-error.js';
import { drizzleConsumerTransactions } from '../src/drizzle/index.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { StartupError } from '../src/errors/startup-error.js';
import { knexConsumerTransactions } from '../src/knex/index.js';
import { mikroOrmConsumerTransactions } from '../src/mikro-orm/index.js';
import { clsConsumerTransactions } from '../src/nestjs-cls/index.js';
import { prismaConsumerTransactions } from '../src/prisma/index.js';
import { typeormConsumerTransactions, typeormTransaction } from '../src/typeorm/index.js';
import { openClsTypeOrm } from './support/cls-typeorm.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { openOrmHandles } from './support/orm-handles.js';
import { PrismaClient } from './support/prisma/generated/client.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

/**
 * A consumer whose transactions an ORM opens: the handler writes with the ORM's own handle
 * (`context.tx`) in the transaction that holds its dedupe row. Its writes and the dedupe row
 * commit or roll back together (a handler error, a time-out), and a duplicate has its effect
 * once.
 */

/** One ORM: the consumer transactions, and how a handler writes an effect row and runs SQL. */
interface Stack {
  readonly transactions: ConsumerTransactions<unknown>;
  /** Inserts (consumer, key, attempt) into the effects table through `tx`. */
  insertEffect(tx: unknown, consumer: string, key: string, attempt: number): Promise<void>;
  /** Runs a statement through `tx` (a long `pg_sleep`, for the time-out). */
  execute(tx: unknown, statement: string): Promise<void>;
  close(): Promise<void>;
}

type StackFactory = (schema: string) => Promise<Stack>;

const effect = (schema: string, consumer: string, key: string, attempt: number) =>
  `INSERT INTO "${schema}".effects (consumer, key, attempt) VALUES ('${consumer}', '${key}', ${attempt})`;

/** A Knex stack; `postProcessResponse` is Knex's hook on every result, raw ones too. */
async function knexStack(
  schema: string,
  postProcessResponse?: (result: unknown) => unknown,
): Promise<Stack> {
  const knex = knexFactory({
    client: 'pg',
    connection: DATABASE_URL,
    ...(postProcessResponse && { postProcessResponse }),
  });
  type Tx = Parameters<Parameters<typeof knex.transaction>[0]>[0];
  return {
    transactions: knexConsumerTransactions(knex),
    insertEffect: async (tx, consumer, key, attempt) =>
      void (await (tx as Tx)
        .withSchema(schema)
        .table('effects')
        .insert({ consumer, key, attempt })),
    execute: async (tx, statement) => void (await (tx as Tx).raw(statement)),
    close: () => knex.destroy(),
  };
}

/** Knex's documented camel-casing of result columns, raw results' rows included. */
function camelCasedResults(result: unknown): unknown {
  const toCamel = (row: Record<string, unknown>) =>
    Object.fromEntries(
      Object.entries(row).map(([k, v]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), v]),
    );
  if (Array.isArray(result)) return result.map(toCamel);
  const raw = result as { rows?: unknown } | undefined;
  return Array.isArray(raw?.rows) ? { ...raw, rows: raw.rows.map(toCamel) } : result;
}

const stacks: Record<string, StackFactory> = {
  async typeorm(schema) {
    const dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
    const transactions = typeormConsumerTransactions(dataSource);
    type Tx = typeof dataSource.manager;
    return {
      transactions,
      insertEffect: async (tx, consumer, key, attempt) => {
        await (tx as Tx).query(
          `INSERT INTO "${schema}".effects (consumer, key, attempt) VALUES ($1, $2, $3)`,
          [consumer, key, attempt],
        );
      },
      execute: async (tx, statement) => void (await (tx as Tx).query(statement)),
      close: () => dataSource.destroy(),
    };
  },
  async drizzle(schema) {
    const db = drizzle(DATABASE_URL);
    const transactions = drizzleConsumerTransactions(db);
    type Tx = Parameters<Parameters<typeof db.transaction>[0]>[0];
    return {
      transactions,
      insertEffect: async (tx, consumer, key, attempt) =>
        void (await (tx as Tx).execute(effect(schema, consumer, key, attempt))),
      execute: async (tx, statement) => void (await (tx as Tx).execute(statement)),
      close: () => db.$client.end(),
    };
  },
  knex: (schema) => knexStack(schema),
  'knex with camel-cased results': (schema) => knexStack(schema, camelCasedResults),
  async prisma(schema) {
    const prisma = new PrismaClient({
      adapter: new PrismaPg({ connectionString: DATABASE_URL }, { schema }),
    });
    const transactions = prismaConsumerTransactions(prisma);
    type Tx = Parameters<Parameters<typeof prisma.$transaction>[0]>[0];
    return {
      transactions,
      insertEffect: async (tx, consumer, key, attempt) =>
        void (await (tx as Tx).$executeRawUnsafe(
          `INSERT INTO "${schema}".effects (consumer, key, attempt) VALUES ($1, $2, $3)`,
          consumer,
          key,
          attempt,
        )),
      execute: async (tx, statement) => void (await (tx as Tx).$queryRawUnsafe(statement)),
      close: () => prisma.$disconnect(),
    };
  },
  async 'mikro-orm'(schema) {
    const orm = await MikroORM.init({
      clientUrl: DATABASE_URL,
      entities: [],
      discovery: { warnWhenNoEntities: false },
    });
    const transactions = mikroOrmConsumerTransactions(orm.em);
    type Tx = typeof orm.em;
    return {
      transactions,
      insertEffect: async (tx, consumer, key, attempt) =>
        void (await (tx as Tx).execute(effect(schema, consumer, key, attempt))),
      execute: async (tx, statement) => void (await (tx as Tx).execute(statement)),
      close: () => orm.close(),
    };
  },
  async 'nestjs-cls with typeorm'(schema) {
    const { txHost, close } = await openClsTypeOrm();
    const transactions = clsConsumerTransactions(txHost, typeormTransaction, (level) => ({
      isolationLevel: level.toUpperCase() as 'READ COMMITTED',
    }));
    return {
      transactions,
      // The ambient transaction, not `tx`: what a service the handler calls would use.
      insertEffect: async (tx, consumer, key, attempt) => {
        assert.equal(tx, txHost.tx);
        await txHost.tx.query(
          `INSERT INTO "${schema}".effects (consumer, key, attempt) VALUES ($1, $2, $3)`,
          [consumer, key, attempt],
        );
      },
      execute: async (_tx, statement) => void (await txHost.tx.query(statement)),
      close,
    };
  },
};

describe('a consumer in the transaction of an ORM', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('ormc');
  });
  afterEach(() => f.stopHosts());
  after(() => f.close());

  it('refuses a `transactions` option that is no adapter', () => {
    assert.throws(
      () =>
        new ConsumerHost({
          db: f.t.db,
          amqpUrl: AMQP_URL,
          consumers: [],
          transactions: {} as unknown as ConsumerTransactions<unknown>,
        }),
      (error: unknown) => error instanceof ConfigurationError && error.option === 'transactions',
    );
  });

  const processedKeys = async (consumer: string): Promise<string[]> => {
    const { rows } = await f.t.pool.query<{ business_key: string }>(
      `SELECT business_key FROM "${f.t.schema}".processed_messages WHERE consumer = $1 ORDER BY business_key`,
      [consumer],
    );
    return rows.map((r) => r.business_key);
  };
  const effectsOf = async (consumer: string) =>
    (await f.effects()).filter((e) => e.consumer === consumer);

  for (const [name, factory] of Object.entries(stacks)) {
    describe(name, () => {
      let stack: Stack;
      const slug = name.replaceAll(' ', '-');
      before(async () => {
        stack = await factory(f.t.schema);
      });
      after(() => stack.close());

      /** A consumer on its own routing key, run by a host with the stack's transactions. */
      const run = async (
        suffix: string,
        handler: (payload: unknown, ctx: ConsumeContext<unknown, unknown>) => Promise<void>,
        overrides: Partial<ConsumerDefinition<unknown, unknown, unknown>> = {},
      ): Promise<{ host: ConsumerHost; consumer: string; routingKey: string }> => {
        const routingKey = `${slug}-${suffix}`;
        const definition = f.definition(
          routingKey,
          handler as unknown as ConsumerDefinition['handler'],
          {
            routingKeys: [routingKey],
            ...(overrides as Partial<ConsumerDefinition>),
          },
        );
        const host = await f.host([definition], { transactions: stack.transactions });
        return { host, consumer: definition.name, routingKey };
      };

      it("commits the handler's writes with its dedupe row, and acks after", async () => {
        let sawTx = false;
        const { host, consumer, routingKey } = await run('commit', async (_payload, ctx) => {
          sawTx = ctx.tx !== undefined && ctx.trx === undefined;
          await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
        });
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the message handled', () => host.stats(consumer).handled === 1);
        assert.ok(sawTx, 'the context carries the ORM handle as tx, and no Kysely trx');
        assert.deepEqual(
          (await effectsOf(consumer)).map((e) => e.key),
          [`${routingKey}-m1`],
        );
        assert.deepEqual(await processedKeys(consumer), [`${routingKey}-m1`]);
        await waitFor('the queue empty and acked', async () => (await f.depth(consumer)) === 0);
      });

      it("rolls the handler's writes and its dedupe row back together when it throws", async () => {
        const { host, consumer, routingKey } = await run('rollback', async (_payload, ctx) => {
          await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
          if (ctx.attempt === 1) throw new Error('first attempt fails after its write');
        });
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the retry handled', () => host.stats(consumer).handled === 1);
        const stats = host.stats(consumer);
        assert.equal(stats.failures, 1);
        assert.equal(stats.duplicates, 0, 'the first attempt left no dedupe row behind');
        // The first attempt's write rolled back with its dedupe row; the retry's committed.
        assert.deepEqual(
          (await effectsOf(consumer)).map((e) => e.attempt),
          [2],
        );
        assert.deepEqual(await processedKeys(consumer), [`${routingKey}-m1`]);
      });

      it('retries a handler that swallowed the failure of one of its statements', async () => {
        // Postgres answers the COMMIT of the aborted transaction with ROLLBACK, not an error.
        const { host, consumer, routingKey } = await run('swallow', async (_payload, ctx) => {
          await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
          if (ctx.attempt === 1) await stack.execute(ctx.tx, 'SELECT 1 / 0').catch(() => {});
        });
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the retry handled', () => host.stats(consumer).handled === 1);
        assert.equal(host.stats(consumer).failures, 1);
        assert.ok(host.lastFailure(consumer)?.error instanceof TransactionAbortedError);
        assert.deepEqual(
          (await effectsOf(consumer)).map((e) => e.attempt),
          [2],
        );
        assert.deepEqual(await processedKeys(consumer), [`${routingKey}-m1`]);
      });

      it('rolls back a timed-out handler stuck in a statement, then retries it', async () => {
        const { host, consumer, routingKey } = await run(
          'timeout',
          async (_payload, ctx) => {
            await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
            // Cancelled from another connection when the time is up.
            if (ctx.attempt === 1) await stack.execute(ctx.tx, 'SELECT pg_sleep(30)');
          },
          { timeoutMs: 1000 },
        );
        const started = Date.now();
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the retry handled', () => host.stats(consumer).handled === 1, 20_000);
        assert.ok(Date.now() - started < 15_000, 'the stuck statement was cancelled');
        assert.equal(host.stats(consumer).timeouts, 1);
        assert.deepEqual(
          (await effectsOf(consumer)).map((e) => e.attempt),
          [2],
        );
        assert.deepEqual(await processedKeys(consumer), [`${routingKey}-m1`]);
      });

      it("refuses a timed-out handler's statements once its transaction is given up", async () => {
        let late: unknown;
        const { host, consumer, routingKey } = await run(
          'late',
          async (_payload, ctx) => {
            if (ctx.attempt > 1) {
              await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
              return;
            }
            await once(ctx.signal, 'abort');
            await waitFor('the rollback over', () => host.stats(consumer).timeouts === 1);
            late = await stack
              .insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt)
              .then(
                () => 'committed on its own',
                (error: unknown) => error,
              );
          },
          { timeoutMs: 500 },
        );
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the retry handled', () => host.stats(consumer).handled === 1, 20_000);
        await waitFor('the late statement tried', () => late !== undefined);
        assert.ok(late instanceof Error, `the late statement was refused, got ${String(late)}`);
        assert.deepEqual(
          (await effectsOf(consumer)).map((e) => e.attempt),
          [2],
        );
      });

      it('has the effect of a duplicate delivery once', async () => {
        const { host, consumer, routingKey } = await run('duplicate', async (_payload, ctx) => {
          await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
        });
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the first copy handled', () => host.stats(consumer).handled === 1);
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the second copy skipped', () => host.stats(consumer).duplicates === 1);
        assert.equal(host.stats(consumer).handled, 1);
        assert.equal((await effectsOf(consumer)).length, 1);
      });

      it('retries in place the serialization failures of overlapping copies (serializable)', async () => {
        let host!: ConsumerHost;
        const consumer = f.name(`${slug}-overlap`);
        ({ host } = await run(
          'overlap',
          async (_payload, ctx) => {
            // Holds the first copy until the other two wait for its key in their claims.
            await waitFor('two claims waiting for the key', async () => {
              const { rows } = await f.t.pool.query<{ n: number }>(
                `SELECT count(*)::int AS n FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND query LIKE $1`,
                [`%${f.t.schema}%processed_messages%`],
              );
              return rows[0]!.n >= 2;
            });
            await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
          },
          { concurrency: 4, prefetch: 8, isolationLevel: 'serializable' },
        ));
        const routingKey = `${slug}-overlap`;
        for (let i = 0; i < 3; i++) {
          await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        }
        await waitFor('all three settled', () => {
          const s = host.stats(consumer);
          return s.handled + s.duplicates === 3;
        });
        const stats = host.stats(consumer);
        assert.equal(stats.handled, 1);
        assert.equal(stats.duplicates, 2);
        assert.equal(stats.failures, 0, 'no conflict counted as an attempt');
        assert.ok(stats.serializationRetries >= 1, `${stats.serializationRetries} retries`);
        assert.equal((await effectsOf(consumer)).length, 1);
      });

      it('runs batches: duplicates inside and across batches have one effect each', async () => {
        const { host, consumer, routingKey } = await run(
          'batched',
          async (_payload, ctx) => {
            await stack.insertEffect(ctx.tx, ctx.consumer, ctx.businessKey, ctx.attempt);
          },
          { concurrency: 2, batchSize: 10 },
        );
        const ids = Array.from({ length: 40 }, (_, i) => `${routingKey}-b${i}`);
        await f.publishMany(
          [...ids, ...[...ids].reverse()].map((id) => ({
            routingKey,
            content: { id },
            options: { messageId: id },
          })),
        );
        await waitFor('80 settled', () => {
          const s = host.stats(consumer);
          return s.handled + s.duplicates === 80;
        });
        const effects = await effectsOf(consumer);
        assert.equal(effects.length, 40);
        assert.equal(new Set(effects.map((e) => e.key)).size, 40);
        const stats = host.stats(consumer);
        assert.ok(stats.batches > 0, 'some transactions held several deliveries');
        assert.equal(stats.batchFallbacks, 0);
      });
    });
  }
});

/**
 * The ORMs whose adapters tell a failed ROLLBACK from the handler's error, through a proxy.
 * Prisma and the CLS adapters cannot: docs/orm.md says so.
 */
const proxied: Record<string, (url: string) => Promise<Stack>> = {
  async typeorm(url) {
    const dataSource = await new DataSource({ type: 'postgres', url }).initialize();
    type Tx = typeof dataSource.manager;
    return {
      transactions: typeormConsumerTransactions(dataSource),
      insertEffect: async () => {},
      execute: async (tx, statement) => void (await (tx as Tx).query(statement)),
      close: () => dataSource.destroy(),
    };
  },
  async drizzle(url) {
    const db = drizzle(url);
    // What an application needs anyway: a checked-out client whose link breaks emits 'error'.
    db.$client.on('connect', (client) => client.on('error', () => {}));
    type Tx = Parameters<Parameters<typeof db.transaction>[0]>[0];
    return {
      transactions: drizzleConsumerTransactions(db),
      insertEffect: async () => {},
      execute: async (tx, statement) => void (await (tx as Tx).execute(statement)),
      close: () => db.$client.end(),
    };
  },
  async knex(url) {
    const knex = knexFactory({ client: 'pg', connection: url });
    type Tx = Parameters<Parameters<typeof knex.transaction>[0]>[0];
    return {
      transactions: knexConsumerTransactions(knex),
      insertEffect: async () => {},
      execute: async (tx, statement) => void (await (tx as Tx).raw(statement)),
      close: () => knex.destroy(),
    };
  },
  async 'mikro-orm'(url) {
    const orm = await MikroORM.init({
      clientUrl: url,
      entities: [],
      discovery: { warnWhenNoEntities: false },
    });
    type Tx = typeof orm.em;
    return {
      transactions: mikroOrmConsumerTransactions(orm.em),
      insertEffect: async () => {},
      execute: async (tx, statement) => void (await (tx as Tx).execute(statement)),
      close: () => orm.close(),
    };
  },
};

describe('a consumer in the transaction of an ORM: the connection lost under a handler', () => {
  let f: ConsumerFixture;
  let proxy: TcpProxy;
  before(async () => {
    f = await ConsumerFixture.open('ormo');
    const { hostname, port } = new URL(DATABASE_URL);
    proxy = await TcpProxy.start(hostname, Number(port || 5432));
  });
  afterEach(() => f.stopHosts());
  after(async () => {
    await f.close();
    await proxy.close();
  });

  for (const [name, factory] of Object.entries(proxied)) {
    it(`${name}: is a database outage, retried in place without counting an attempt`, async () => {
      const stack = await factory(proxy.url(DATABASE_URL));
      try {
        const routingKey = `${name}-outage`;
        let calls = 0;
        const definition = f.definition(
          routingKey,
          (async (_payload: unknown, ctx: ConsumeContext<unknown, unknown>) => {
            calls += 1;
            if (calls === 1) {
              // The link breaks under the handler: its statement fails, and so does the ROLLBACK.
              proxy.resetAll();
              await stack.execute(ctx.tx, 'SELECT 1');
            }
            await stack.execute(
              ctx.tx,
              `INSERT INTO "${f.t.schema}".effects (consumer, key, attempt)
               VALUES ('${ctx.consumer}', '${ctx.businessKey}', ${ctx.attempt})`,
            );
          }) as unknown as ConsumerDefinition['handler'],
          { routingKeys: [routingKey] },
        );
        const host = await f.host([definition], { transactions: stack.transactions });
        await f.publish(routingKey, { n: 1 }, { messageId: `${routingKey}-m1` });
        await waitFor('the message handled', () => host.stats(definition.name).handled === 1);
        const stats = host.stats(definition.name);
        assert.equal(stats.failures, 0, 'the lost connection was not charged to the message');
        assert.ok(stats.databaseRetries >= 1, `${stats.databaseRetries} database retries`);
        const effects = (await f.effects()).filter((e) => e.consumer === definition.name);
        assert.deepEqual(
          effects.map((e) => e.attempt),
          [1],
        );
      } finally {
        await f.stopHosts();
        await stack.close();
      }
    });
  }
});

describe("a consumer in Prisma's transaction: Prisma's own timeout", () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('ormp');
  });
  afterEach(() => f.stopHosts());
  after(() => f.close());

  it("gives a batch the consumer's timeoutMs for the claim and for each of its handlers", async () => {
    const prisma = new PrismaClient({
      adapter: new PrismaPg({ connectionString: DATABASE_URL }, { schema: f.t.schema }),
    });
    // Prisma's `timeout` of each transaction the adapter opens, with the batch it ran.
    const opened: Array<{ timeout: number; handlers: number }> = [];
    let handlers = 0;
    const recording = {
      $transaction: (
        work: Parameters<typeof prisma.$transaction>[0],
        options: { timeout: number },
      ) =>
        prisma.$transaction(async (tx) => {
          handlers = 0;
          const result = await work(tx);
          opened.push({ timeout: options.timeout, handlers });
          return result;
        }, options),
      $disconnect: () => prisma.$disconnect(),
    } as unknown as typeof prisma;
    try {
      const definition = f.definition(
        'prisma-batch',
        async () => {
          handlers += 1;
        },
        { routingKeys: ['prisma-batch'], batchSize: 10, concurrency: 1, timeoutMs: 1000 },
      );
      const host = await f.host([definition], {
        transactions: prismaConsumerTransactions(recording),
      });
      await f.publishMany(
        Array.from({ length: 40 }, (_, i) => ({
          routingKey: 'prisma-batch',
          content: { i },
          options: { messageId: `p${i}` },
        })),
      );
      await waitFor('40 handled', () => host.stats(definition.name).handled === 40);
      const batches = opened.filter((o) => o.handlers > 1);
      assert.ok(batches.length > 0, 'some transactions held several handlers');
      for (const { timeout, handlers: n } of opened) {
        assert.ok(timeout >= (n + 1) * 1000 + 10_000, `timeout ${timeout} for ${n} handlers`);
      }
    } finally {
      await prisma.$disconnect();
    }
  });
});

describe('a consumer in the transaction of an ORM that is not ready', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('ormr');
  });
  afterEach(() => f.stopHosts());
  after(() => f.close());

  it("refuses at start an adapter whose ORM cannot open a transaction (TypeORM's DataSource not initialized)", async () => {
    const dataSource = new DataSource({ type: 'postgres', url: DATABASE_URL });
    const definition = f.definition('not-initialized', f.recordEffect, {
      routingKeys: ['not-initialized'],
    });
    await assert.rejects(
      f.host([definition], { transactions: typeormConsumerTransactions(dataSource) }),
      (error: unknown) => {
        assert.ok(error instanceof StartupError, String(error));
        assert.equal(error.code, 'orm-transaction-failed');
        assert.match(error.message, /could not open a transaction: .*dataSource\.initialize\(\)/s);
        return true;
      },
    );
  });

  it('retries in place, without counting attempts, a transaction the ORM cannot begin (closed before the host stopped)', async () => {
    const dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
    try {
      const definition = f.definition(
        'closed-orm',
        (async (_payload: unknown, ctx: ConsumeContext<unknown, unknown>) => {
          await (ctx.tx as DataSource['manager']).query(
            effect(f.t.schema, ctx.consumer, ctx.businessKey, ctx.attempt),
          );
        }) as unknown as ConsumerDefinition['handler'],
        {
          routingKeys: ['closed-orm'],
          retry: { maxAttempts: 2, backoff: { initialMs: 20, maxMs: 200 } },
        },
      );
      const host = await f.host([definition], {
        transactions: typeormConsumerTransactions(dataSource),
      });
      await dataSource.destroy();
      await f.publish('closed-orm', { n: 1 }, { messageId: 'closed-orm-m1' });
      await waitFor(
        'retries of the transaction',
        () => host.stats(definition.name).databaseRetries >= 3,
      );
      const stats = host.stats(definition.name);
      assert.equal(stats.failures, 0, 'not charged to the message');
      assert.equal(stats.deadLettered, 0);
      // Once the ORM is back, the message is handled, once, at its first attempt.
      await dataSource.initialize();
      await waitFor('the message handled', () => host.stats(definition.name).handled === 1);
      const effects = (await f.effects()).filter((e) => e.consumer === definition.name);
      assert.deepEqual(
        effects.map((e) => e.attempt),
        [1],
      );
    } finally {
      await f.stopHosts();
      if (dataSource.isInitialized) await dataSource.destroy();
    }
  });

  it("refuses what an adapter's entry point cannot open transactions with, naming what to pass", async () => {
    const dataSource = await new DataSource({ type: 'postgres', url: DATABASE_URL }).initialize();
    const orms = await openOrmHandles();
    const { knex, db, prisma, orm } = orms;
    const refused = (make: () => unknown, pattern: RegExp) =>
      assert.throws(make, (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.equal(error.option, 'transactions');
        assert.match(error.message, pattern);
        return true;
      });
    try {
      for (const nothing of [undefined, null, 'orm']) {
        refused(
          () => typeormConsumerTransactions(nothing as never),
          /typeormConsumerTransactions takes the `DataSource`/,
        );
        refused(() => knexConsumerTransactions(nothing as never), /knexConsumerTransactions takes/);
        refused(
          () => drizzleConsumerTransactions(nothing as never),
          /drizzleConsumerTransactions takes/,
        );
        refused(
          () => prismaConsumerTransactions(nothing as never),
          /prismaConsumerTransactions takes/,
        );
        refused(
          () => mikroOrmConsumerTransactions(nothing as never),
          /mikroOrmConsumerTransactions takes/,
        );
      }
      refused(
        () => typeormConsumerTransactions(dataSource.manager as never),
        /not its `manager`.*got an object without `createQueryRunner\(\)`/,
      );
      refused(
        () => mikroOrmConsumerTransactions(orm as never),
        /`orm\.em`, not the MikroORM instance/,
      );
      await knex.transaction(async (trx) => {
        refused(() => knexConsumerTransactions(trx as never), /not a transaction's `trx`/);
      });
      await db.transaction(async (tx) => {
        refused(() => drizzleConsumerTransactions(tx as never), /not a transaction's `tx`/);
      });
      await prisma.$transaction(async (tx) => {
        refused(() => prismaConsumerTransactions(tx as never), /not a transaction's `tx`/);
      });
    } finally {
      await dataSource.destroy();
      await orms.close();
    }
  });
});

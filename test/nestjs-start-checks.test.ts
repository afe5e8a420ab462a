import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type BeforeApplicationShutdown,
  Injectable,
  type OnApplicationShutdown,
} from '@nestjs/common';
import type { DiscoveryService, LazyModuleLoader } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import type { HandlerExplorer } from '../src/nestjs/handler-explorer.js';
import { defineMessage } from '../src/nestjs/message-definition.js';
import { OutboxModule } from '../src/nestjs/outbox.module.js';
import { OutboxService } from '../src/nestjs/outbox.service.js';
import { OutboxHandler } from '../src/nestjs/outbox-handler.decorator.js';
import { OutboxRegistrar } from '../src/nestjs/outbox-registrar.js';
import { OutboxRuntime } from '../src/nestjs/outbox-runtime.js';
import { resolveModuleOptions } from '../src/nestjs/resolve-module-options.js';
import { outboxTables } from '../src/sql/outbox-tables.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { recordingLogger } from './support/recording-logger.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { uniqueName } from './support/test-database.js';
import { waitFor, within } from './support/wait-for.js';

const CutShort = defineMessage<{ id: number }>({ exchange: 'orders', routingKey: 'cut.short' });

describe('the Nest module at start', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('nest_start');
    f.trackExchange(`${f.prefix}orders`);
  });
  after(() => f.close());

  async function initWith(overrides: Parameters<NestFixture['options']>[0]) {
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRoot(f.options({ exchanges: ['orders'], ...overrides }))],
    }).compile();
    const began = Date.now();
    try {
      await moduleRef.init();
    } finally {
      await moduleRef.close().catch(() => {});
    }
    return Date.now() - began;
  }

  it('fails at once with a RabbitMQ password the broker refuses', async () => {
    const url = new URL(AMQP_URL);
    url.password = 'wrong-secret';
    const began = Date.now();
    await assert.rejects(initWith({ amqpUrl: url.toString() }), (error: unknown) => {
      const e = error as { name?: string; code?: string; message: string };
      assert.equal(e.name, 'StartupError', String(error));
      assert.equal(e.code, 'broker-auth-refused');
      assert.doesNotMatch(e.message, /wrong-secret/);
      return true;
    });
    assert.ok(Date.now() - began < 10_000);
  });

  it('starts without RabbitMQ when it runs no handlers; the relay declares the exchanges later', async () => {
    const port = await TcpProxy.freePort();
    const down = new URL(AMQP_URL);
    down.port = String(port);
    const exchange = f.name('declared-late');
    f.trackExchange(exchange);
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot(
          f.options({ exchanges: ['declared-late'], amqpUrl: down.toString(), consumers: false }),
        ),
      ],
    }).compile();
    const began = Date.now();
    await moduleRef.init();
    let proxy: TcpProxy | undefined;
    try {
      assert.ok(Date.now() - began < 5_000, `init took ${Date.now() - began} ms`);
      // Written while RabbitMQ is down: the outbox is what lets the application go on.
      await f.t.db
        .transaction()
        .execute((trx) =>
          moduleRef.get(OutboxService).writer.add(trx, { exchange, routingKey: 'x', payload: {} }),
        );
      const broker = new URL(AMQP_URL);
      proxy = await TcpProxy.start(broker.hostname, Number(broker.port || 5672), port);
      // Published to the exchange the relay declared (a missing one would put the row off,
      // never park it); no queue is bound, so it comes back unroutable and is parked.
      const [parked] = await waitFor('the row published and parked', async () => {
        const rows = await f.query<{ reason: string }>(
          `SELECT reason FROM "${f.t.schema}".outbox_parked`,
        );
        return rows.length > 0 ? rows : undefined;
      });
      assert.match(parked!.reason, /^unroutable/);
      assert.equal(await f.exchangeExists(exchange), true);
    } finally {
      await moduleRef.close();
      await proxy?.close();
    }
  });

  // Nest 12 runs a shutdown that comes during init after init settles; a Nest whose shutdown
  // does not wait, or a start cut short by anything that stops the module, takes this path.
  it('shut down during its start while RabbitMQ is down: the start ends quietly, not with an unreachable broker', async () => {
    const down = new URL(AMQP_URL);
    down.port = String(await TcpProxy.freePort());
    const logger = recordingLogger();
    const runtime = new OutboxRuntime(
      resolveModuleOptions(f.options({ amqpUrl: down.toString(), logger }), logger),
    );
    const handler: ConsumerDefinition = {
      name: f.name('cut-short'),
      exchange: f.name('orders'),
      routingKeys: ['#'],
      handler: async () => {},
    };
    const explorer = {
      explore: () => ({ consumers: [handler], sources: new Map() }),
      handlerLocations: () => new Set<string>(),
    };
    const lazyModules = { load: async () => undefined } as unknown as LazyModuleLoader;
    const discovery = { getProviders: () => [] } as unknown as DiscoveryService;
    const registrar = new OutboxRegistrar(
      runtime,
      explorer as unknown as HandlerExplorer,
      lazyModules,
      discovery,
    );
    const bootstrap = registrar.onApplicationBootstrap();
    await waitFor('the start retrying the broker', () =>
      logger.lines.some((l) => l.text.startsWith('RabbitMQ not reachable to declare exchanges')),
    );
    const began = Date.now();
    await registrar.beforeApplicationShutdown();
    await registrar.onApplicationShutdown();
    await bootstrap;
    assert.ok(Date.now() - began < 5_000, `shut down in ${Date.now() - began} ms`);
    assert.ok(
      logger.lines.some((l) =>
        l.text.startsWith('the outbox module was shut down while it started'),
      ),
    );
  });

  // A SIGTERM while the start checks run, with the application closing its Kysely in its own
  // onApplicationShutdown (as docs/nestjs.md says): the check's next statement finds the
  // handle closed. That is the shutdown's doing, not a misconfiguration, and must not crash.
  // In beforeApplicationShutdown, the application's may run before the module's stop.
  for (const hook of ['onApplicationShutdown', 'beforeApplicationShutdown'] as const) {
    it(`shut down during its start checks, with the application closing its database in ${hook}: init and close resolve, nothing logged as an error`, async () => {
      const logger = recordingLogger();
      const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
      // biome-ignore lint/suspicious/noExplicitAny: no tables of the application's own
      const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
      let destroying = false;
      const closeDatabase = (): Promise<void> => {
        destroying = true;
        return db.destroy();
      };
      @Injectable()
      class CloseDatabase implements OnApplicationShutdown, BeforeApplicationShutdown {
        onApplicationShutdown(): Promise<void> | undefined {
          return hook === 'onApplicationShutdown' ? closeDatabase() : undefined;
        }
        beforeApplicationShutdown(): Promise<void> | undefined {
          return hook === 'beforeApplicationShutdown' ? closeDatabase() : undefined;
        }
      }
      @Injectable()
      class Handlers {
        @OutboxHandler(CutShort, { name: `cut-short-${hook}` })
        async handle(): Promise<void> {}
      }
      // Holds the consumers' schema check on the version table while the shutdown comes.
      const holder = await f.t.pool.connect();
      let held = true;
      try {
        await holder.query('BEGIN');
        await holder.query(
          `LOCK TABLE ${outboxTables(f.t.schema).migrations} IN ACCESS EXCLUSIVE MODE`,
        );
        const moduleRef = await Test.createTestingModule({
          imports: [OutboxModule.forRoot(f.options({ db, logger }))],
          providers: [Handlers, CloseDatabase],
        }).compile();
        // An application (not a bare context): its shutdown does not wait for init to settle.
        const app = moduleRef.createNestApplication({ logger: false });
        let initError: unknown;
        const init = app.init().then(
          () => undefined,
          (error: unknown) => {
            initError = error;
          },
        );
        await waitFor('the schema check waiting for the version table', async () => {
          const waiting = await f.query(
            `SELECT 1 FROM pg_locks WHERE NOT granted AND relation = $1::regclass`,
            [outboxTables(f.t.schema).migrations],
          );
          return waiting.length > 0;
        });
        const closed = app.close();
        await waitFor('the application closing its database', () => destroying);
        await holder.query('COMMIT');
        held = false;
        await within('init', init);
        await within('close', closed);
        f.track(app);
        assert.equal(initError, undefined, `init failed: ${String(initError)}`);
        assert.deepEqual(
          logger.lines.filter((l) => l.level === 'error'),
          [],
        );
        assert.ok(
          logger.lines.some((l) =>
            l.text.startsWith('the outbox module was shut down while it started'),
          ),
          logger.lines.map((l) => l.text).join('\n'),
        );
      } finally {
        if (held) await holder.query('ROLLBACK').catch(() => {});
        holder.release();
        await db.destroy().catch(() => {});
      }
    });
  }

  it('with its Kysely instance destroyed before init, still fails as database-closed: only a shutdown makes that quiet', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    // biome-ignore lint/suspicious/noExplicitAny: no tables of the application's own
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    await db.selectNoFrom((eb) => eb.lit(1).as('one')).execute();
    await db.destroy();
    @Injectable()
    class Handlers {
      @OutboxHandler(CutShort, { name: 'closed-before' })
      async handle(): Promise<void> {}
    }
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRoot(f.options({ db }))],
      providers: [Handlers],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    try {
      await assert.rejects(app.init(), (error: unknown) => {
        const e = error as { name?: string; code?: string };
        assert.equal(e.name, 'StartupError', String(error));
        assert.equal(e.code, 'database-closed');
        return true;
      });
    } finally {
      await app.close().catch(() => {});
    }
  });

  it("declares an exchange's alternate exchange, prefixed as the exchange: what no queue takes goes there, not parked", async () => {
    const exchange = f.name('ae-orders');
    const unrouted = f.name('ae-orders.unrouted');
    f.trackExchange(exchange);
    f.trackExchange(unrouted);
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot(
          f.options({
            consumers: false,
            exchanges: [
              { name: 'ae-orders', alternateExchange: 'ae-orders.unrouted' },
              { name: 'ae-orders.unrouted', type: 'fanout' },
            ],
          }),
        ),
      ],
    }).compile();
    await moduleRef.init();
    try {
      await f.bindQueue(unrouted, unrouted);
      await f.t.db.transaction().execute((trx) =>
        moduleRef.get(OutboxService).writer.add(trx, {
          exchange,
          routingKey: 'order.placed',
          payload: { id: 1 },
        }),
      );
      await waitFor('the message in the alternate exchange queue', async () =>
        (await f.depth(unrouted)) === 1 ? true : undefined,
      );
      // The queue can show the message before the relay has its confirm and deletes the row.
      await waitFor('the row deleted after its confirm', async () => {
        const left = await f.query(`SELECT 1 FROM "${f.t.schema}".outbox WHERE exchange = $1`, [
          exchange,
        ]);
        return left.length === 0 ? true : undefined;
      });
      const parked = await f.query(
        `SELECT 1 FROM "${f.t.schema}".outbox_parked WHERE exchange = $1`,
        [exchange],
      );
      assert.equal(parked.length, 0);
    } finally {
      await moduleRef.close();
    }
  });

  /** The error `init` fails with, with `migrate` on or off. */
  async function startupFailure(migrate: boolean, databaseUrl: string) {
    try {
      await initWith({ databaseUrl, migrate });
    } catch (error) {
      return error as { name?: string; code?: string; message: string; service?: string };
    }
    assert.fail(`init succeeded with migrate: ${migrate}`);
  }

  // With `migrate: true` the migration is the first thing to touch Postgres: it must fail the
  // way the start checks do without it, not with pg's raw error.
  for (const [name, change, code] of [
    [
      'a role Postgres does not know',
      (u: URL) => {
        u.username = 'no_such_role';
      },
      'database-auth-refused',
    ],
    [
      'a database that does not exist',
      (u: URL) => {
        u.pathname = '/no_such_database';
      },
      'database-not-found',
    ],
  ] as const) {
    it(`with migrate: true, fails on ${name} as without it (${code})`, async () => {
      const url = new URL(DATABASE_URL);
      change(url);
      const without = await startupFailure(false, url.toString());
      const withMigrate = await startupFailure(true, url.toString());
      assert.equal(withMigrate.name, 'StartupError', String(withMigrate));
      assert.equal(withMigrate.code, code);
      assert.equal(withMigrate.service, 'postgres');
      assert.equal(withMigrate.message, without.message);
    });
  }

  it('with migrate: true and Postgres down, fails typed within the start bound, naming the URL without password', async () => {
    const url = new URL(DATABASE_URL);
    url.port = String(await TcpProxy.freePort());
    url.password = 'hidden-secret';
    const began = Date.now();
    const error = await startupFailure(true, url.toString());
    const took = Date.now() - began;
    assert.equal(error.name, 'StartupError', String(error));
    assert.equal(error.code, 'database-unreachable');
    assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${url.port}`));
    assert.match(error.message, /migrat/);
    assert.doesNotMatch(error.message, /hidden-secret/);
    // Retried for the start checks' 5 s, then given up: not at once, not forever.
    assert.ok(took >= 4_500 && took < 9_000, `took ${took} ms`);
  });

  it('with migrate: true and Postgres hanging, fails typed within the start bound', async () => {
    const target = new URL(DATABASE_URL);
    const proxy = await TcpProxy.start(target.hostname, Number(target.port || 5432));
    try {
      proxy.pause();
      const began = Date.now();
      // No `db`: the module's own pool serves the migration, and must not hold the failed start.
      await assert.rejects(
        initWith({ db: undefined, databaseUrl: proxy.url(DATABASE_URL), migrate: true }),
        (error: unknown) => {
          const e = error as { name?: string; code?: string; message: string };
          assert.equal(e.name, 'StartupError', String(error));
          assert.equal(e.code, 'database-unreachable');
          return true;
        },
      );
      const took = Date.now() - began;
      assert.ok(took >= 4_500 && took < 9_000, `took ${took} ms`);
    } finally {
      await proxy.close();
    }
  });

  it('fails on an unmigrated schema, naming the migrate command', async () => {
    const schema = uniqueName('unmigrated');
    await assert.rejects(initWith({ schema }), (error: unknown) => {
      const e = error as { name?: string; code?: string; message: string };
      assert.equal(e.name, 'StartupError', String(error));
      assert.equal(e.code, 'schema-not-migrated');
      assert.match(e.message, new RegExp(`outboxkit migrate --schema ${schema}`));
      return true;
    });
  });
});

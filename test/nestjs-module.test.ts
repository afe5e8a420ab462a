import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  Inject,
  Injectable,
  Module,
  type ModuleMetadata,
  type NestInterceptor,
  type OnModuleInit,
  Scope,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { LazyModuleLoader } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import * as v from 'valibot';
import { z } from 'zod';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import {
  type ConsumeContext,
  defineMessage,
  OutboxHandler,
  OutboxModule,
  type OutboxModuleOptions,
  type OutboxModuleOptionsFactory,
  OutboxService,
  outboxHandlerArguments,
  type PayloadOf,
} from '../src/nestjs/index.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { CAUSATION_ID_HEADER } from '../src/protocol/message-headers.js';
import type { PgQueryable } from '../src/sql/sql-executor.js';
import { silentLogger } from '../src/util/logger.js';
import { DATABASE_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { recordingLogger } from './support/recording-logger.js';
import { uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/** Where handlers record their effects: `<schema>.effects`, which has no unique constraint. */
const EFFECTS = Symbol('effects table');

interface Greeting {
  id: number;
  text: string;
}
const Greeting = defineMessage<Greeting>({
  exchange: 'greetings',
  routingKey: 'greeting.sent',
  orderingKey: (g) => `g-${g.id}`,
});
interface Reply {
  greetingId: number;
}
const Reply = defineMessage<Reply>({ exchange: 'greetings', routingKey: 'greeting.replied' });

const quick = {
  queueType: 'classic',
  retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 100 } },
} as const;

type Seen<P> = { payload: P; ctx: ConsumeContext };

/** Records each greeting, and answers it with a reply written through the outbox. */
@Injectable()
class GreetingHandler {
  readonly seen: Seen<Greeting>[] = [];
  constructor(
    @Inject(OutboxService) private readonly outbox: OutboxService,
    @Inject(EFFECTS) private readonly effects: string,
  ) {}

  @OutboxHandler(Greeting, { ...quick, name: 'module.greetings', businessKey: (g) => `${g.id}` })
  async greet(greeting: Greeting, ctx: ConsumeContext): Promise<void> {
    this.seen.push({ payload: greeting, ctx });
    await ctx.trx
      .insertInto(this.effects)
      .values({ consumer: ctx.consumer, key: ctx.businessKey })
      .execute();
    await this.outbox.add(ctx.trx, Reply, { greetingId: greeting.id }, { causedBy: ctx });
  }
}

@Injectable()
class ReplyHandler {
  readonly seen: Seen<Reply>[] = [];
  constructor(@Inject(EFFECTS) private readonly effects: string) {}

  @OutboxHandler(Reply, { ...quick, name: 'module.replies' })
  async reply(reply: Reply, ctx: ConsumeContext): Promise<void> {
    this.seen.push({ payload: reply, ctx });
    await ctx.trx
      .insertInto(this.effects)
      .values({ consumer: ctx.consumer, key: ctx.businessKey })
      .execute();
  }
}

interface Ping {
  n: number;
}
const Ping = defineMessage<Ping>({ exchange: 'pings', routingKey: 'ping' });

/** Keeps what it received on the instance, so two applications' instances can be compared. */
@Injectable()
class PingHandler {
  readonly seen: number[] = [];

  @OutboxHandler(Ping, { ...quick, name: 'module.pings', businessKey: (p) => `${p.n}` })
  async ping(ping: Ping): Promise<void> {
    this.seen.push(ping.n);
  }
}

/** A handler whose queue must never be declared: its module's start fails on a bad option. */
@Injectable()
class NeverStartedHandler {
  @OutboxHandler(Ping, { ...quick, name: 'module.never-started' })
  async ping(): Promise<void> {}
}

/** Bytes, not JSON: the definition names their content type, for the writer and the handler. */
const Thumbnail = defineMessage<Buffer>({
  exchange: 'thumbnails',
  routingKey: 'thumbnail.made',
  contentType: 'application/octet-stream',
});

@Injectable()
class ThumbnailHandler {
  readonly seen: { payload: unknown; contentType: string | undefined }[] = [];

  @OutboxHandler(Thumbnail, { ...quick, name: 'module.thumbnails' })
  async thumbnail(image: Buffer, ctx: ConsumeContext): Promise<void> {
    this.seen.push({ payload: image, contentType: ctx.contentType });
  }
}

describe('nestjs: OutboxModule', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('nmod');
    await f.t.pool.query(`CREATE TABLE "${f.t.schema}".effects (
      id bigserial PRIMARY KEY, consumer text NOT NULL, key text NOT NULL)`);
  });
  after(() => f.close());

  const effectsTable = () => `${f.t.schema}.effects`;
  const effectCount = async (consumer: string) =>
    Number(
      (
        await f.query<{ n: string }>(
          `SELECT count(*) AS n FROM "${f.t.schema}".effects WHERE consumer = $1`,
          [f.name(consumer)],
        )
      )[0]!.n,
    );

  async function boot(
    options: OutboxModuleOptions,
    providers: NonNullable<Parameters<typeof Test.createTestingModule>[0]['providers']>,
  ): Promise<TestingModule> {
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRoot(options)],
      providers: [...providers, { provide: EFFECTS, useValue: effectsTable() }],
    }).compile();
    return f.init(moduleRef);
  }

  it('forRoot: decorated handlers receive what the injected service wrote, and follow-ups carry the cause', async () => {
    const app = await boot(f.options(), [GreetingHandler, ReplyHandler]);
    const outbox = app.get(OutboxService);
    const greetings = Array.from({ length: 20 }, (_, i) => ({ id: i, text: `hello ${i}` }));
    const ids = await f.t.db
      .transaction()
      .execute((trx) => outbox.addMany(trx, Greeting, greetings.slice(0, 10)));
    for (const g of greetings.slice(10)) {
      await f.t.db.transaction().execute((trx) => outbox.add(trx, Greeting, g));
    }
    // A rolled-back write is never published.
    await assert.rejects(
      f.t.db.transaction().execute(async (trx) => {
        await outbox.add(trx, Greeting, { id: 99, text: 'never' });
        throw new Error('roll back');
      }),
      /roll back/,
    );
    await waitFor('20 replies handled', async () => (await effectCount('module.replies')) === 20);

    const greeter = app.get(GreetingHandler);
    assert.equal(await effectCount('module.greetings'), 20);
    assert.deepEqual(
      greeter.seen.map((s) => s.payload).sort((a, b) => a.id - b.id),
      greetings,
    );
    const first = greeter.seen.find((s) => s.payload.id === 0)!.ctx;
    assert.equal(first.messageId, ids[0]);
    assert.equal(first.exchange, f.name('greetings'));
    assert.equal(first.routingKey, 'greeting.sent');
    assert.equal(first.orderingKey, 'g-0');
    assert.equal(first.consumer, f.name('module.greetings'));
    assert.equal(first.businessKey, '0');

    const reply = app.get(ReplyHandler).seen.find((s) => s.payload.greetingId === 0)!.ctx;
    assert.equal(reply.headers[CAUSATION_ID_HEADER], ids[0]);
    assert.equal(reply.causationId, ids[0]);
    assert.equal(first.causationId, undefined);
    assert.equal(reply.correlationId, ids[0]);
    assert.equal(outbox.consumerHost?.stats(f.name('module.greetings')).handled, 20);
    // The relay counts a batch once its DELETE commits, which can be after the handlers ran.
    await waitFor(
      'the relay to count 40 published',
      () => (outbox.relay?.stats().published ?? 0) >= 40,
    );
    await f.closeApp(app);
    assert.equal(outbox.isRunning, false);
  });

  it('forRootAsync with imports, inject and isGlobal: a feature module injects the service without importing the module', async () => {
    const CONFIG = Symbol('config');
    @Module({ providers: [{ provide: CONFIG, useValue: f.options() }], exports: [CONFIG] })
    class ConfigModule {}

    @Injectable()
    class Pinger {
      constructor(@Inject(OutboxService) private readonly outbox: OutboxService) {}
      send(n: number) {
        return f.t.db.transaction().execute((trx) => this.outbox.add(trx, Ping, { n }));
      }
    }
    @Module({ providers: [Pinger, PingHandler] })
    class FeatureModule {}
    // Importing the bare module as well, as one does with ConfigModule: it failed with Nest's
    // "can't resolve dependencies of the OutboxRuntime" (a probe).
    @Injectable()
    class OtherPinger {
      constructor(@Inject(OutboxService) readonly outbox: OutboxService) {}
    }
    @Module({ imports: [OutboxModule], providers: [OtherPinger] })
    class OtherFeatureModule {}

    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRootAsync({
          isGlobal: true,
          imports: [ConfigModule],
          inject: [CONFIG],
          useFactory: async (options: OutboxModuleOptions) => options,
        }),
        FeatureModule,
        OtherFeatureModule,
      ],
    }).compile();
    const app = await f.init(moduleRef);
    assert.equal(app.get(OtherPinger).outbox, app.get(OutboxService), 'one service, one runtime');
    for (let n = 1; n <= 5; n += 1) await app.get(Pinger).send(n);
    const handler = app.get(PingHandler);
    await waitFor('5 pings', () => handler.seen.length === 5);
    assert.deepEqual([...handler.seen].sort(), [1, 2, 3, 4, 5]);
    await f.closeApp(app);
  });

  // OutboxService.add refused a Buffer for want of a contentType that neither a definition nor
  // the write options could give: bytes could be written only through outbox.writer.
  it('writes and handles bytes under the content type the definition names', async () => {
    const app = await boot(f.options(), [ThumbnailHandler]);
    const outbox = app.get(OutboxService);
    const image = Buffer.from([0, 1, 2, 254, 255]);
    await f.t.db.transaction().execute((trx) => outbox.add(trx, Thumbnail, image));
    const handler = app.get(ThumbnailHandler);
    await waitFor('the thumbnail handled', async () => handler.seen.length === 1);
    assert.ok(Buffer.isBuffer(handler.seen[0]!.payload));
    assert.deepEqual(handler.seen[0]!.payload, image);
    assert.equal(handler.seen[0]!.contentType, 'application/octet-stream');
    assert.throws(
      () => defineMessage({ exchange: 'x', routingKey: 'k', contentType: '' }),
      /contentType`: must be a media type/,
    );
    await f.closeApp(app);
  });

  it("forRootAsync with useClass: the class's create() gives the options", async () => {
    @Injectable()
    class OutboxOptions implements OutboxModuleOptionsFactory {
      create(): OutboxModuleOptions {
        return f.options({ prefix: `${f.prefix}use-class.` });
      }
    }
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRootAsync({ useClass: OutboxOptions })],
      providers: [PingHandler, { provide: EFFECTS, useValue: effectsTable() }],
    }).compile();
    const app = await f.init(moduleRef);
    const outbox = app.get(OutboxService);
    await f.t.db.transaction().execute((trx) => outbox.add(trx, Ping, { n: 1 }));
    await waitFor('the ping handled', () => app.get(PingHandler).seen.length === 1);
    await f.closeApp(app);
  });

  it('two applications in one process share nothing', async () => {
    const boot2 = (name: string) =>
      boot(f.options({ prefix: `${f.prefix}${name}.` }), [PingHandler]);
    const [a, b] = [await boot2('a'), await boot2('b')];
    const [outboxA, outboxB] = [a.get(OutboxService), b.get(OutboxService)];
    assert.notEqual(outboxA, outboxB);
    assert.notEqual(outboxA.relay, outboxB.relay);
    assert.notEqual(a.get(PingHandler), b.get(PingHandler));

    const write = (outbox: OutboxService, n: number) =>
      f.t.db.transaction().execute((trx) => outbox.add(trx, Ping, { n }));
    for (const n of [1, 2, 3]) await write(outboxA, n);
    for (const n of [11, 12]) await write(outboxB, n);
    await waitFor('both handled', () => a.get(PingHandler).seen.length === 3);
    await waitFor('both handled', () => b.get(PingHandler).seen.length === 2);

    await f.closeApp(a);
    // Written after its module closed: the row is the caller's, and the running relay (b's, on
    // the same outbox) publishes it to a's queue, which nobody consumes now.
    await write(outboxA, 4);
    await waitFor(
      "the row written after a closed, in a's queue",
      async () => (await f.depth(f.name('a.module.pings'))) === 1,
    );
    await write(outboxB, 13);
    await waitFor('b goes on alone', () => b.get(PingHandler).seen.length === 3);
    assert.deepEqual([...a.get(PingHandler).seen].sort(), [1, 2, 3]);
    assert.deepEqual([...b.get(PingHandler).seen].sort(), [11, 12, 13]);
    assert.equal(outboxA.isRunning, false);
    assert.equal(outboxB.isRunning, true);
    await f.closeApp(b);
  });

  it('warns at start when handlers run with `ambientTransaction` and no `transactions`', async () => {
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (message: string) => void warnings.push(message) };
    // Never called here: only its presence is looked at.
    const ambient = (): PgQueryable => f.t.pool;
    const prefix = `${f.prefix}ambient.`;
    const app = await boot(
      f.options({ prefix, relay: false, logger, ambientTransaction: ambient }),
      [PingHandler],
    );
    assert.equal(
      warnings.filter((w) => /`ambientTransaction` is set without `transactions`/.test(w)).length,
      1,
      JSON.stringify(warnings),
    );
    await f.closeApp(app);
    // Without handlers (an API-only instance) there is nothing to warn of.
    warnings.length = 0;
    const api = await boot(
      f.options({ prefix, consumers: false, logger, ambientTransaction: ambient }),
      [PingHandler],
    );
    assert.deepEqual(
      warnings.filter((w) => /ambientTransaction/.test(w)),
      [],
    );
    await f.closeApp(api);
  });

  it('an API-only instance (consumers: false) writes and relays; a worker (relay: false) handles', async () => {
    const prefix = `${f.prefix}split.`;
    const worker = await boot(f.options({ prefix, relay: false }), [PingHandler]);
    const api = await boot(
      f.options({
        prefix,
        consumers: false,
        exchanges: [Ping],
        databaseUrl: undefined,
        pool: f.t.pool,
      }),
      [PingHandler],
    );
    const apiOutbox = api.get(OutboxService);
    assert.equal(apiOutbox.consumerHost, undefined);
    assert.equal(worker.get(OutboxService).relay, undefined);
    for (const n of [1, 2, 3, 4]) {
      await f.t.db.transaction().execute((trx) => apiOutbox.add(trx, Ping, { n }));
    }
    await waitFor('the worker handled 4', () => worker.get(PingHandler).seen.length === 4);
    assert.deepEqual(api.get(PingHandler).seen, []);
    await f.closeApp(api);
    await f.closeApp(worker);
  });

  // Kysely ends its pool only once it used it; the status read (and the health indicator's)
  // goes to the pool directly. Left open, its idle client kept the process up 10 s after close.
  it('closes the pool it made from databaseUrl when only the status read it (consumers and relay off)', async () => {
    const applicationName = `${f.prefix}own-pool`.slice(0, 60);
    const url = new URL(DATABASE_URL);
    url.searchParams.set('application_name', applicationName);
    const app = await boot(
      f.options({ db: undefined, databaseUrl: url.toString(), consumers: false, relay: false }),
      [],
    );
    const status = await app.get(OutboxService).outboxStatus();
    assert.equal(status.total.pending, 0);
    const sessions = async () =>
      (
        await f.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
          [applicationName],
        )
      )[0]!.n;
    assert.equal(await sessions(), 1, 'the status read opened one session');
    await f.closeApp(app);
    await waitFor('the module pool closed', async () => (await sessions()) === 0, 3000);
  });

  it('with enhancers, guards and interceptors run around handlers in the outboxkit context', async () => {
    const Job = defineMessage<{ n: number }>({ exchange: 'jobs', routingKey: 'job' });
    const intercepted: { type: string; n: number }[] = [];

    @Injectable()
    class RecordingInterceptor implements NestInterceptor {
      intercept(context: ExecutionContext, next: CallHandler) {
        const { payload } = outboxHandlerArguments<{ n: number }>(context);
        intercepted.push({ type: context.getType(), n: payload.n });
        return next.handle();
      }
    }
    @Injectable()
    class EvenOnly implements CanActivate {
      canActivate(context: ExecutionContext) {
        return outboxHandlerArguments<{ n: number }>(context).payload.n % 2 === 0;
      }
    }
    @Injectable()
    class JobHandler {
      readonly done: number[] = [];
      @OutboxHandler(Job, { name: 'module.jobs', queueType: 'classic', retry: { maxAttempts: 1 } })
      @UseGuards(EvenOnly)
      @UseInterceptors(RecordingInterceptor)
      async run(job: { n: number }): Promise<void> {
        this.done.push(job.n);
      }
    }

    const app = await boot(f.options({ enhancers: true }), [
      JobHandler,
      RecordingInterceptor,
      EvenOnly,
    ]);
    const outbox = app.get(OutboxService);
    await f.t.db
      .transaction()
      .execute((trx) => outbox.addMany(trx, Job, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }]));
    const host = () => outbox.consumerHost!.stats(f.name('module.jobs'));
    await waitFor('2 done, 2 refused', () => host().handled === 2 && host().deadLettered === 2);
    assert.deepEqual([...app.get(JobHandler).done].sort(), [2, 4]);
    // Guards run first: a refused job never reaches the interceptor.
    assert.deepEqual(
      intercepted.sort((x, y) => x.n - y.n),
      [
        { type: 'outboxkit', n: 2 },
        { type: 'outboxkit', n: 4 },
      ],
    );
    await waitFor(
      'dead letters',
      async () => (await f.depth(deadLetterQueueName(f.name('module.jobs')))) === 2,
    );
    await f.closeApp(app);
  });

  it('closing the application lets the running handler commit, and acks it', async () => {
    const Slow = defineMessage<{ n: number }>({ exchange: 'slow', routingKey: 'slow' });
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });

    @Injectable()
    class SlowHandler {
      constructor(@Inject(EFFECTS) private readonly effects: string) {}
      @OutboxHandler(Slow, { name: 'module.slow', queueType: 'classic' })
      async run(_: { n: number }, ctx: ConsumeContext): Promise<void> {
        entered();
        await gate;
        await ctx.trx
          .insertInto(this.effects)
          .values({ consumer: ctx.consumer, key: ctx.businessKey })
          .execute();
      }
    }

    const app = await boot(f.options(), [SlowHandler]);
    const outbox = app.get(OutboxService);
    await f.t.db.transaction().execute((trx) => outbox.add(trx, Slow, { n: 1 }));
    await inHandler;
    let closed = false;
    const closing = f.closeApp(app).then(() => {
      closed = true;
    });
    // The close waits for the handler: give it every chance to finish early.
    await waitFor('consumers stopping', () => !outbox.isRunning);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(closed, false);
    release();
    await closing;
    assert.equal(await effectCount('module.slow'), 1);
    // Acked: nothing went back to the queue when the connection closed.
    assert.equal(await f.depth(f.name('module.slow')), 0);
    assert.equal(outbox.consumerHost?.stats(f.name('module.slow')).handled, 1);
  });

  it('refuses handlers on request-scoped and transient providers, at bootstrap, saying why', async () => {
    const Scoped = defineMessage<{ n: number }>({ exchange: 'scoped', routingKey: 'scoped' });
    @Injectable()
    class Repository {
      save(): void {}
    }
    @Injectable({ scope: Scope.REQUEST })
    class PerRequest {}
    @Injectable({ scope: Scope.REQUEST })
    class ScopedHandler {
      @OutboxHandler(Scoped, { name: 'module.scoped' })
      async run(): Promise<void> {}
    }
    // Its dependencies are static, so Nest counts it static too: it was subscribed on a
    // placeholder no constructor ran on, and every message failed on `this.repository`.
    @Injectable({ scope: Scope.TRANSIENT })
    class TransientHandler {
      constructor(@Inject(Repository) private readonly repository: Repository) {}
      @OutboxHandler(Scoped, { name: 'module.transient' })
      async run(): Promise<void> {
        this.repository.save();
      }
    }
    @Injectable()
    class BubbledHandler {
      constructor(@Inject(PerRequest) readonly perRequest: PerRequest) {}
      @OutboxHandler(Scoped, { name: 'module.bubbled' })
      async run(): Promise<void> {}
    }
    for (const [handler, says] of [
      [ScopedHandler, /ScopedHandler\.run is request-scoped; handlers must live on singleton/],
      [TransientHandler, /TransientHandler\.run is transient; handlers must live on singleton/],
      [
        BubbledHandler,
        /BubbledHandler\.run is request-scoped through a dependency \(it injects PerRequest, which is request-scoped/,
      ],
    ] as const) {
      const moduleRef = await Test.createTestingModule({
        imports: [OutboxModule.forRoot(f.options())],
        providers: [Repository, PerRequest, handler],
      }).compile();
      await assert.rejects(moduleRef.init(), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.match(error.message, says);
        return true;
      });
      await moduleRef.close();
    }
  });

  it('says, as an error, that a handler in a module loaded after bootstrap receives nothing', async () => {
    const Lazy = defineMessage<{ n: number }>({ exchange: 'lazy', routingKey: 'lazy' });
    @Injectable()
    class LazyHandler {
      @OutboxHandler(Lazy, { ...quick, name: 'module.lazy' })
      async on(): Promise<void> {}
    }
    @Module({ providers: [LazyHandler] })
    class LazyModule {}
    @Module({})
    class EmptyModule {}
    const logger = recordingLogger();
    const app = await boot(f.options({ logger }), [PingHandler]);
    const lazyErrors = () =>
      logger.lines.filter((l) => l.level === 'error' && l.text.includes('loaded after bootstrap'));
    await app.get(LazyModuleLoader).load(() => EmptyModule);
    assert.deepEqual(lazyErrors(), [], 'a module without handlers loads quietly');
    await app.get(LazyModuleLoader).load(() => LazyModule);
    assert.equal(lazyErrors().length, 1);
    assert.match(
      lazyErrors()[0]!.text,
      /@OutboxHandler on LazyHandler\.on is in a module loaded after bootstrap/,
    );
    // Loaded again (Nest keeps one instance of it): not said twice.
    await app.get(LazyModuleLoader).load(() => LazyModule);
    assert.equal(lazyErrors().length, 1);
    const noHandler = (lines: typeof logger.lines) =>
      lines.filter((l) => l.text.startsWith('no @OutboxHandler found'));
    assert.deepEqual(noHandler(logger.lines), [], 'said only when there is no handler');
    await f.closeApp(app);

    // No handler found, consumers on: said once, since a handler class left out of `providers`
    // is never found (found by a probe: nothing was logged).
    const quiet = recordingLogger();
    const empty = await boot(f.options({ logger: quiet }), []);
    assert.equal(noHandler(quiet.lines).length, 1);
    assert.match(noHandler(quiet.lines)[0]!.text, /consumers: false/);
    await f.closeApp(empty);
  });

  it("warns at start when the handlers' pool it made holds no more connections than they run at once", async () => {
    // A probe's handlers (concurrency 16 on the default poolSize of 10) were capped without a word.
    const warnings = async (poolSize: number) => {
      const logger = recordingLogger();
      const app = await boot(f.options({ db: undefined, poolSize, logger }), [PingHandler]);
      await f.closeApp(app);
      return logger.lines.filter((l) => l.level === 'warn' && l.text.includes("handlers' pool"));
    };
    const small = await warnings(4);
    assert.equal(small.length, 1);
    assert.match(small[0]!.text, /holds 4 connections, and the handlers run up to 4 transactions/);
    assert.match(small[0]!.text, /Give the pool 5 or more \(`poolSize`\)/);
    assert.deepEqual(await warnings(5), []);
  });

  it('refuses OutboxModule.forRoot in a module loaded after bootstrap, which would never start', async () => {
    // Nest runs no lifecycle hook of a lazily loaded module: the module wrote to its outbox,
    // and nothing ever published it or subscribed its handlers, without a word (a probe).
    @Module({ imports: [OutboxModule.forRoot(f.options({ relay: false }))] })
    class LateOutbox {}
    @Module({})
    class Root {}
    const app = await Test.createTestingModule({ imports: [Root] }).compile();
    await app.init();
    try {
      await assert.rejects(
        app.get(LazyModuleLoader).load(() => LateOutbox),
        (error: unknown) => {
          assert.ok(error instanceof ConfigurationError, String(error));
          assert.match(error.message, /OutboxModule\.forRoot.*loaded after bootstrap/);
          return true;
        },
      );
    } finally {
      await app.close();
    }
  });

  it('says that migrate: true has not run yet to a write from an onModuleInit', async () => {
    // "run outboxkit migrate" confused a user who had set migrate: true (a probe).
    const schema = uniqueName('nmigr');
    @Injectable()
    class Seeder implements OnModuleInit {
      constructor(@Inject(OutboxService) private readonly outbox: OutboxService) {}
      async onModuleInit(): Promise<void> {
        await f.t.db.transaction().execute((trx) => this.outbox.add(trx, Ping, { n: 1 }));
      }
    }
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRoot(f.options({ schema, migrate: true }))],
      providers: [Seeder],
    }).compile();
    try {
      await assert.rejects(moduleRef.init(), (error: unknown) => {
        assert.ok(error instanceof OutboxkitError, String(error));
        assert.equal(error.code, 'schema-not-migrated');
        assert.match(
          error.message,
          /migrate: true runs in onApplicationBootstrap, after every onModuleInit/,
        );
        return true;
      });
    } finally {
      await moduleRef.close();
      await f.t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('warns when OutboxModule is imported twice on one schema and prefix', async () => {
    // Each import started its own relay and subscribed every handler, without a word (a probe).
    const logger = recordingLogger();
    const options = f.options({ logger, relay: false, consumers: false });
    @Module({ imports: [OutboxModule.forRoot(options)] })
    class FeatureA {}
    @Module({ imports: [OutboxModule.forRoot({ ...options })] })
    class FeatureB {}
    const moduleRef = await Test.createTestingModule({ imports: [FeatureA, FeatureB] }).compile();
    const app = await f.init(moduleRef);
    const twice = logger.lines.filter(
      (l) => l.level === 'warn' && /OutboxModule is imported 2 times/.test(l.text),
    );
    assert.ok(twice.length >= 1, JSON.stringify(logger.lines));
    assert.match(twice[0]!.text, /isGlobal: true/);
    await f.closeApp(app);
  });

  it('warns when two OutboxModules of one application both run consumers, on other prefixes', async () => {
    // Each module subscribed every handler of the application: with two databases, a handler ran
    // in the other database's transactions (a probe: 225 failures a minute, or duplicates).
    const logger = recordingLogger();
    const options = f.options({ logger, relay: false });
    @Module({ imports: [OutboxModule.forRoot({ ...options, prefix: `${f.prefix}a.` })] })
    class FeatureA {}
    @Module({ imports: [OutboxModule.forRoot({ ...options, prefix: `${f.prefix}b.` })] })
    class FeatureB {}
    const moduleRef = await Test.createTestingModule({ imports: [FeatureA, FeatureB] }).compile();
    const app = await f.init(moduleRef);
    const warned = logger.lines.filter(
      (l) => l.level === 'warn' && /another OutboxModule of this application/.test(l.text),
    );
    assert.ok(warned.length >= 1, JSON.stringify(logger.lines));
    assert.match(warned[0]!.text, /consumers: false on the others/);
    await f.closeApp(app);
  });

  it('refuses two handlers of one consumer name, and a handler class registered in two modules, saying which', async () => {
    @Injectable()
    class First {
      @OutboxHandler(Ping, { ...quick, name: 'module.same' })
      async ping(): Promise<void> {}
    }
    @Injectable()
    class Second {
      @OutboxHandler(Ping, { ...quick, name: 'module.same' })
      async ping(): Promise<void> {}
    }
    @Injectable()
    class Twice {
      @OutboxHandler(Ping, { ...quick, name: 'module.twice' })
      async ping(): Promise<void> {}
    }
    @Module({ providers: [Twice] })
    class FeatureA {}
    @Module({ providers: [Twice] })
    class FeatureB {}
    const cases: Array<[ModuleMetadata, RegExp]> = [
      [
        { providers: [First, Second] },
        /handlers First\.ping and Second\.ping share the consumer name ".*module\.same".*give one of them another `name`/,
      ],
      [
        { imports: [FeatureA, FeatureB] },
        /handler Twice\.ping \(consumer ".*module\.twice"\) is registered twice: its class is in the providers of two modules/,
      ],
    ];
    for (const [metadata, expected] of cases) {
      const moduleRef = await Test.createTestingModule({
        ...metadata,
        imports: [OutboxModule.forRoot(f.options()), ...(metadata.imports ?? [])],
      }).compile();
      await assert.rejects(moduleRef.init(), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.match(error.message, expected);
        return true;
      });
      await moduleRef.close();
    }
  });

  it('names a wrong relay or consumers setting as the module option, not the core one', async () => {
    // `stopTimeoutMs` is a setting of both: the bare core name would not say which one is wrong.
    for (const [options, option] of [
      [{ relay: { concurrency: -1 } }, 'relay.concurrency'],
      [{ relay: { stopTimeoutMs: -5 } }, 'relay.stopTimeoutMs'],
      [{ consumers: { stopTimeoutMs: -5 } }, 'consumers.stopTimeoutMs'],
    ] as const) {
      const moduleRef = await Test.createTestingModule({
        imports: [OutboxModule.forRoot({ ...f.options(), ...options })],
        providers: [NeverStartedHandler],
      }).compile();
      await assert.rejects(moduleRef.init(), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.equal(error.option, option);
        assert.match(error.message, new RegExp(`\`${option.replace('.', '\\.')}\`: must be`));
        return true;
      });
      await moduleRef.close();
      // Refused before anything started: no consumer declared its queue or took a message.
      assert.equal(await f.depth(f.name('module.never-started')), undefined, option);
    }
  });

  it('names a wrong handler option found at start by the decorated method, not by the core consumer', async () => {
    @Injectable()
    class BadRetry {
      @OutboxHandler(Ping, { ...quick, name: 'module.bad-retry', retry: { maxAttempts: 0 } })
      async ping(): Promise<void> {}
    }
    @Injectable()
    class BadKeys {
      // A string, not a list: the decorator's types refuse it, JavaScript does not.
      @OutboxHandler(Ping, { ...quick, name: 'module.bad-keys', routingKeys: 'x' as never })
      async ping(): Promise<void> {}
    }
    for (const [provider, option] of [
      [BadRetry, '@OutboxHandler on BadRetry.ping: retry.maxAttempts'],
      [BadKeys, '@OutboxHandler on BadKeys.ping: routingKeys'],
    ] as const) {
      const moduleRef = await Test.createTestingModule({
        imports: [OutboxModule.forRoot(f.options())],
        providers: [provider],
      }).compile();
      await assert.rejects(moduleRef.init(), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.equal(error.option, option);
        assert.doesNotMatch(error.message, /consumers\[/);
        return true;
      });
      await moduleRef.close();
    }
  });

  it("a fanout exchange's handler binds without the messages' routing keys, and gets them; a prefix of amq. is named", async () => {
    const Fanned = defineMessage<{ n: number }>({
      exchange: 'fanned',
      exchangeType: 'fanout',
      routingKey: 'fanned.any',
    });
    @Injectable()
    class FannedHandler {
      readonly seen: number[] = [];
      @OutboxHandler(Fanned, { ...quick, name: 'module.fanned' })
      async handle(message: { n: number }): Promise<void> {
        this.seen.push(message.n);
      }
    }
    const app = await boot(f.options(), [FannedHandler]);
    const outbox = app.get(OutboxService);
    await f.t.db.transaction().execute((trx) => outbox.addMany(trx, Fanned, [{ n: 1 }, { n: 2 }]));
    await waitFor('both handled', () => app.get(FannedHandler).seen.length === 2);
    assert.deepEqual([...app.get(FannedHandler).seen].sort(), [1, 2]);
    await f.closeApp(app);

    await assert.rejects(
      async () => {
        const refused = await Test.createTestingModule({
          imports: [OutboxModule.forRoot({ ...f.options(), prefix: 'amq.test.' })],
        }).compile();
        await refused.close();
      },
      (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.equal(error.option, 'prefix');
        assert.match(error.message, /must not start with "amq\."/);
        return true;
      },
    );
  });

  it("a handler of two schema-validated definitions gets each schema's output; invalid payloads are dead-lettered with the issues", async () => {
    // No type arguments: each definition takes its payload type from its schema.
    const Shipped = defineMessage({
      exchange: 'parcels',
      routingKey: 'parcel.shipped',
      validate: z.object({ parcelId: z.string(), carrier: z.string().default('post') }),
      orderingKey: (parcel) => parcel.parcelId,
    });
    const Lost = defineMessage({
      exchange: 'parcels',
      routingKey: 'parcel.lost',
      validate: v.object({ parcelId: v.string(), reason: v.picklist(['damaged', 'missing']) }),
    });
    type Parcel = PayloadOf<readonly [typeof Shipped, typeof Lost]>;
    @Injectable()
    class ParcelHandler {
      readonly seen: Parcel[] = [];
      @OutboxHandler([Shipped, Lost], { ...quick, name: 'module.parcels' })
      async handle(parcel: Parcel): Promise<void> {
        this.seen.push(parcel);
      }
    }
    const app = await boot(f.options(), [ParcelHandler]);
    const outbox = app.get(OutboxService);
    await f.t.db.transaction().execute(async (trx) => {
      // The writer takes the schema's input: `carrier` has a default, filled in for the handler.
      await outbox.add(trx, Shipped, { parcelId: 'p1' });
      await outbox.add(trx, Lost, { parcelId: 'p2', reason: 'missing' });
      // What another publisher, or an older version of this one, might send.
      await outbox.add(trx, Shipped, { parcelId: 'p3', carrier: 7 } as never, {
        messageId: 'bad-shipped',
      });
      await outbox.add(trx, Lost, { parcelId: 'p4', reason: 'eaten' } as never, {
        messageId: 'bad-lost',
      });
    });
    const name = f.name('module.parcels');
    const dlq = deadLetterQueueName(name);
    await waitFor('two handled and two dead letters', async () => {
      const stats = outbox.consumerHost?.stats(name);
      return stats?.handled === 2 && (await f.depth(dlq)) === 2;
    });
    const seen = [...app.get(ParcelHandler).seen].sort((a, b) =>
      a.parcelId.localeCompare(b.parcelId),
    );
    // The default was filled in by the schema.
    assert.deepEqual(seen, [
      { parcelId: 'p1', carrier: 'post' },
      { parcelId: 'p2', reason: 'missing' },
    ]);
    const errors = Object.fromEntries(
      (await f.drain(dlq)).map((m) => [
        m.properties.messageId,
        [
          m.properties.headers?.[OUTBOXKIT_HEADERS.reason],
          String(m.properties.headers?.[OUTBOXKIT_HEADERS.error]),
        ],
      ]),
    );
    assert.equal(errors['bad-shipped']?.[0], 'validation-failed');
    assert.match(errors['bad-shipped']![1]!, /^zod schema: carrier: /);
    assert.equal(errors['bad-lost']?.[0], 'validation-failed');
    assert.match(errors['bad-lost']![1]!, /^valibot schema: reason: /);
    await f.closeApp(app);
  });

  it('refuses an unknown option from the async factory, which the compiler lets through', async () => {
    // A factory's result is not checked for excess properties: a misspelt `prefix` would run
    // every handler without it.
    const cases = [
      [{ prefx: 'a.' }, 'prefx', /did you mean `prefix`/],
      // A setting of the relay or the consumers, misspelt at the module's top.
      [{ concurency: 2 }, 'concurency', /did you mean `relay\.concurrency`/],
      [{ stopTimeoutMS: 2 }, 'stopTimeoutMS', /did you mean `relay\.stopTimeoutMs`/],
      [{ isGlobal: true }, 'isGlobal', /next to `useFactory`/],
      // Was ignored without a word: no dashboard served (a probe).
      [{ dashboard: true }, 'dashboard', /next to `useFactory`.*routes are mounted/],
    ] as const;
    for (const [extra, option, message] of cases) {
      await assert.rejects(
        Test.createTestingModule({
          imports: [
            OutboxModule.forRootAsync({
              useFactory: () => ({ ...f.options(), ...extra }) as OutboxModuleOptions,
            }),
          ],
        }).compile(),
        (error: unknown) => {
          assert.ok(error instanceof ConfigurationError, String(error));
          assert.equal(error.option, option);
          assert.match(error.message, message);
          return true;
        },
      );
    }
    // An unknown name without a value loses no setting: accepted.
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRootAsync({
          useFactory: () => ({ ...f.options(), extra: undefined }) as OutboxModuleOptions,
        }),
      ],
    }).compile();
    await moduleRef.close();
  });

  it('rejects wrong options and misused decorators with messages naming the fix', async () => {
    // forRoot and forRootAsync mixed up: each names the other (found by a probe).
    await assert.rejects(
      Test.createTestingModule({
        imports: [
          OutboxModule.forRoot({
            useFactory: () => f.options(),
          } as unknown as OutboxModuleOptions),
        ],
      }).compile(),
      { name: 'ConfigurationError', message: /belongs to OutboxModule\.forRootAsync/ },
    );
    assert.throws(
      () => OutboxModule.forRootAsync(f.options() as never),
      /got none \(options given as they are go to OutboxModule\.forRoot\)/,
    );
    await assert.rejects(
      Test.createTestingModule({
        imports: [OutboxModule.forRoot({ db: f.t.db, amqpUrl: 'amqp://localhost' })],
      }).compile(),
      (error: unknown) => error instanceof ConfigurationError && /databaseUrl/.test(error.message),
    );
    const A = defineMessage<number>({ exchange: 'a', routingKey: 'a' });
    const B = defineMessage<number>({ exchange: 'b', routingKey: 'b' });
    assert.throws(() => {
      class Mixed {
        @OutboxHandler([A, B], { name: 'q' })
        run(): void {}
      }
      return Mixed;
    }, /several exchanges \(a, b\)/);
    assert.throws(() => {
      class NoQueue {
        @OutboxHandler(A, { name: '' })
        run(): void {}
      }
      return NoQueue;
    }, /needs `name`/);
    assert.throws(() => {
      class Twice {
        @OutboxHandler(A, { name: 'q1' })
        @OutboxHandler(A, { name: 'q2' })
        run(): void {}
      }
      return Twice;
    }, /applied twice/);
    // Where @nestjs/microservices' ClientProxy sends: say why not, and what to do instead.
    for (const [exchange, said] of [
      [
        '',
        /`defineMessage\("x"\)\.exchange`: "" is RabbitMQ's default exchange, which outboxkit does not/,
      ],
      ['amq.default', /"amq\.default" is the management UI's name of RabbitMQ's default exchange/],
    ] as const) {
      assert.throws(
        () => defineMessage({ exchange, routingKey: 'x' }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigurationError, String(error));
          assert.match(error.message, said);
          assert.match(error.message, /refuses that check on the default exchange \(403\)/);
          assert.match(error.message, /Declare an exchange and bind the queue to it/);
          return true;
        },
      );
    }
    // docs/nestjs.md's own example of a misspelling: three letters left out.
    assert.throws(
      () =>
        defineMessage({ exchange: 'orders', routingKey: 'order.placed', orderKey: 'x' } as never),
      (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.equal(error.option, 'defineMessage("order.placed").orderKey');
        assert.match(
          error.message,
          /did you mean `defineMessage\("order\.placed"\)\.orderingKey`\?/,
        );
        return true;
      },
    );
    // A long routing key is named by its start, not in full.
    const longKey = 'k'.repeat(300);
    assert.throws(
      () => defineMessage({ exchange: 'orders', routingKey: longKey, ordered: true } as never),
      (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.ok(!error.message.includes(longKey), error.message);
        assert.match(error.option, /^defineMessage\("k{40}…"\)\.ordered$/);
        return true;
      },
    );
    // Without a routing key, the definition is named by what it has.
    assert.throws(
      () => defineMessage({ exchange: 'orders', routingkey: 'a' } as never),
      (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.equal(error.option, 'defineMessage({ exchange: "orders" }).routingkey');
        return true;
      },
    );
  });
});

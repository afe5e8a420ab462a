import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Injectable, type LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Counter, Registry } from 'prom-client';
import {
  defineMessage,
  OutboxHandler,
  OutboxModule,
  type OutboxModuleOptions,
  OutboxService,
} from '../src/nestjs/index.js';
import { OutboxRuntime } from '../src/nestjs/outbox-runtime.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { waitFor } from './support/wait-for.js';

interface Ping {
  n: number;
}
const Ping = defineMessage<Ping>({ exchange: 'pings', routingKey: 'ping' });

@Injectable()
class PingHandler {
  /** What a handler waits for before it records its message. */
  static gate: Promise<void> = Promise.resolve();
  readonly seen: number[] = [];

  @OutboxHandler(Ping, { queueType: 'classic', name: 'prom.pings', businessKey: (p) => `${p.n}` })
  async ping(ping: Ping): Promise<void> {
    await PingHandler.gate;
    this.seen.push(ping.n);
  }
}

/** The value of one series in exposition text, or undefined when it is absent. */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('nestjs: OutboxModule with prometheusRegistry', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('nprom');
  });
  after(() => f.close());

  const boot = async (options: OutboxModuleOptions) =>
    f.init(
      await Test.createTestingModule({
        imports: [OutboxModule.forRoot(options)],
        providers: [PingHandler],
      }).compile(),
    );

  it("registers outboxkit's metrics in the application's registry, with the counts, and removes them at close", async () => {
    const registry = new Registry();
    // The application's own metric, which shares the registry and must outlive the module.
    new Counter({ name: 'app_requests_total', help: 'requests', registers: [registry] }).inc(7);

    const app = await boot(f.options({ prometheusRegistry: registry }));
    const outbox = app.get(OutboxService);
    for (const n of [1, 2, 3]) {
      await f.t.db.transaction().execute((trx) => outbox.add(trx, Ping, { n }));
    }
    const consumer = f.name('prom.pings');
    const handled = `outboxkit_consumer_handled_total{consumer="${consumer}"}`;
    // The relay counts a batch once its DELETE commits, which can be after the handlers ran.
    const text = await waitFor(
      'the scrape counts 3 handled and 3 published',
      async () => {
        const t = await registry.metrics();
        return value(t, handled) === 3 && value(t, 'outboxkit_relay_published_total') === 3
          ? t
          : undefined;
      },
      30_000,
    );
    assert.deepEqual(app.get(PingHandler).seen.sort(), [1, 2, 3]);

    assert.equal(value(text, 'outboxkit_relay_published_total'), 3);
    assert.equal(value(text, 'outboxkit_relay_parked_total'), 0);
    assert.equal(value(text, 'outboxkit_relay_publish_seconds_count'), 3);
    assert.equal(value(text, `outboxkit_consumer_received_total{consumer="${consumer}"}`), 3);
    assert.equal(value(text, `outboxkit_consumer_duplicates_total{consumer="${consumer}"}`), 0);
    assert.equal(
      value(text, `outboxkit_consumer_handler_seconds_count{consumer="${consumer}"}`),
      3,
    );
    // The outbox gauges, read from the module's own database: nothing left to publish.
    assert.equal(value(text, 'outboxkit_outbox_oldest_pending_age_seconds'), 0);
    assert.match(text, /^# TYPE outboxkit_outbox_pending_messages gauge$/m);
    assert.match(text, /^# TYPE outboxkit_relay_published_total counter$/m);
    assert.match(text, /^# TYPE outboxkit_consumer_handler_seconds histogram$/m);
    assert.equal(value(text, 'app_requests_total'), 7);
    const registered = (await registry.getMetricsAsJSON())
      .map((m) => m.name)
      .filter((name) => name.startsWith('outboxkit_'));
    assert.ok(registered.length > 20, `${registered.length} outboxkit metrics registered`);

    await f.closeApp(app);
    const closed = await registry.metrics();
    assert.doesNotMatch(closed, /outboxkit_/);
    assert.equal(value(closed, 'app_requests_total'), 7);

    // Unregistered means free again: the next application (a restart) registers the same names.
    const again = await boot(f.options({ prometheusRegistry: registry }));
    assert.equal(value(await registry.metrics(), 'outboxkit_relay_published_total'), 0);
    await f.closeApp(again);
    assert.doesNotMatch(await registry.metrics(), /outboxkit_/);
  });
  it('keeps the metrics while a shutdown waits for running handlers, and removes them after', async () => {
    // They were removed at the start of the shutdown: scrapes during a graceful drain (up to
    // stopTimeoutMs) showed no outboxkit series at all.
    const registry = new Registry();
    const app = await boot(f.options({ prometheusRegistry: registry }));
    const handler = app.get(PingHandler);
    let release!: () => void;
    PingHandler.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    await f.t.db.transaction().execute((trx) => app.get(OutboxService).add(trx, Ping, { n: 9 }));
    const received = `outboxkit_consumer_received_total{consumer="${f.name('prom.pings')}"}`;
    await waitFor('the handler to be running, its row published', async () => {
      const text = await registry.metrics();
      return value(text, received) === 1 && value(text, 'outboxkit_relay_published_total') === 1
        ? true
        : undefined;
    });
    const runtime = app.get(OutboxRuntime);
    const closing = f.closeApp(app);
    try {
      await waitFor('the shutdown to begin', () => runtime.shutdownBegun);
      const during = await registry.metrics();
      assert.equal(value(during, received), 1);
      assert.equal(value(during, 'outboxkit_relay_published_total'), 1);
    } finally {
      release();
      await closing;
    }
    assert.deepEqual(handler.seen, [9]);
    assert.doesNotMatch(await registry.metrics(), /outboxkit_/);
  });

  it("warns through the module's Nest logger when the outbox gauges are left out of a scrape", async () => {
    const warnings: string[] = [];
    const logger: LoggerService = {
      log() {},
      error() {},
      warn: (message: unknown) => void warnings.push(String(message)),
    };
    const registry = new Registry();
    const app = f.init(
      await Test.createTestingModule({
        imports: [
          OutboxModule.forRoot(
            f.options({ prometheusRegistry: registry, consumers: false, logger }),
          ),
        ],
      }).compile(),
    );
    const started = await app;
    const stderr: string[] = [];
    const write = process.stderr.write;
    const locker = await f.t.pool.connect();
    try {
      // The gauges' statement waits behind this lock, as behind a stalled database.
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${f.t.schema}".outbox_parked IN ACCESS EXCLUSIVE MODE`);
      process.stderr.write = ((chunk: string | Uint8Array) => {
        stderr.push(String(chunk));
        return true;
      }) as typeof process.stderr.write;
      const text = await registry.metrics();
      assert.equal(value(text, 'outboxkit_outbox_oldest_pending_age_seconds'), undefined);
    } finally {
      process.stderr.write = write;
      await locker.query('ROLLBACK');
      locker.release();
      await f.closeApp(started);
    }
    assert.ok(
      warnings.some((w) => /outbox gauges left out of \/metrics/.test(w)),
      `warnings: ${JSON.stringify(warnings)}`,
    );
    assert.deepEqual(
      stderr.filter((line) => /gauges/.test(line)),
      [],
    );
  });
});

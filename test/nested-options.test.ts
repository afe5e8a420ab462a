import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AnyConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost, type ConsumerHostOptions } from '../src/consumer/consumer-host.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { defineMessage } from '../src/nestjs/message-definition.js';
import { OutboxDashboardHost } from '../src/nestjs/outbox-dashboard-host.js';
import { OutboxHandler } from '../src/nestjs/outbox-handler.decorator.js';
import { resolveModuleOptions } from '../src/nestjs/resolve-module-options.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { silentLogger } from '../src/util/logger.js';
import { refused } from './support/refused.js';
import { untyped } from './support/untyped.js';

// What a spread config, a JSON file or JavaScript hands over: the compiler sees no literal.
const amqpUrl = 'amqp://localhost';
const pool = { query: async () => ({ rows: [] }), connect: async () => ({}) };
const db = { transaction() {} } as never;
const handler = async () => {};
const limits = { brokerConsumerTimeoutMs: 30 * 60_000 };

const relay = (options: object) => () =>
  resolveRelayOptions(untyped({ pool, amqpUrl, ...options }));
const host = (options: object) => () =>
  new ConsumerHost(untyped<ConsumerHostOptions>({ db, amqpUrl, consumers: [], ...options }));
const consumer = (options: object) => () =>
  resolveConsumer(
    untyped<AnyConsumerDefinition>({ name: 'orders', exchange: 'shop', handler, ...options }),
    limits,
  );
const dashboardSettings = (settings: unknown) => () =>
  new OutboxDashboardHost({} as never, settings as never);
const moduleOptions = (options: object) => () =>
  resolveModuleOptions(untyped({ databaseUrl: 'postgres://x', amqpUrl, ...options }), silentLogger);

describe('nested options', () => {
  it('refuse an unknown key, naming its full path and the closest known one', () => {
    const cases: [() => unknown, string, string | undefined][] = [
      [
        consumer({ retry: { backoff: { initialMs: 50, maxMS: 100 } } }),
        'consumers[orders].retry.backoff.maxMS',
        'consumers[orders].retry.backoff.maxMs',
      ],
      [
        relay({ retry: { backoff: { initialMs: 5, maxMs: 10, factr: 3 } } }),
        'retry.backoff.factr',
        'retry.backoff.factor',
      ],
      [
        relay({ reconnectBackoff: { initialMs: 5, maxMs: 10, jiter: 0 } }),
        'reconnectBackoff.jiter',
        'reconnectBackoff.jitter',
      ],
      [
        host({ reconnectBackoff: { initialMs: 5, maxMs: 10, jiter: 0 } }),
        'reconnectBackoff.jiter',
        'reconnectBackoff.jitter',
      ],
      [dashboardSettings({ allowReplai: true }), 'dashboard.allowReplai', 'dashboard.allowReplay'],
    ];
    for (const [make, option, guess] of cases) {
      assert.throws(make, (error: unknown) => {
        refused(option, /is not an option of/)(error);
        assert.ok((error as Error).message.includes(`did you mean \`${guess}\``), String(error));
        return true;
      });
    }
  });

  it("refuse an unknown key of an @OutboxHandler's options, whose handler would ignore it", () => {
    const placed = defineMessage<{ id: string }>({ exchange: 'shop', routingKey: 'placed' });
    const decorate = (options: object) => () => {
      class Handlers {
        async onPlaced(_order: { id: string }) {}
      }
      const descriptor = Object.getOwnPropertyDescriptor(Handlers.prototype, 'onPlaced')!;
      OutboxHandler(placed, untyped({ name: 'orders', ...options }))(
        Handlers.prototype,
        'onPlaced',
        descriptor as never,
      );
    };
    assert.throws(decorate({ concurency: 8 }), (error: unknown) => {
      refused('concurency', /is not an option of @OutboxHandler on Handlers\.onPlaced/)(error);
      assert.match((error as Error).message, /did you mean `concurrency`/);
      return true;
    });
    assert.doesNotThrow(decorate({ concurrency: 8, retry: { maxAttempts: 2 } }));
  });

  it("refuse jitter in a consumer's retry backoff: its delays are exact", () => {
    assert.throws(
      consumer({ retry: { backoff: { initialMs: 50, maxMs: 100, jitter: 0.1 } } }),
      refused('consumers[orders].retry.backoff.jitter', /exact/),
    );
  });

  it('refuse a value that is not an object', () => {
    for (const bad of ['abc', 3, [], null, true]) {
      const cases: [() => unknown, string][] = [
        [consumer({ retry: bad }), 'consumers[orders].retry'],
        [consumer({ retry: { backoff: bad } }), 'consumers[orders].retry.backoff'],
        [relay({ retry: bad }), 'retry'],
        [relay({ retry: { backoff: bad } }), 'retry.backoff'],
        [relay({ reconnectBackoff: bad }), 'reconnectBackoff'],
        [host({ reconnectBackoff: bad }), 'reconnectBackoff'],
        [dashboardSettings(bad), 'dashboard'],
      ];
      // `false` turns these off, and `true` means the defaults.
      if (bad !== true) {
        cases.push(
          [host({ retention: bad }), 'retention'],
          [moduleOptions({ relay: bad }), 'relay'],
          [moduleOptions({ consumers: bad }), 'consumers'],
        );
      }
      for (const [make, option] of cases) {
        const detail = bad === null ? /null/ : /object/;
        assert.throws(make, refused(option, detail), `${option}: ${JSON.stringify(bad)}`);
      }
    }
  });

  it("refuse the module's relay and consumers settings that the module sets itself", () => {
    assert.throws(
      moduleOptions({ relay: { amqpUrl: 'amqp://other' } }),
      refused('relay.amqpUrl', /OutboxModule/),
    );
    assert.throws(moduleOptions({ consumers: { schema: 'other' } }), refused('consumers.schema'));
  });

  it('take a factor by the one rule: a finite number of at least 1', () => {
    for (const factor of [Number.POSITIVE_INFINITY, Number.NaN, 0.5, '2']) {
      assert.throws(
        consumer({ retry: { backoff: { initialMs: 50, maxMs: 100, factor } } }),
        refused('consumers[orders].retry.backoff.factor', /finite number of at least 1/),
      );
      assert.throws(
        relay({ retry: { backoff: { initialMs: 50, maxMs: 100, factor } } }),
        refused('retry.backoff.factor', /finite number of at least 1/),
      );
    }
  });

  it("still fill a consumer's backoff from the defaults, and pass undefined keys", () => {
    const resolved = consumer({ retry: { maxAttempts: 3, backoff: { initialMs: 50 } } })();
    assert.deepEqual(resolved.retryDelaysMs, [50, 100]);
    assert.doesNotThrow(consumer({ retry: { backoff: { initialMs: 50, maxMS: undefined } } }));
    assert.doesNotThrow(relay({ retry: { backoff: undefined }, reconnectBackoff: undefined }));
    assert.doesNotThrow(dashboardSettings({}));
  });

  it('refuse control characters in a queue or consumer name', () => {
    // A line break in a name: queues declared without it, a start that timed out on a 404.
    assert.throws(
      consumer({ name: 'a\nb' }),
      refused('consumers[a\nb].queue', /control characters/),
    );
    assert.throws(
      consumer({ queue: 'orders\tq' }),
      refused('consumers[orders].queue', /control characters/),
    );
  });

  it('fill every backoff from its defaults, a bound left out following the one given', () => {
    // Was: a relay's or host's partial backoff was refused, naming a field the user never set.
    const resolved = resolveRelayOptions(
      untyped({
        pool,
        amqpUrl,
        reconnectBackoff: { maxMs: 50 },
        retry: { backoff: { initialMs: 600_000 } },
      }),
    );
    assert.deepEqual(
      { initialMs: resolved.reconnectBackoff.initialMs, maxMs: resolved.reconnectBackoff.maxMs },
      { initialMs: 50, maxMs: 50 },
    );
    assert.deepEqual(
      { initialMs: resolved.retry.backoff.initialMs, maxMs: resolved.retry.backoff.maxMs },
      { initialMs: 600_000, maxMs: 600_000 },
    );
    assert.equal(relay({ reconnectBackoff: { maxMs: 20_000 } })().reconnectBackoff.initialMs, 100);
    assert.doesNotThrow(host({ reconnectBackoff: { initialMs: 5_000 } }));
    // A consumer's retry delays: 20 minutes each, not refused for the default 5-minute cap.
    const slow = consumer({ retry: { maxAttempts: 3, backoff: { initialMs: 1_200_000 } } })();
    assert.deepEqual(slow.retryDelaysMs, [1_200_000, 1_200_000]);
    // What the user wrote is still checked as written.
    assert.throws(
      relay({ reconnectBackoff: { initialMs: 500, maxMs: 100 } }),
      refused('reconnectBackoff.maxMs', /at least initialMs/),
    );
    assert.throws(
      host({ reconnectBackoff: { maxMs: -1 } }),
      refused('reconnectBackoff.maxMs', /./),
    );
  });
});

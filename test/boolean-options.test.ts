import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { exchangeDeclarations } from '../src/amqp/exchange-declaration.js';
import type { AnyConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { OutboxDashboard } from '../src/dashboard/outbox-dashboard.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { defineMessage } from '../src/nestjs/message-definition.js';
import { OutboxHandler } from '../src/nestjs/outbox-handler.decorator.js';
import { resolveModuleOptions } from '../src/nestjs/resolve-module-options.js';
import { tlsConnectionOptions } from '../src/options/tls-options.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { outboxStatus } from '../src/status/outbox-status.js';
import { flushOutbox } from '../src/testing/flush-outbox.js';
import { silentLogger } from '../src/util/logger.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { untyped } from './support/untyped.js';

const amqpUrl = 'amqp://localhost';
const notBoolean = (option: string, got: RegExp) => (error: unknown) => {
  assert.ok(error instanceof ConfigurationError, String(error));
  assert.equal(error.option, option);
  assert.match(error.message, /must be true or false, got /);
  assert.match(error.message, got);
  return true;
};
/** A pool that must not be queried: the option is refused first. */
const unusedPool = untyped<pg.Pool>({
  query() {
    throw new Error('queried before the options were checked');
  },
});

describe('a boolean option given anything but true or false', () => {
  it('is refused rather than read as truthy or falsy', async () => {
    assert.throws(
      () =>
        resolveConsumer(
          untyped<AnyConsumerDefinition>({
            name: 'orders',
            exchange: 'shop',
            handler: async () => {},
            ordered: 'false',
          }),
          { brokerConsumerTimeoutMs: 30 * 60_000 },
        ),
      notBoolean('consumers[orders].ordered', /'false' \(a string\)/),
    );
    const relay = (options: object) => () =>
      resolveRelayOptions(untyped({ databaseUrl: 'postgres://x', amqpUrl, ...options }));
    assert.throws(relay({ listen: 'false' }), notBoolean('listen', /'false' \(a string\)/));
    assert.throws(
      relay({ retry: { unroutable: 1 } }),
      notBoolean('retry.unroutable', /1 \(a number\)/),
    );
    assert.throws(
      relay({ exchanges: [{ name: 'shop', durable: 'no' }] }),
      notBoolean('exchanges[0].durable', /'no'/),
    );
    assert.throws(
      () => exchangeDeclarations([untyped({ name: 'shop', durable: 0 })]),
      /durable`: must be true or false, got 0 \(a number\)/,
    );
    assert.throws(
      () => tlsConnectionOptions('amqpTls', { rejectUnauthorized: 'false' }),
      notBoolean('amqpTls.rejectUnauthorized', /'false'/),
    );
    const module = (options: object) => () =>
      resolveModuleOptions(
        untyped({ databaseUrl: 'postgres://x', amqpUrl, ...options }),
        silentLogger,
      );
    assert.throws(module({ migrate: 'yes' }), notBoolean('migrate', /'yes' \(a string\)/));
    assert.throws(module({ enhancers: 'true' }), notBoolean('enhancers', /'true'/));
    assert.throws(
      module({ preparedStatements: 1 }),
      notBoolean('preparedStatements', /1 \(a number\)/),
    );
    assert.throws(
      () => new OutboxWriter(untyped({ preparedStatements: 'yes' })),
      notBoolean('preparedStatements', /'yes'/),
    );
    assert.throws(
      () => new OutboxDashboard(untyped({ pool: unusedPool, allowReplay: 'false' })),
      notBoolean('allowReplay', /'false'/),
    );
    assert.throws(
      () => new OutboxDashboard(untyped({ pool: unusedPool, trustForwardedHost: 'yes' })),
      notBoolean('trustForwardedHost', /'yes'/),
    );
    await assert.rejects(
      outboxStatus(unusedPool, untyped({ includeProcessed: 'yes' })),
      notBoolean('includeProcessed', /'yes'/),
    );
    await assert.rejects(
      flushOutbox(unusedPool, untyped({ failOnParked: 'false' })),
      notBoolean('failOnParked', /'false'/),
    );
  });

  it("is refused in @OutboxHandler's ordered, at decoration", () => {
    const placed = defineMessage<{ id: string }>({ exchange: 'shop', routingKey: 'placed' });
    class Handlers {
      async onPlaced(_order: { id: string }) {}
    }
    const descriptor = Object.getOwnPropertyDescriptor(Handlers.prototype, 'onPlaced')!;
    assert.throws(
      () =>
        OutboxHandler(placed, untyped({ name: 'orders', ordered: 'yes' }))(
          Handlers.prototype,
          'onPlaced',
          descriptor as never,
        ),
      notBoolean('@OutboxHandler on Handlers.onPlaced: ordered', /'yes' \(a string\)/),
    );
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Logger } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import pino from 'pino';
import { declareExchanges } from '../src/amqp/declare-exchanges.js';
import { ConsumerHost, type ConsumerHostOptions } from '../src/consumer/consumer-host.js';
import { RetentionCleaner } from '../src/consumer/retention-cleaner.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { outboxLoggerFrom } from '../src/nestjs/nest-logger-adapter.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import type { RelayOptions } from '../src/relay/relay-options.js';
import { resolveLogger } from '../src/util/resolve-logger.js';
import { untyped } from './support/untyped.js';

const amqpUrl = 'amqp://localhost';
const noop = () => {};
/** Each shape the tester gave, and the words the message must hold. */
const BAD: Array<[unknown, RegExp]> = [
  [{}, /without debug, info, warn, error/],
  [5, /got 5 \(a number\)/],
  ['x', /got "x" \(a string\)/],
  [null, /null/],
  [{ info: noop, error: noop }, /without debug, warn/],
];
const refused = (pattern: RegExp) => (error: unknown) => {
  assert.ok(error instanceof ConfigurationError, String(error));
  assert.equal(error.option, 'logger');
  assert.match(error.message, pattern);
  return true;
};

describe('a logger that is not one', () => {
  it('is refused at construction by every component, naming what is missing', async () => {
    for (const [logger, pattern] of BAD) {
      assert.throws(() => resolveLogger(untyped(logger), noop as never), refused(pattern));
      assert.throws(
        () =>
          new OutboxRelay(untyped<RelayOptions>({ databaseUrl: 'postgres://x', amqpUrl, logger })),
        refused(pattern),
      );
      assert.throws(
        () =>
          new ConsumerHost(
            untyped<ConsumerHostOptions>({
              db: { transaction() {} },
              amqpUrl,
              consumers: [],
              logger,
            }),
          ),
        refused(pattern),
      );
      assert.throws(() => new RetentionCleaner(untyped({ db: {}, logger })), refused(pattern));
      await assert.rejects(declareExchanges(amqpUrl, [], untyped({ logger })), refused(pattern));
      await assert.rejects(collectMetrics(untyped({ logger })), refused(pattern));
    }
  });

  it('is refused by the Nest module, which also takes a LoggerService', () => {
    for (const bad of [{}, 'debug', null, 5, { log: noop, error: noop }]) {
      assert.throws(() => outboxLoggerFrom(untyped(bad)), refused(/LoggerService/));
    }
    assert.throws(() => outboxLoggerFrom(untyped({ log: noop })), refused(/without warn, error/));
    // Every shape accepted before still is.
    outboxLoggerFrom(new Logger('x'));
    outboxLoggerFrom({ log: noop, warn: noop, error: noop });
    outboxLoggerFrom({ debug: noop, info: noop, warn: noop, error: noop });
    outboxLoggerFrom(new PinoLogger({ pinoHttp: { logger: pino({ enabled: false }) } }));
    outboxLoggerFrom(false);
    outboxLoggerFrom(undefined);
    resolveLogger(untyped(pino({ enabled: false })), noop as never);
  });
});

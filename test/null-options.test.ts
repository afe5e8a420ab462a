import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AnyConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost, type ConsumerHostOptions } from '../src/consumer/consumer-host.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { positiveInteger } from '../src/util/positive-integer.js';
import { untyped } from './support/untyped.js';

const amqpUrl = 'amqp://localhost';
const refusedNull = (option: string) => (error: unknown) => {
  assert.ok(error instanceof ConfigurationError, String(error));
  assert.equal(error.option, option);
  assert.match(error.message, /null/);
  return true;
};

describe('null options', () => {
  it('are refused, not taken for the default: only undefined means the default', () => {
    assert.throws(() => positiveInteger('some.option', null, 5), refusedNull('some.option'));
    const consumer = (options: object) => () =>
      resolveConsumer(
        untyped<AnyConsumerDefinition>({
          name: 'orders',
          exchange: 'shop',
          handler: async () => {},
          ...options,
        }),
        { brokerConsumerTimeoutMs: 30 * 60_000 },
      );
    assert.throws(consumer({ concurrency: null }), refusedNull('consumers[orders].concurrency'));
    assert.throws(
      consumer({ retry: { maxAttempts: null } }),
      refusedNull('consumers[orders].retry.maxAttempts'),
    );
    assert.throws(
      consumer({ retry: { backoff: { initialMs: null } } }),
      refusedNull('consumers[orders].retry.backoff.initialMs'),
    );
    assert.throws(
      () =>
        resolveRelayOptions(untyped({ databaseUrl: 'postgres://x', amqpUrl, concurrency: null })),
      refusedNull('concurrency'),
    );
    assert.throws(
      () =>
        new ConsumerHost(
          untyped<ConsumerHostOptions>({
            db: { transaction() {} },
            amqpUrl,
            consumers: [],
            stopTimeoutMs: null,
          }),
        ),
      refusedNull('stopTimeoutMs'),
    );
  });
});

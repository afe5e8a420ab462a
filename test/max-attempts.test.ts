import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AnyConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost, type ConsumerHostOptions } from '../src/consumer/consumer-host.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { MAX_ATTEMPTS } from '../src/options/max-attempts-option.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { untyped } from './support/untyped.js';

const amqpUrl = 'amqp://localhost';
const host = (maxAttempts: number) => () =>
  new ConsumerHost(
    untyped<ConsumerHostOptions>({
      db: { transaction() {} },
      amqpUrl,
      retention: false,
      consumers: [
        untyped<AnyConsumerDefinition>({
          name: 'orders',
          exchange: 'shop',
          handler: async () => {},
          retry: { maxAttempts },
        }),
      ],
    }),
  );
const tooMany = (option: string) => (error: unknown) => {
  assert.ok(error instanceof ConfigurationError, String(error));
  assert.equal(error.option, option);
  assert.match(error.message, /must be at most 10000/);
  return true;
};

describe('retry.maxAttempts', () => {
  it('is refused above its maximum, before any per-attempt array is made', () => {
    // 1e8 ran out of memory here; MAX_SAFE_INTEGER was a raw RangeError.
    for (const n of [MAX_ATTEMPTS + 1, 1e8, Number.MAX_SAFE_INTEGER]) {
      assert.throws(host(n), tooMany('consumers[orders].retry.maxAttempts'));
      assert.throws(
        () =>
          resolveRelayOptions(
            untyped({ databaseUrl: 'postgres://x', amqpUrl, retry: { maxAttempts: n } }),
          ),
        tooMany('retry.maxAttempts'),
      );
    }
    host(MAX_ATTEMPTS)();
  });
});

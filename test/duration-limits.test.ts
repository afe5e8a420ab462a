import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { declareExchanges } from '../src/amqp/declare-exchanges.js';
import type { AnyConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost, type ConsumerHostOptions } from '../src/consumer/consumer-host.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { RetentionCleaner } from '../src/consumer/retention-cleaner.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { prismaConsumerTransactions } from '../src/prisma/prisma-consumer-transactions.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { MAX_PUBLISH_TIMEOUT_MS, stallTimeoutMs } from '../src/relay/stall-timeout.js';
import { MAX_TIMER_MS } from '../src/util/duration-option.js';
import { untyped } from './support/untyped.js';

const amqpUrl = 'amqp://localhost';
const DAYS_30 = 30 * 24 * 3600_000;
const tooLong =
  (option: string, limit = /at most 2147483647 ms \(about 24\.8 days\)/) =>
  (error: unknown) => {
    assert.ok(error instanceof ConfigurationError, String(error));
    assert.equal(error.option, option);
    assert.match(error.message, limit);
    return true;
  };
const relay = (options: object) => () =>
  resolveRelayOptions(untyped({ databaseUrl: 'postgres://x', amqpUrl, ...options }));
const host = (options: object) => () =>
  new ConsumerHost(
    untyped<ConsumerHostOptions>({ db: { transaction() {} }, amqpUrl, consumers: [], ...options }),
  );

describe('a duration longer than a Node timer takes', () => {
  it('is refused, naming the option and the limit, rather than firing after 1 ms', async () => {
    assert.throws(
      () => new RetentionCleaner(untyped({ db: {}, intervalMs: DAYS_30 })),
      tooLong('retention.intervalMs'),
    );
    assert.throws(host({ retention: { intervalMs: DAYS_30 } }), tooLong('retention.intervalMs'));
    assert.throws(host({ startTimeoutMs: 2 ** 40 }), tooLong('startTimeoutMs'));
    assert.throws(host({ stopTimeoutMs: 2 ** 31 }), tooLong('stopTimeoutMs'));
    assert.throws(host({ rebalanceIntervalMs: 2 ** 31 }), tooLong('rebalanceIntervalMs'));
    assert.throws(
      host({ reconnectBackoff: { initialMs: 1, maxMs: 2 ** 31 } }),
      tooLong('reconnectBackoff.maxMs'),
    );
    assert.throws(host({ heartbeatSeconds: 65_536 }), /at most 65535 s/);
    assert.throws(relay({ stopTimeoutMs: 2 ** 31 }), tooLong('stopTimeoutMs'));
    assert.throws(relay({ pollIntervalMs: 2 ** 31 }), tooLong('pollIntervalMs'));
    assert.throws(
      relay({ retry: { backoff: { initialMs: 2 ** 31, maxMs: 2 ** 32 } } }),
      tooLong('retry.backoff.initialMs'),
    );
    assert.throws(
      () =>
        resolveConsumer(
          untyped<AnyConsumerDefinition>({
            name: 'orders',
            exchange: 'shop',
            handler: async () => {},
            timeoutMs: 2 ** 31,
          }),
          { brokerConsumerTimeoutMs: 30 * 60_000 },
        ),
      tooLong('consumers[orders].timeoutMs'),
    );
    await assert.rejects(
      declareExchanges(amqpUrl, [], { timeoutMs: 2 ** 40 }),
      tooLong('timeoutMs'),
    );
    assert.throws(
      () =>
        prismaConsumerTransactions(
          untyped<never>({ $transaction: async () => {}, $disconnect: async () => {} }),
          { maxWaitMs: 2 ** 31 },
        ),
      tooLong('maxWaitMs'),
    );
    // The limit itself is taken.
    assert.equal(relay({ stopTimeoutMs: MAX_TIMER_MS })().stopTimeoutMs, MAX_TIMER_MS);
  });

  it("bounds the relay's publishTimeoutMs so Postgres takes the stall timeout derived from it", () => {
    assert.ok(stallTimeoutMs(MAX_PUBLISH_TIMEOUT_MS) <= MAX_TIMER_MS);
    assert.ok(stallTimeoutMs(MAX_PUBLISH_TIMEOUT_MS + 1) > MAX_TIMER_MS);
    assert.equal(
      relay({ publishTimeoutMs: MAX_PUBLISH_TIMEOUT_MS })().publishTimeoutMs,
      MAX_PUBLISH_TIMEOUT_MS,
    );
    assert.throws(
      relay({ publishTimeoutMs: 1.07e9 + 10_000_000 }),
      tooLong('publishTimeoutMs', /at most 1073736823 ms: .*idle_in_transaction_session_timeout/),
    );
  });
});

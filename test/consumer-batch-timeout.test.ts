import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';

/**
 * A batch's deliveries stay unacked while its handlers run one after another: with batchSize
 * 4 and handlers of 1.5 s against a 5 s consumer timeout, the broker closed the channel, and
 * nothing had said the settings allowed it (a probe's figures).
 */
describe("consumer host: batches against the broker's consumer timeout", () => {
  const pool = new pg.Pool({ connectionString: DATABASE_URL });
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  after(() => db.destroy());

  const warningsFor = (batchSize: number) => {
    const logger = recordingLogger();
    new ConsumerHost({
      db,
      amqpUrl: AMQP_URL,
      logger,
      brokerConsumerTimeoutMs: 5000,
      databaseRetryLimitMs: 1000,
      consumers: [
        { name: 'batched', exchange: 'shop', handler: async () => {}, batchSize, timeoutMs: 1500 },
      ],
    });
    return logger.lines.filter((l) => l.level === 'warn').map((l) => l.text);
  };

  it('warns when a batch may outlast it, naming what to change', () => {
    const [warning, ...rest] = warningsFor(4);
    assert.match(warning ?? '', /^a batch may outlast the broker's consumer timeout/);
    assert.match(warning ?? '', /"longestMs":7500/);
    assert.deepEqual(rest, []);
  });

  it('says nothing when it cannot, and for one message at a time', () => {
    assert.deepEqual(warningsFor(2), []);
    assert.deepEqual(warningsFor(1), []);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { FIRST_CLAIM_LIMIT, nextClaimLimit } from '../src/relay/claim-limit.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { waitFor } from './support/wait-for.js';

const KIB = 1024;
const MIB = 1024 * KIB;

describe('nextClaimLimit', () => {
  it('takes batchSize rows of small messages', () => {
    assert.equal(nextClaimLimit([KIB, 900, 2 * KIB], 2000, 4 * MIB), 2000);
  });

  it('sizes the claim from the largest message of the last one', () => {
    assert.equal(nextClaimLimit([KIB, MIB, KIB], 2000, 4 * MIB), 4);
    assert.equal(nextClaimLimit([300 * KIB], 2000, MIB), 3);
  });

  it('claims one row when a single message exceeds the budget', () => {
    assert.equal(nextClaimLimit([64 * MIB], 2000, 4 * MIB), 1);
  });

  it('grows back at once when the messages are small again', () => {
    assert.equal(nextClaimLimit([200], 2000, 4 * MIB), 2000);
    assert.equal(nextClaimLimit([], 500, 4 * MIB), 500);
  });
});

describe('maxBatchBytes: bad values', () => {
  for (const value of [0, -1, 1.5, '4mb']) {
    it(`refuses ${JSON.stringify(value)} with a ConfigurationError naming the option`, () => {
      assert.throws(
        () =>
          resolveRelayOptions({
            databaseUrl: 'postgres://localhost/db',
            amqpUrl: 'amqp://localhost',
            maxBatchBytes: value as number,
          }),
        (error: unknown) =>
          error instanceof ConfigurationError && /`maxBatchBytes`/.test(error.message),
      );
    });
  }
  it('defaults to 4 MiB, with 1000 rows a batch', () => {
    const options = resolveRelayOptions({
      databaseUrl: 'postgres://localhost/db',
      amqpUrl: 'amqp://localhost',
    });
    assert.equal(options.maxBatchBytes, 4 * MIB);
    assert.equal(options.batchSize, 1000);
  });
});

describe('OutboxRelay: maxBatchBytes', () => {
  const bed = relayTestBed('relay_batch_bytes');

  it('publishes large messages in batches of about maxBatchBytes', async () => {
    const exchange = await bed.broker.exchange('bytes', 'direct');
    const queue = await bed.broker.queue('bytes', exchange, 'k');
    const count = FIRST_CLAIM_LIMIT + 36;
    const pad = 'x'.repeat(250 * KIB);
    await writeMessages(
      bed.t,
      Array.from({ length: count }, (_, i) => ({ exchange, routingKey: 'k', payload: { i, pad } })),
      10,
    );
    const relay = await bed.start({ concurrency: 1, batchSize: 2000, maxBatchBytes: MIB });
    await waitFor('every row published', () => relay.stats().published === count);
    // The first claim takes FIRST_CLAIM_LIMIT rows, every later one 4 (1 MiB / 250 KiB): 36 / 4.
    // Without the byte budget the relay takes the rest in one or two batches.
    assert.ok(relay.stats().batches >= 1 + 36 / 4, `batches: ${relay.stats().batches}`);
    const messages = await bed.broker.drain(queue);
    assert.equal(messages.length, count);
  });
});

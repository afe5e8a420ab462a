import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ParkedMessages } from '../src/dead-letters/parked-messages.js';
import { AMQP_URL } from './support/env.js';
import { writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

/**
 * A message whose headers do not fit in one frame of the size the broker negotiated: amqplib
 * sends it anyway, and the broker closes the whole connection (501 FRAME_ERROR). The relay took
 * that for a broker fault, never counted it, and tried the row forever, its key's later rows
 * waiting behind it (36 rows stuck after 60 s in the probe, 10 connections made).
 */
describe('OutboxRelay: headers larger than the broker frame', () => {
  const bed = relayTestBed('relay_frame_max');

  it('parks the row at once and publishes the rest of its key in order', async () => {
    const exchange = await bed.broker.exchange('frame-max', 'direct');
    const queue = await bed.broker.queue('frame-max', exchange, 'k');
    const big = new Set([4, 11]);
    await writeMessages(
      bed.t,
      Array.from({ length: 20 }, (_, i) => ({
        exchange,
        routingKey: 'k',
        payload: { i },
        messageId: `frame-${i}`,
        orderingKey: 'one',
        // Within the writer's limit (56 KiB), over a 4 KiB frame.
        ...(big.has(i) && { headers: { note: 'x'.repeat(5000) } }),
      })),
    );
    const url = new URL(AMQP_URL);
    url.searchParams.set('frameMax', '4096');
    const relay = await bed.start({ amqpUrl: url.toString() });
    await waitFor('the outbox drained', async () => (await bed.t.count()) === 0, 10_000);
    await relay.stop();
    const parked = await new ParkedMessages({ pool: bed.t.pool, schema: bed.t.schema }).list();
    assert.deepEqual(parked.map((p) => p.messageId).sort(), ['frame-11', 'frame-4']);
    for (const p of parked) assert.match(p.reason, /headers too large/);
    const delivered = (await bed.broker.drain(queue)).map((m) => (payloadOf(m) as { i: number }).i);
    assert.deepEqual(
      delivered,
      Array.from({ length: 20 }, (_, i) => i).filter((i) => !big.has(i)),
    );
    assert.equal(relay.stats().errors, 0, 'batches failed');
  });
});

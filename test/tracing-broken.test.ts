import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncHooksContextManager } from '@opentelemetry/context-async-hooks';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { testRelay } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

const broken = () => {
  throw new Error('broken tracing plugin');
};

/** A span whose every method throws, as a faulty span processor makes `end()` do. */
const brokenSpan = new Proxy({}, { get: () => broken });

/**
 * The application's tracing is broken: its propagator throws on inject and extract, and its
 * spans throw on every call. The API passes all of that through; outboxkit must not.
 */
describe('tracing with a broken OpenTelemetry set-up', () => {
  let f: ConsumerFixture;
  let host: ConsumerHost;
  let relay: OutboxRelay;
  let queue: string;
  const handled: string[] = [];

  before(async () => {
    context.setGlobalContextManager(new AsyncHooksContextManager().enable());
    propagation.setGlobalPropagator({ inject: broken, extract: broken, fields: () => [] });
    trace.setGlobalTracerProvider({
      getTracer: () => ({ startSpan: () => brokenSpan, startActiveSpan: broken }),
    } as unknown as Parameters<typeof trace.setGlobalTracerProvider>[0]);
    f = await ConsumerFixture.open('trace_broken');
    const definition = f.definition<{ key: string }>(
      'broken_tracing',
      async (payload, ctx: ConsumeContext) => {
        await f.recordEffect(payload, ctx);
        handled.push(ctx.messageId!);
      },
      { businessKey: (payload) => payload.key, routingKeys: ['order.*'] },
    );
    queue = definition.name;
    host = await f.host([definition]);
    relay = testRelay(f.t);
    await relay.start();
  });
  after(async () => {
    await relay.stop();
    await f.close();
    trace.disable();
    propagation.disable();
    context.disable();
  });

  it('writes, publishes and handles messages as if tracing were off', async () => {
    const writer = new OutboxWriter({ schema: f.t.schema });
    const ids = await f.t.db.transaction().execute((trx) =>
      writer.addMany(trx, [
        { exchange: f.name('events'), routingKey: 'order.placed', payload: { key: 'a' } },
        { exchange: f.name('events'), routingKey: 'order.placed', payload: { key: 'b' } },
      ]),
    );
    const { rows } = await f.t.pool.query<{ headers: unknown }>(
      `SELECT headers FROM "${f.t.schema}".outbox WHERE message_id = ANY($1)`,
      [ids],
    );
    // Either still in the outbox without trace headers, or already published.
    for (const row of rows) assert.equal(row.headers, null);
    await waitFor('both messages handled and acked', () => host.stats(queue).handled === 2);
    assert.deepEqual([...handled].sort(), [...ids].sort());
    assert.equal(await f.effectCount(), 2);
    await waitFor('the deliveries acked', () => host.inFlight === 0);
  });
});

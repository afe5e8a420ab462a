import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { context, propagation, SpanKind, trace } from '@opentelemetry/api';
import { AsyncHooksContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { testRelay } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

/**
 * HTTP request → outbox → relay → consumer handler, as one trace: the request's SERVER span
 * (made here as HTTP instrumentation would), the relay's PRODUCER span, the consumer's CONSUMER
 * span, and a span the handler makes, each the parent of the next.
 */
describe('one trace from an HTTP request to the handler', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  let f: ConsumerFixture;
  let relay: OutboxRelay;
  let server: Server;

  before(async () => {
    trace.setGlobalTracerProvider(provider);
    context.setGlobalContextManager(new AsyncHooksContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    f = await ConsumerFixture.open('e2etrace');
    const writer = new OutboxWriter({ schema: f.t.schema });
    await f.host([
      f.definition('reserve', async (payload, ctx) => {
        await trace.getTracer('inventory').startActiveSpan('reserve stock', async (span) => {
          await f.recordEffect(payload, ctx);
          span.end();
        });
      }),
    ]);
    relay = testRelay(f.t);
    await relay.start();
    server = createServer((request, response) => {
      trace
        .getTracer('http')
        .startActiveSpan(`${request.method} /orders`, { kind: SpanKind.SERVER }, async (span) => {
          const id = await f.t.db.transaction().execute((trx) =>
            writer.add(trx, {
              exchange: f.name('events'),
              routingKey: 'order.placed',
              payload: { order: 1 },
            }),
          );
          response.writeHead(202, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ id }));
          span.end();
        });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    await relay.stop();
    await f.close();
    trace.disable();
    context.disable();
    propagation.disable();
    await provider.shutdown();
  });

  it('runs request → publish → process → handler span, parent to child', async () => {
    const { port } = server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/orders`, { method: 'POST' });
    assert.equal(response.status, 202);
    const { id } = (await response.json()) as { id: string };

    const find = (name: string) =>
      waitFor(
        `span ${name}`,
        () => exporter.getFinishedSpans().find((s) => s.name === name),
        30_000,
      );
    const http = await find('POST /orders');
    const publish = await find(`publish ${f.name('events')}`);
    const process = await find(`process ${f.name('reserve')}`);
    const handler = await find('reserve stock');

    const chain: ReadableSpan[] = [http, publish, process, handler];
    assert.deepEqual(
      chain.map((s) => s.kind),
      [SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL],
    );
    for (const s of chain) assert.equal(s.spanContext().traceId, http.spanContext().traceId);
    assert.equal(http.parentSpanContext, undefined);
    for (let i = 1; i < chain.length; i += 1) {
      assert.equal(
        chain[i]!.parentSpanContext?.spanId,
        chain[i - 1]!.spanContext().spanId,
        `${chain[i]!.name} is a child of ${chain[i - 1]!.name}`,
      );
    }
    assert.equal(publish.attributes['messaging.message.id'], id);
    assert.equal(process.attributes['messaging.message.id'], id);
    assert.equal(publish.attributes['messaging.operation.type'], 'send');
    assert.equal(process.attributes['messaging.operation.type'], 'process');
    // The message waited in the outbox from the write until the relay claimed it, and its
    // publish took until the broker's confirm.
    assert.ok((publish.attributes['outboxkit.outbox.wait.duration'] as number) >= 0);
    assert.ok((publish.attributes['outboxkit.confirm.duration'] as number) > 0);
  });
});

import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as otel from '@opentelemetry/api';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncHooksContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { loadOtelApi, type OtelApi } from '../src/tracing/otel-api.js';
import { encodeMessage } from '../src/writer/encode-message.js';
import type { HeaderValue } from '../src/writer/outbox-message.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { testRelay } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

// Compile-time check that the real API fits the part outboxkit declares for itself.
const realApi: OtelApi = otel;

interface Seen {
  readonly headers: Readonly<Record<string, unknown>>;
  /** The span active while the handler ran. */
  readonly active: otel.SpanContext | undefined;
}

describe('tracing with OpenTelemetry', () => {
  let f: ConsumerFixture;
  let host: ConsumerHost;
  let relay: OutboxRelay;
  let writer: OutboxWriter;
  let queue: string;
  const seen = new Map<string, Seen>();

  before(async () => {
    f = await ConsumerFixture.open('trace');
    writer = new OutboxWriter({ schema: f.t.schema });
    const definition = f.definition<{ key: string; fail?: boolean }>(
      'traced',
      async (payload, ctx: ConsumeContext) => {
        seen.set(ctx.messageId!, {
          headers: ctx.headers,
          active: trace.getActiveSpan()?.spanContext(),
        });
        if (payload.fail) throw new PermanentError('the order is not valid');
        await f.recordEffect(payload, ctx);
      },
      { businessKey: (payload) => payload.key, routingKeys: ['order.*'] },
    );
    queue = definition.name;
    const batched = f.definition(
      'batched',
      async (_payload, ctx: ConsumeContext) => {
        seen.set(ctx.messageId!, {
          headers: ctx.headers,
          active: trace.getActiveSpan()?.spanContext(),
        });
      },
      { routingKeys: ['batch.*'], batchSize: 10 },
    );
    // The consumers first: they declare the exchange the relay publishes to.
    host = await f.host([definition, batched]);
    relay = testRelay(f.t);
    await relay.start();
  });
  after(async () => {
    await relay.stop();
    await f.close();
  });

  /** Writes one message in a transaction of its own, in the active context; returns its id. */
  const write = (
    payload: { key: string; fail?: boolean },
    headers?: Record<string, HeaderValue>,
  ): Promise<string> =>
    f.t.db.transaction().execute((trx) =>
      writer.add(trx, {
        exchange: f.name('events'),
        routingKey: 'order.placed',
        payload,
        ...(headers && { headers }),
      }),
    );

  const handled = (id: string) => waitFor(`message ${id} handled`, () => seen.get(id), 30_000);

  it('finds @opentelemetry/api when installed, and does without it when not', () => {
    assert.equal(realApi.trace, trace);
    assert.equal(
      loadOtelApi(() => {
        throw Object.assign(new Error('Cannot find module'), { code: 'MODULE_NOT_FOUND' });
      }),
      null,
    );
  });

  describe('without a tracer provider', () => {
    it('adds no header and handles messages as before', async () => {
      const id = await write({ key: 'untraced' }, { tenant: 't1' });
      const { headers, active } = await handled(id);
      assert.equal(headers.tenant, 't1');
      assert.equal(headers.traceparent, undefined);
      assert.equal(active, undefined);
      await waitFor('the handler to commit', () => host.stats(queue).handled === 1);
    });
  });

  describe('with the SDK registered', () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const tracer = () => trace.getTracer('test');

    before(() => {
      trace.setGlobalTracerProvider(provider);
      context.setGlobalContextManager(new AsyncHooksContextManager().enable());
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    });
    after(async () => {
      trace.disable();
      context.disable();
      propagation.disable();
      await provider.shutdown();
    });

    /** Runs `fn` in an ended-afterwards "http request" span; returns its result and context. */
    const inRequest = async <T>(fn: () => Promise<T>) =>
      tracer().startActiveSpan('http request', { kind: SpanKind.SERVER }, async (span) => {
        try {
          return { result: await fn(), request: span.spanContext() };
        } finally {
          span.end();
        }
      });

    const spanOf = (kind: SpanKind, id: string) =>
      waitFor(`the ${SpanKind[kind]} span of ${id}`, () =>
        exporter
          .getFinishedSpans()
          .find((s) => s.kind === kind && s.attributes['messaging.message.id'] === id),
      );
    const consumerSpan = (id: string) => spanOf(SpanKind.CONSUMER, id);
    const publishSpan = (id: string) => spanOf(SpanKind.PRODUCER, id);

    it('continues the trace from the request that wrote the message to the handler', async () => {
      const { result: id, request } = await inRequest(() => write({ key: 'traced' }));
      const { headers, active } = await handled(id);

      // request → the relay's publish (PRODUCER) → the handler's processing (CONSUMER).
      const publish = await publishSpan(id);
      assert.equal(publish.spanContext().traceId, request.traceId);
      assert.equal(publish.parentSpanContext?.spanId, request.spanId);
      assert.equal(publish.name, `publish ${f.name('events')}`);
      assert.equal(publish.status.code, SpanStatusCode.UNSET);
      assert.equal(publish.attributes['messaging.system'], 'rabbitmq');
      assert.equal(publish.attributes['messaging.operation.type'], 'send');
      assert.equal(publish.attributes['messaging.destination.name'], f.name('events'));
      assert.equal(
        publish.attributes['messaging.rabbitmq.destination.routing_key'],
        'order.placed',
      );
      assert.equal(publish.attributes['outboxkit.confirm.result'], 'confirmed');
      assert.ok((publish.attributes['outboxkit.outbox.wait.duration'] as number) >= 0);
      assert.ok((publish.attributes['outboxkit.confirm.duration'] as number) > 0);
      // The relay put its own span's context into the published headers.
      assert.equal(headers.traceparent, `00-${request.traceId}-${publish.spanContext().spanId}-01`);

      const span = await consumerSpan(id);
      assert.equal(span.spanContext().traceId, request.traceId);
      assert.equal(span.parentSpanContext?.spanId, publish.spanContext().spanId);
      assert.equal(span.parentSpanContext?.isRemote, true);
      assert.equal(span.name, `process ${queue}`);
      assert.equal(span.status.code, SpanStatusCode.UNSET);
      assert.equal(span.attributes['messaging.system'], 'rabbitmq');
      assert.equal(span.attributes['messaging.operation.type'], 'process');
      assert.equal(span.attributes['messaging.operation'], 'process');
      assert.equal(span.attributes['messaging.destination.name'], f.name('events'));
      assert.equal(span.attributes['messaging.destination.subscription.name'], queue);
      assert.equal(span.attributes['outboxkit.attempt'], 1);
      assert.equal(span.attributes['outboxkit.duplicate'], undefined);
      // The handler ran inside the consumer span.
      assert.equal(active?.spanId, span.spanContext().spanId);
    });

    it('keeps a traceparent the caller set', async () => {
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      const parentId = 'b7ad6b7169203331';
      const traceparent = `00-${traceId}-${parentId}-01`;
      const { result: id } = await inRequest(() => write({ key: 'explicit' }, { traceparent }));
      await handled(id);
      const publish = await publishSpan(id);
      assert.equal(publish.spanContext().traceId, traceId);
      assert.equal(publish.parentSpanContext?.spanId, parentId);
      const span = await consumerSpan(id);
      assert.equal(span.spanContext().traceId, traceId);
      assert.equal(span.parentSpanContext?.spanId, publish.spanContext().spanId);
    });

    it('adds no traceparent outside a span; the relay span then starts a trace', async () => {
      const id = await write({ key: 'no-span' });
      await handled(id);
      const publish = await publishSpan(id);
      assert.equal(publish.parentSpanContext, undefined);
      const span = await consumerSpan(id);
      assert.equal(span.parentSpanContext?.spanId, publish.spanContext().spanId);
    });

    it('marks the span of a failing handler as an error, with the exception', async () => {
      const { result: id, request } = await inRequest(() => write({ key: 'bad', fail: true }));
      const span = await consumerSpan(id);
      assert.equal(span.spanContext().traceId, request.traceId);
      assert.equal(span.status.code, SpanStatusCode.ERROR);
      assert.equal(span.status.message, 'the order is not valid');
      const exception = span.events.find((e) => e.name === 'exception');
      assert.equal(exception?.attributes?.['exception.message'], 'the order is not valid');
      await waitFor('the message dead-lettered', () => host.stats(queue).deadLettered === 1);
    });

    it('gives each message of a batch its own span, active while its handler runs', async () => {
      const { result: ids, request } = await inRequest(() =>
        f.t.db.transaction().execute((trx) =>
          writer.addMany(
            trx,
            Array.from({ length: 5 }, (_, i) => ({
              exchange: f.name('events'),
              routingKey: 'batch.item',
              payload: { i },
            })),
          ),
        ),
      );
      for (const id of ids) {
        const publish = await publishSpan(id);
        assert.equal(publish.parentSpanContext?.spanId, request.spanId);
        const span = await consumerSpan(id);
        assert.equal(span.parentSpanContext?.spanId, publish.spanContext().spanId);
        assert.equal(span.name, `process ${f.name('batched')}`);
        assert.equal((await handled(id)).active?.spanId, span.spanContext().spanId);
      }
    });

    it('writes and consumes as before where @opentelemetry/api cannot be resolved', async () => {
      // A copy of the compiled core outside this repository resolves no node_modules: the
      // application without the optional peer.
      const dir = await mkdtemp(path.join(tmpdir(), 'outboxkit-no-otel-'));
      try {
        const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');
        await cp(src, dir, { recursive: true, filter: (p) => !p.endsWith('.map') });
        await writeFile(path.join(dir, 'package.json'), '{"type":"module"}');
        const load = (file: string) => import(pathToFileURL(path.join(dir, file)).href);
        const copy = (await load(
          'writer/encode-message.js',
        )) as typeof import('../src/writer/encode-message.js');
        const { ProcessSpan } = (await load(
          'tracing/process-span.js',
        )) as typeof import('../src/tracing/process-span.js');
        const message = { exchange: 'e', routingKey: 'r', payload: {}, headers: { a: 1 } };
        await tracer().startActiveSpan('http request', async (span) => {
          // The API installed here adds a traceparent; the copy, without it, adds nothing.
          assert.match(encodeMessage(message, 0, 1024).headers!, /"traceparent":"00-/);
          assert.equal(copy.encodeMessage(message, 0, 1024).headers, '{"a":1}');
          span.end();
        });
        const info = { headers: {}, exchange: 'e', routingKey: 'r' } as never;
        assert.equal(
          ProcessSpan.start({ queue: 'q', consumer: 'c', info, attempt: 1, bodySize: 2 }),
          undefined,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('flags a duplicate whose handler did not run', async () => {
      const first = await write({ key: 'twice' });
      await handled(first);
      const second = await write({ key: 'twice' });
      await waitFor('the duplicate suppressed', () => host.stats(queue).duplicates === 1);
      const spans: ReadableSpan[] = [await consumerSpan(first), await consumerSpan(second)];
      assert.deepEqual(
        spans.map((s) => s.attributes['outboxkit.duplicate']),
        [undefined, true],
      );
      assert.equal(spans[1]!.status.code, SpanStatusCode.UNSET);
      assert.equal(seen.has(second), false);
    });
  });
});

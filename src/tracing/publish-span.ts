import { performance } from 'node:perf_hooks';
import type { Options } from 'amqplib';
import { type ConfirmResult, describeConfirmResult } from '../amqp/confirmed-publisher.js';
import type { OutboxRow } from '../relay/outbox-row.js';
import {
  activeTracer,
  type OtelApi,
  type OtelSpan,
  type OtelTracer,
  otelApi,
  traceSafely,
} from './otel-api.js';
import { HEADER_GETTER, TRACER_NAME } from './process-span.js';

/**
 * Starts the relay's `PRODUCER` spans of one batch. `undefined` when `@opentelemetry/api` is
 * not installed, or no SDK is registered (every span would be a no-op): the relay then checks
 * once per batch, and does nothing per message.
 */
export function publishTracer(): PublishTracer | undefined {
  const api = otelApi();
  if (!api) return undefined;
  return traceSafely(() => {
    const tracer = activeTracer(api, TRACER_NAME);
    return tracer ? new PublishTracer(api, tracer) : undefined;
  }, undefined);
}

/** Makes one `PRODUCER` span per published outbox row. */
export class PublishTracer {
  readonly #api: OtelApi;
  readonly #tracer: OtelTracer;

  constructor(api: OtelApi, tracer: OtelTracer) {
    this.#api = api;
    this.#tracer = tracer;
  }

  /**
   * Starts the span of `row`'s publish, a child of the context the writer stored in the row's
   * headers (so it joins the trace of the transaction that wrote the message), and puts the
   * span's own context into `properties.headers`, so the consumer's span is its child. A span
   * that does not record (sampled out, or no SDK) leaves the headers as they are.
   */
  start(row: OutboxRow, properties: Options.Publish): PublishSpan | undefined {
    return traceSafely(() => {
      const api = this.#api;
      const parent = api.propagation.extract(api.ROOT_CONTEXT, row.headers ?? {}, HEADER_GETTER);
      const attributes: Record<string, string | number | boolean> = {
        'messaging.system': 'rabbitmq',
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'publish',
        'messaging.destination.name': row.exchange,
        'messaging.rabbitmq.destination.routing_key': row.routing_key,
        'messaging.message.id': row.message_id,
        'messaging.message.body.size': row.payload.length,
        'outboxkit.attempt': row.attempts + 1,
      };
      if (row.correlation_id !== null) {
        attributes['messaging.message.conversation_id'] = row.correlation_id;
      }
      if (row.waited_ms !== undefined) {
        attributes['outboxkit.outbox.wait.duration'] = Math.max(0, row.waited_ms / 1000);
      }
      const span = this.#tracer.startSpan(
        `publish ${row.exchange}`,
        { kind: api.SpanKind.PRODUCER, attributes },
        parent,
      );
      if (span.isRecording() && properties.headers) {
        api.propagation.inject(api.trace.setSpan(parent, span), properties.headers);
      }
      return new PublishSpan(api, span);
    }, undefined);
  }
}

/** One row's publish, from the publish to the broker's answer. */
export class PublishSpan {
  readonly #api: OtelApi;
  readonly #span: OtelSpan;
  readonly #started = performance.now();

  constructor(api: OtelApi, span: OtelSpan) {
    this.#api = api;
    this.#span = span;
  }

  /** Ends the span with the broker's answer; anything but a confirm is an error. */
  end(result: ConfirmResult): void {
    traceSafely(() => {
      const span = this.#span;
      const seconds = (performance.now() - this.#started) / 1000;
      span.setAttribute('outboxkit.confirm.duration', seconds);
      span.setAttribute('outboxkit.confirm.result', result.kind);
      if (result.kind !== 'confirmed') {
        span.setAttribute('error.type', result.kind);
        span.setStatus({
          code: this.#api.SpanStatusCode.ERROR,
          message: describeConfirmResult(result),
        });
      }
      span.end();
    }, undefined);
  }
}

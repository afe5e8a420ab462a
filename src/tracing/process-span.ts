import type { MessageInfo } from '../consumer/consumer-definition.js';
import { errorMessage } from '../util/logger.js';
import { valueText } from '../util/thrown-text.js';
import {
  activeTracer,
  type OtelApi,
  type OtelContext,
  type OtelSpan,
  type OtelTracer,
  otelApi,
  traceSafely,
} from './otel-api.js';

/** The tracer name outboxkit's spans are reported under. */
export const TRACER_NAME = 'outboxkit';

/** What a consumer span describes: one delivery handled by one consumer. */
export interface ProcessSpanInput {
  readonly queue: string;
  readonly consumer: string;
  readonly info: MessageInfo;
  readonly attempt: number;
  readonly bodySize: number;
}

/**
 * A `CONSUMER` span around the processing of one delivery, continuing the trace whose context
 * the message carries in its headers. It ends with the claim transaction, so a span without
 * error status means the handler's effects committed.
 */
export class ProcessSpan {
  readonly #api: OtelApi;
  readonly #span: OtelSpan;
  readonly #context: OtelContext;
  #failed = false;
  #ended = false;

  private constructor(api: OtelApi, span: OtelSpan, context: OtelContext) {
    this.#api = api;
    this.#span = span;
    this.#context = context;
  }

  /**
   * Starts the span, or returns undefined when `@opentelemetry/api` is not installed or the
   * application's tracing throws.
   */
  static start(input: ProcessSpanInput): ProcessSpan | undefined {
    const api = otelApi();
    if (!api) return undefined;
    return traceSafely(() => {
      const tracer = activeTracer(api, TRACER_NAME);
      return tracer ? ProcessSpan.#start(api, tracer, input) : undefined;
    }, undefined);
  }

  static #start(api: OtelApi, tracer: OtelTracer, input: ProcessSpanInput): ProcessSpan {
    const { info } = input;
    // From the root, not the active context: the message's trace is the one to continue,
    // whatever was active when the delivery arrived.
    const parent = api.propagation.extract(api.ROOT_CONTEXT, info.headers, HEADER_GETTER);
    const attributes: Record<string, string | number | boolean> = {
      'messaging.system': 'rabbitmq',
      // `messaging.operation` is the name before semantic conventions 1.26, kept for backends
      // that still read it.
      'messaging.operation': 'process',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.destination.name': info.exchange,
      'messaging.rabbitmq.destination.routing_key': info.routingKey,
      'messaging.destination.subscription.name': input.queue,
      'messaging.message.body.size': input.bodySize,
      'outboxkit.consumer': input.consumer,
      'outboxkit.attempt': input.attempt,
    };
    if (info.messageId !== undefined) attributes['messaging.message.id'] = info.messageId;
    if (info.correlationId !== undefined) {
      attributes['messaging.message.conversation_id'] = info.correlationId;
    }
    const span = tracer.startSpan(
      `process ${input.queue}`,
      { kind: api.SpanKind.CONSUMER, attributes },
      parent,
    );
    return new ProcessSpan(api, span, api.trace.setSpan(parent, span));
  }

  /** Runs `fn` with this span active, so the handler's own spans and writes join its trace. */
  run<T>(fn: () => T): T {
    let called = false;
    try {
      return this.#api.context.with(this.#context, () => {
        called = true;
        return fn();
      });
    } catch (error) {
      // What `fn` threw is the caller's; a context manager that failed before calling it is not.
      if (called) throw error;
      return fn();
    }
  }

  /** The message's key was processed before: its handler did not run. */
  markDuplicate(): void {
    traceSafely(() => this.#span.setAttribute('outboxkit.duplicate', true), undefined);
  }

  /** The handler threw, or ran past its time limit. */
  fail(error: unknown): void {
    // A timed-out handler may throw long after its transaction settled and the span ended.
    if (this.#failed || this.#ended) return;
    this.#failed = true;
    traceSafely(() => {
      this.#span.recordException(error instanceof Error ? error : valueText(error));
      this.#span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message: errorMessage(error) });
    }, undefined);
  }

  /**
   * Ends the span once. `rolledBack` is why the transaction did not commit, when it did not:
   * the span is marked failed even if its own handler succeeded, since its effects are gone.
   */
  end(rolledBack?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    traceSafely(() => {
      if (rolledBack !== undefined && !this.#failed) {
        this.#failed = true;
        this.#span.setStatus({
          code: this.#api.SpanStatusCode.ERROR,
          message: `rolled back: ${errorMessage(rolledBack)}`,
        });
      }
      this.#span.end();
    }, undefined);
  }
}

/**
 * Reads headers as amqplib decodes them (strings, or Buffers for binary values), or as the
 * outbox stores them (JSON).
 */
export const HEADER_GETTER = {
  keys: (headers: Readonly<Record<string, unknown>>) => Object.keys(headers),
  get(headers: Readonly<Record<string, unknown>>, key: string): string | undefined {
    const value = headers[key];
    if (typeof value === 'string') return value;
    return Buffer.isBuffer(value) ? value.toString('utf8') : undefined;
  },
};

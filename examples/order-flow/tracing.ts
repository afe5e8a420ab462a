import {
  type CallHandler,
  type ExecutionContext,
  Injectable,
  type NestInterceptor,
} from '@nestjs/common';
import {
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { finalize, type Observable, tap } from 'rxjs';

// The example's tracing: an OpenTelemetry SDK that keeps the spans in memory, so the run can
// print one order's trace at the end. An application would register the SDK with an exporter
// instead (see docs/observability.md); outboxkit's spans are the same either way.

/** Registers a tracer provider, context manager and propagator; `stop()` removes them. */
export function installTracing(): { exporter: InMemorySpanExporter; stop(): Promise<void> } {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  return {
    exporter,
    async stop() {
      trace.disable();
      context.disable();
      propagation.disable();
      await provider.shutdown();
    },
  };
}

const tracer = () => trace.getTracer('outboxkit-example');

/** Runs `fn` in a new active span, ended (with status `ERROR` on a throw) when it settles. */
export function inSpan<T>(
  name: string,
  attributes: Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn();
    } catch (error) {
      failed(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

function failed(span: Span, error: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
}

/**
 * A `SERVER` span per HTTP request, as HTTP instrumentation would make: the controller, and
 * the outbox writes it makes, run inside it.
 */
@Injectable()
export class HttpSpanInterceptor implements NestInterceptor {
  intercept(execution: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = execution
      .switchToHttp()
      .getRequest<{ method: string; url: string; route?: { path?: string } }>();
    const route = request.route?.path ?? request.url;
    return tracer().startActiveSpan(
      `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': request.method, 'http.route': route },
      },
      // Nest calls the controller in the async context of `handle()`: inside this span.
      (span) =>
        next.handle().pipe(
          tap({ error: (error: unknown) => failed(span, error) }),
          finalize(() => span.end()),
        ),
    );
  }
}

/** One span of a printed trace. */
export interface TraceLine {
  readonly name: string;
  readonly kind: 'SERVER' | 'CLIENT' | 'PRODUCER' | 'CONSUMER' | 'INTERNAL';
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly depth: number;
  readonly startMs: number;
  readonly durationMs: number;
  readonly attributes: ReadableSpan['attributes'];
}

const KINDS = ['INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const;
const ms = (t: readonly [number, number]) => t[0] * 1000 + t[1] / 1e6;

/**
 * The trace whose root span has `attribute` = `value`, depth first from the root, children by
 * start time; empty when there is no such root.
 */
export function traceOf(
  spans: readonly ReadableSpan[],
  attribute: string,
  value: string,
): TraceLine[] {
  const root = spans.find(
    (s) => s.parentSpanContext === undefined && s.attributes[attribute] === value,
  );
  if (!root) return [];
  const traceId = root.spanContext().traceId;
  const children = new Map<string, ReadableSpan[]>();
  for (const s of spans) {
    const parent = s.parentSpanContext?.spanId;
    if (s.spanContext().traceId !== traceId || parent === undefined) continue;
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const t0 = ms(root.startTime);
  const lines: TraceLine[] = [];
  const visit = (s: ReadableSpan, depth: number) => {
    lines.push({
      name: s.name,
      kind: KINDS[s.kind]!,
      spanId: s.spanContext().spanId,
      parentSpanId: s.parentSpanContext?.spanId,
      depth,
      startMs: ms(s.startTime) - t0,
      durationMs: ms(s.duration),
      attributes: s.attributes,
    });
    const next = [...(children.get(s.spanContext().spanId) ?? [])];
    next.sort((a, b) => ms(a.startTime) - ms(b.startTime));
    for (const c of next) visit(c, depth + 1);
  };
  visit(root, 0);
  return lines;
}

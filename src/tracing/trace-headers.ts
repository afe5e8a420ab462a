import { otelApi, traceSafely } from './otel-api.js';

/** The W3C Trace Context header naming the trace and span a message was written in. */
export const TRACEPARENT_HEADER = 'traceparent';

/**
 * The headers that carry the active trace context (`traceparent`, and `tracestate` or others
 * per the registered propagator), or undefined when there is none to carry: no
 * `@opentelemetry/api`, no propagator registered, or no span active.
 */
export function traceHeaders(): Record<string, string> | undefined {
  const api = otelApi();
  if (!api) return undefined;
  return traceSafely(() => {
    const carrier: Record<string, string> = {};
    api.propagation.inject(api.context.active(), carrier);
    return Object.keys(carrier).length > 0 ? carrier : undefined;
  }, undefined);
}

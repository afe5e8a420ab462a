import { createRequire } from 'node:module';

/** An OpenTelemetry `Context`: opaque here, only passed between API calls. */
export interface OtelContext {
  getValue(key: symbol): unknown;
  setValue(key: symbol, value: unknown): OtelContext;
  deleteValue(key: symbol): OtelContext;
}

/** The part of an OpenTelemetry `Span` outboxkit uses. */
export interface OtelSpan {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  recordException(exception: Error | string): void;
  /** False for a span that was sampled out, or made without an SDK: nothing it gets is kept. */
  isRecording(): boolean;
  end(): void;
}

type Attributes = Record<string, string | number | boolean>;

interface TextMapGetter<C> {
  keys(carrier: C): string[];
  get(carrier: C, key: string): string | string[] | undefined;
}

/**
 * The part of `@opentelemetry/api` outboxkit uses, declared here so that neither the build nor
 * the published types need the package (kysely does the same for `pg`). A test checks that
 * the real API fits.
 */
export interface OtelApi {
  readonly ROOT_CONTEXT: OtelContext;
  readonly SpanKind: { readonly CONSUMER: number; readonly PRODUCER: number };
  readonly SpanStatusCode: { readonly ERROR: number };
  readonly context: {
    active(): OtelContext;
    with<T>(context: OtelContext, fn: () => T): T;
  };
  readonly propagation: {
    inject(context: OtelContext, carrier: Record<string, string>): void;
    extract<C>(context: OtelContext, carrier: C, getter: TextMapGetter<C>): OtelContext;
  };
  readonly trace: {
    getTracer(
      name: string,
      version?: string,
    ): {
      startSpan(
        name: string,
        options: { kind: number; attributes: Attributes },
        context: OtelContext,
      ): OtelSpan;
    };
    setSpan(context: OtelContext, span: OtelSpan): OtelContext;
    /** The global provider: the API's proxy, with or without an SDK behind it. */
    getTracerProvider?(): unknown;
  };
  readonly metrics: {
    getMeter(name: string, version?: string): OtelMeter;
  };
}

/** Attributes of a span or a measurement. */
export type OtelAttributes = Record<string, string | number | boolean>;

/** An observable instrument, only passed back to `ObservableResult.observe`. */
export type OtelObservable = object;

/** The part of an OpenTelemetry `Meter` outboxkit uses. */
export interface OtelMeter {
  createObservableCounter(
    name: string,
    options?: { description?: string; unit?: string },
  ): OtelObservable;
  createObservableGauge(
    name: string,
    options?: { description?: string; unit?: string },
  ): OtelObservable;
  createHistogram(
    name: string,
    options?: {
      description?: string | undefined;
      unit?: string | undefined;
      advice?: { explicitBucketBoundaries?: number[] } | undefined;
    },
  ): { record(value: number, attributes?: OtelAttributes): void };
  addBatchObservableCallback(
    callback: (result: {
      observe(observable: OtelObservable, value: number, attributes?: OtelAttributes): void;
    }) => void | Promise<void>,
    observables: OtelObservable[],
  ): void;
  removeBatchObservableCallback(
    callback: (result: {
      observe(observable: OtelObservable, value: number, attributes?: OtelAttributes): void;
    }) => void | Promise<void>,
    observables: OtelObservable[],
  ): void;
}

let cached: OtelApi | null | undefined;

/**
 * `@opentelemetry/api` if the application has it installed, else undefined: tracing is on
 * when the package is there and off, at no cost, when it is not.
 *
 * Loaded once, synchronously, on first use. Synchronously because the writer encodes headers
 * synchronously; a dynamic `import()` would miss the first messages, and a top-level `await`
 * would stop CommonJS applications from `require()`-ing outboxkit. The copy loaded this way
 * sees the tracer provider and propagator the application registered: the API keeps them in a
 * global shared by every copy of the package.
 */
export function otelApi(): OtelApi | undefined {
  // `null` caches the absence too: a failed require is not retried on every message.
  if (cached === undefined) cached = loadOtelApi(createRequire(import.meta.url));
  return cached ?? undefined;
}

/** Loads the API with `require`; null when it cannot be loaded (not installed, or broken). */
export function loadOtelApi(require: (id: string) => unknown): OtelApi | null {
  try {
    return require('@opentelemetry/api') as OtelApi;
  } catch {
    // Tracing is optional: a missing or unloadable API must never fail a write or a delivery.
    return null;
  }
}

/**
 * Runs a call into OpenTelemetry, or gives `fallback` if it throws. The API does not catch what
 * the application's propagators and span processors throw, and tracing must never fail a write
 * or a delivery.
 */
export function traceSafely<T>(call: () => T, fallback: T): T {
  try {
    return call();
  } catch {
    return fallback;
  }
}

/** A tracer of the API: what `trace.getTracer` returns. */
export type OtelTracer = ReturnType<OtelApi['trace']['getTracer']>;

/**
 * The tracer named `name`, or `undefined` when the global provider is the API's proxy with no
 * SDK behind it: every span would then be a no-op, and no propagator is registered to carry a
 * context either, so the per-message span work can be skipped. A provider of another kind is
 * asked for the tracer as it is.
 */
export function activeTracer(api: OtelApi, name: string): OtelTracer | undefined {
  const provider = api.trace.getTracerProvider?.() as
    | { getDelegateTracer?: (name: string) => OtelTracer | undefined }
    | undefined;
  if (typeof provider?.getDelegateTracer !== 'function') return api.trace.getTracer(name);
  return provider.getDelegateTracer(name);
}

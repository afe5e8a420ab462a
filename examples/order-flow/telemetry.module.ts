import { Controller, Get, Global, Header, Inject, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { collectDefaultMetrics, prometheusContentType, Registry } from 'prom-client';
import { LatencyRecorder } from './latency-recorder.js';
import { HttpSpanInterceptor } from './tracing.js';

/** Injection token of the application's prom-client `Registry`. */
export const METRICS_REGISTRY = Symbol('metrics registry');

/**
 * `GET /metrics`: the application's one registry, which holds the process's default metrics
 * and, through the module's `prometheusRegistry` option, outboxkit's.
 */
@Controller('metrics')
class MetricsController {
  constructor(@Inject(METRICS_REGISTRY) private readonly registry: Registry) {}

  @Get()
  @Header('content-type', prometheusContentType)
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

/**
 * The latency recorder, the metrics registry and its endpoint, and a `SERVER` span for each
 * HTTP request; global, so both service modules inject what they need.
 */
@Global()
@Module({
  controllers: [MetricsController],
  providers: [
    LatencyRecorder,
    {
      provide: METRICS_REGISTRY,
      useFactory: () => {
        const registry = new Registry();
        collectDefaultMetrics({ register: registry });
        return registry;
      },
    },
    { provide: APP_INTERCEPTOR, useClass: HttpSpanInterceptor },
  ],
  exports: [LatencyRecorder, METRICS_REGISTRY],
})
export class TelemetryModule {}

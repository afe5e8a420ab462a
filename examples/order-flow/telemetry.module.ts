import { Global, Module } from '@nestjs/common';
import { LatencyRecorder } from './latency-recorder.js';

/** Makes the latency recorder injectable in both service modules. */
@Global()
@Module({ providers: [LatencyRecorder], exports: [LatencyRecorder] })
export class TelemetryModule {}

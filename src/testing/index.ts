export { type Capture, type CapturedMessage, capturePublished } from './capture-published.js';
export {
  type FlushableRelay,
  type FlushOutboxOptions,
  flushOutbox,
  OutboxFlushError,
} from './flush-outbox.js';
export { TestingTimeoutError } from './testing-timeout-error.js';
export { type IdleObservable, type WaitForIdleOptions, waitForIdle } from './wait-for-idle.js';

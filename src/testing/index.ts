export {
  type Capture,
  type CapturedMessage,
  type CaptureOptions,
  capturePublished,
} from './capture-published.js';
export {
  type DeleteConsumerQueuesOptions,
  deleteConsumerQueues,
} from './delete-consumer-queues.js';
export {
  type FlushableRelay,
  type FlushOutboxOptions,
  flushOutbox,
  OutboxFlushError,
  type ParkedRowSummary,
} from './flush-outbox.js';
export { TestingTimeoutError } from './testing-timeout-error.js';
export { type IdleObservable, type WaitForIdleOptions, waitForIdle } from './wait-for-idle.js';

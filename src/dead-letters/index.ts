/**
 * `outboxkit/dead-letters`: list, show, replay and purge parked outbox rows (`ParkedMessages`)
 * and the messages consumers dead-lettered (`DeadLetterQueue`), as `outboxkit dead-letters` does.
 */
export type { ReplayTarget } from '../protocol/copy-headers.js';
export type { DeadLetterFilter } from './dead-letter-filter.js';
export { DeadLetterNotFoundError } from './dead-letter-not-found-error.js';
export {
  DeadLetterQueue,
  type DeadLetterQueueOptions,
  type QueueListOptions,
  type QueueReplayOptions,
} from './dead-letter-queue.js';
export { DeadLetterQueueBusyError } from './dead-letter-queue-busy-error.js';
export { DeadLetterQueueWearsOutError } from './dead-letter-queue-wears-out-error.js';
export { DeadLetterReplayError } from './dead-letter-replay-error.js';
export { DeadLetterScanInterruptedError } from './dead-letter-scan-interrupted-error.js';
export {
  type BulkOptions,
  type ListOptions,
  type ParkedMessage,
  type ParkedMessageDetail,
  ParkedMessages,
  type ParkedMessagesOptions,
} from './parked-messages.js';
export type { QueuedDeadLetter, QueuedDeadLetterDetail } from './queued-dead-letter.js';
export type { DeadLetterWorkResult, ProgressListener, ReplayFailure } from './replay-result.js';

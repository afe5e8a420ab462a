import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * A partitioned consumer starts while RabbitMQ holds the consumer's queue as it was without
 * partitions: `partitions` was added to a running consumer. Going on would leave that queue's
 * backlog unhandled, and while bound it receives a copy of every message, growing without end.
 */
export class UnpartitionedQueueError extends OutboxkitError {
  /** The consumer's name. */
  readonly consumer: string;
  /** The queue of the consumer without partitions. */
  readonly queue: string;

  constructor(consumer: string, queue: string, messages: number, partitions: number) {
    super(
      'unpartitioned-queue-exists',
      `The consumer "${consumer}" has ${partitions} partition${partitions === 1 ? '' : 's'}, but RabbitMQ holds its queue "${queue}" without partitions (${messages} message${messages === 1 ? '' : 's'} ready): what it holds would never be handled, and while bound it receives a copy of every message. To add partitions, stop every process of the consumer and run \`resizePartitions\` with \`from: 0\` (docs/consumer.md, "Changing the number of partitions"), then start them with ${partitions}; otherwise leave \`partitions\` out.`,
    );
    this.consumer = consumer;
    this.queue = queue;
  }
}

import { OutboxkitError } from '../errors/outboxkit-error.js';
import { partitionExchangeName } from './partition-set.js';

/**
 * A partitioned consumer starts (or reconnects) with one partition count while RabbitMQ holds
 * its partition set of another: its `partitions` changed without `resizePartitions`, a resize
 * runs or stopped half way, or a process of an older deploy starts after one. Going on would
 * leave the other set's backlog unhandled, or hand one key to two sets at once; and a set still
 * bound keeps a copy of every message, growing without end.
 */
export class PartitionCountChangedError extends OutboxkitError {
  /** The consumer's name. */
  readonly consumer: string;
  /** The partition count the consumer was given. */
  readonly partitions: number;
  /** The counts of the other partition sets found, in increasing order. */
  readonly existing: readonly number[];

  constructor(consumer: string, queue: string, partitions: number, existing: readonly number[]) {
    const sets = existing.map((n) => `"${partitionExchangeName(queue, n)}"`).join(', ');
    const from = existing[0];
    super(
      'partition-count-changed',
      `The consumer "${consumer}" has ${partitions} partition${partitions === 1 ? '' : 's'}, but RabbitMQ holds its partition ` +
        `set${existing.length > 1 ? 's' : ''} of ${existing.join(', ')} (${sets}): what it holds ` +
        'would never be handled, and while bound it receives a copy of every message. To change ' +
        'the count, stop every process of the consumer and run `resizePartitions` with ' +
        `\`from: ${from}\` (docs/consumer.md, "Changing the number of partitions"), then start ` +
        `them with ${partitions}; otherwise set \`partitions\` back to ${from}. A resize still ` +
        'running holds both sets until it is done.',
    );
    this.consumer = consumer;
    this.partitions = partitions;
    this.existing = Object.freeze([...existing]);
  }
}

import type { ChannelModel } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';

/** What the balancer needs of one partition's runner. */
export interface BalancedPartition {
  /** Whether deliveries arrived since the last call: this process is the partition's active one. */
  takeActivity(): boolean;
  /** Hands the partition to another process's consumer; false when no channel was open. */
  handOver(): boolean;
}

export interface PartitionBalancerOptions {
  readonly consumer: string;
  /** Every partition of the consumer, in index order. */
  readonly partitions: readonly BalancedPartition[];
  /** A partition queue: every process consumes every partition, so its consumers count processes. */
  readonly countedQueue: string;
  readonly intervalMs: number;
  readonly logger: OutboxLogger;
}

/**
 * Spreads a partitioned consumer's partitions over the processes running it. Single active
 * consumer makes the first process to subscribe active on every partition, and a process that
 * restarts comes back last in line everywhere; so, every `intervalMs`, a process that was
 * active on more partitions with traffic than its share (partitions / processes, rounded up)
 * hands the excess over: it closes those partitions' channels, so the broker requeues their
 * unacked deliveries in order and activates the next process, then subscribes again, last in
 * line. A handler still running there commits or not; either way its message comes back to the
 * new active consumer first, whose claim on the message waits for that transaction, so each
 * key's order holds (as when a process dies).
 */
export class PartitionBalancer {
  readonly #options: PartitionBalancerOptions;
  #model: ChannelModel | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  /** Hand-overs made, for logs and tests. */
  handOvers = 0;

  constructor(options: PartitionBalancerOptions) {
    this.#options = options;
  }

  attach(model: ChannelModel): void {
    this.#model = model;
    this.#timer ??= setInterval(() => void this.#tick(), this.#options.intervalMs);
    this.#timer.unref();
  }

  detach(model: ChannelModel): void {
    if (this.#model === model) this.#model = undefined;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#model = undefined;
  }

  async #tick(): Promise<void> {
    const { partitions, consumer, logger } = this.#options;
    // Read every partition's activity each time, so that each tick covers one interval.
    const active = partitions.filter((p) => p.takeActivity());
    if (this.#running || active.length <= 1 || !this.#model) return;
    this.#running = true;
    try {
      const processes = await this.#countProcesses(this.#model);
      if (processes <= 1) return;
      const share = Math.ceil(partitions.length / processes);
      const excess = active.slice(share);
      let handed = 0;
      for (const partition of excess) if (partition.handOver()) handed += 1;
      if (handed === 0) return;
      this.handOvers += handed;
      logger.info('handed partitions over to other processes', {
        consumer,
        active: active.length,
        share,
        processes,
        handedOver: handed,
      });
    } catch (error) {
      logger.debug('could not count the processes of a partitioned consumer', {
        consumer,
        error: errorMessage(error),
      });
    } finally {
      this.#running = false;
    }
  }

  /** The consumers of one partition queue: one per process running the consumer. */
  async #countProcesses(model: ChannelModel): Promise<number> {
    const channel = await model.createChannel();
    channel.on('error', () => {});
    try {
      return (await channel.checkQueue(this.#options.countedQueue)).consumerCount;
    } finally {
      await closeChannel(channel);
    }
  }
}

import { clearInterval, setInterval } from 'node:timers';
import type { Channel, ChannelModel } from 'amqplib';
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
  /**
   * A queue of the consumer's own that every process subscribes to, so that its consumers count
   * the processes (`partitionRosterQueueName`). The partition queues cannot tell: a quorum queue
   * with single active consumer reports only its active consumer.
   */
  readonly rosterQueue: string;
  readonly intervalMs: number;
  readonly logger: OutboxLogger;
}

/**
 * The balancer's subscription to the roster queue on one connection. `open` turns false when
 * its channel closes or the broker cancels the subscription (the queue deleted).
 */
interface Roster {
  readonly model: ChannelModel;
  readonly channel: Promise<Channel>;
  open: boolean;
}

/**
 * Durable, so that RabbitMQ 4 takes it (it deprecates transient queues that are not exclusive),
 * and gone with its last process. Classic: nothing is ever published to it, it only counts.
 */
const ROSTER_QUEUE_OPTIONS = {
  durable: true,
  autoDelete: true,
  arguments: { 'x-queue-type': 'classic' },
} as const;

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
  #roster: Roster | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = false;
  /** Whether a failed join was logged as a warning: once, then at debug level. */
  #joinFailureWarned = false;
  /** Hand-overs made, for logs and tests. */
  handOvers = 0;

  constructor(options: PartitionBalancerOptions) {
    this.#options = options;
  }

  attach(model: ChannelModel): void {
    // A host's attach that ends after its stop began: nothing to balance any more.
    if (this.#stopped) return;
    this.#model = model;
    // Every process joins, standing by or not: the active ones count it.
    this.#join(model);
    this.#timer ??= setInterval(() => void this.#tick(), this.#options.intervalMs);
    this.#timer.unref();
  }

  detach(model: ChannelModel): void {
    if (this.#model === model) this.#model = undefined;
  }

  /**
   * Stops balancing. Settles once the roster's channel is closed: a join still under way is let
   * finish first, since an auto-delete queue that was declared but never consumed (the
   * connection closed in between) is never deleted.
   */
  stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#model = undefined;
    const roster = this.#roster;
    this.#roster = undefined;
    return roster ? closeChannel(roster.channel.catch(() => undefined)) : Promise.resolve();
  }

  /** Subscribes to the roster queue on `model`, unless subscribed there already. */
  #join(model: ChannelModel): void {
    const current = this.#roster;
    if (current?.open && current.model === model) return;
    // Closed too when the broker cancelled its subscription: the channel itself stays open.
    if (current) void closeChannel(current.channel.catch(() => undefined));
    const { rosterQueue, consumer, logger } = this.#options;
    const roster: Roster = {
      model,
      open: true,
      channel: (async () => {
        const channel = await model.createChannel();
        channel.on('error', () => {});
        channel.on('close', () => {
          roster.open = false;
        });
        await channel.assertQueue(rosterQueue, ROSTER_QUEUE_OPTIONS);
        await channel.consume(
          rosterQueue,
          (message) => {
            if (message === null) roster.open = false;
          },
          { noAck: true },
        );
        return channel;
      })(),
    };
    roster.channel.catch((error: unknown) => {
      roster.open = false;
      // Without the roster the processes cannot be counted, and no partition is handed over.
      const log = this.#joinFailureWarned ? logger.debug : logger.warn;
      this.#joinFailureWarned = true;
      log.call(
        logger,
        'could not join the processes of a partitioned consumer; its partitions are not spread until it can',
        { consumer, queue: rosterQueue, error: errorMessage(error) },
      );
    });
    this.#roster = roster;
  }

  async #tick(): Promise<void> {
    const { partitions, consumer, logger } = this.#options;
    // Read every partition's activity each time, so that each tick covers one interval.
    const active = partitions.filter((p) => p.takeActivity());
    const model = this.#model;
    if (!model) return;
    // Joined again after a lost channel or a deleted queue, by standing-by processes too.
    this.#join(model);
    if (this.#running || active.length <= 1) return;
    this.#running = true;
    try {
      const processes = await this.#countProcesses();
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

  /** The roster queue's consumers: one per process running the consumer. */
  async #countProcesses(): Promise<number> {
    const roster = this.#roster;
    if (!roster?.open) return 0;
    const channel = await roster.channel;
    return (await channel.checkQueue(this.#options.rosterQueue)).consumerCount;
  }
}

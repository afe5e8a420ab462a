import { setTimeout } from 'node:timers';
import type { ChannelModel } from 'amqplib';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { amqpUrlList } from '../amqp/amqp-urls.js';
import { closeChannel, closeConnection } from '../amqp/close-within.js';
import { connectAmqpFirst } from '../amqp/connect-amqp.js';
import { exchangeExistsOn } from '../amqp/exchange-exists.js';
import { queueInfoOn } from '../amqp/queue-info.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { StateError } from '../errors/state-error.js';
import { optionNames } from '../options/option-names.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { durationMs } from '../util/duration-option.js';
import { positiveInteger } from '../util/positive-integer.js';
import type { AnyConsumerDefinition } from './consumer-definition.js';
import {
  CONSUMER_HOST_OPTION_NAMES,
  ConsumerHost,
  type ConsumerHostOptions,
} from './consumer-host.js';
import { declareTopology, retryDueQueueName, topologyOf } from './consumer-topology.js';
import { drainingHosts } from './other-partition-sets.js';
import { partitionSet } from './partition-set.js';
import { resolveConsumer } from './resolve-consumer.js';

/** What `resizePartitions` takes: the host's options, for the one consumer being resized. */
export interface ResizePartitionsOptions
  extends Omit<ConsumerHostOptions<unknown>, 'consumers' | 'retention'> {
  /** The consumer with its new `partitions`. */
  readonly consumer: AnyConsumerDefinition;
  /** The partition count its processes ran with until now; 0 for none (adding partitions). */
  readonly from: number;
  /** How often the drain's progress is checked. Default 200 ms. */
  readonly pollIntervalMs?: number | undefined;
}

/** Every option of `ResizePartitionsOptions`, for the options table in docs/options.md. */
export const RESIZE_PARTITIONS_OPTION_NAMES = optionNames<ResizePartitionsOptions>()([
  'consumer',
  'from',
  'pollIntervalMs',
  ...(CONSUMER_HOST_OPTION_NAMES.filter((n) => n !== 'consumers' && n !== 'retention') as Array<
    Exclude<keyof ConsumerHostOptions<unknown>, 'consumers' | 'retention'>
  >),
]);

/** What a resize did. */
export interface ResizePartitionsResult {
  /** Messages of the old set handled during the resize. */
  readonly drained: number;
  /** Whether the old set existed (false: the new set was only declared). */
  readonly oldSetFound: boolean;
}

/**
 * Changes a partitioned consumer's partition count while messages keep being published, and
 * keeps each key's order. Run it while no process of the consumer runs (stop them, or scale them
 * to zero), then start them with the new count once it returns. It:
 *
 * 1. declares the new set and binds it to the consumer's exchange: from here on every message
 *    reaches the new set, and still the old;
 * 2. unbinds the old set: from here on only the new set receives;
 * 3. handles what the old set holds, with the consumer's own handler, each partition in order
 *    (a consumer host of the old count, whose set is bound to a private exchange, not the
 *    consumer's, so starting it cannot bind the old set again);
 * 4. deletes the old set once it is empty.
 *
 * Every key's older messages are thus handled before its newer ones; the messages published
 * between steps 1 and 2 sit in both sets, and the processes of the new count find them in the
 * processed-messages table and skip them. Publishing never stops; this consumer's handling pauses
 * from stopping the old processes until the new ones start. Rejects with a `StateError` when a
 * process still consumes the old set or already consumes the new one.
 *
 * `from: 0` adds partitions to a consumer that had none. If it was not ordered, the drain runs it
 * unordered, as it ran, and also handles the retries waiting in its delay queues (those of the
 * definition's `retry.backoff`), then deletes them with its due queue.
 *
 * The old set is deleted once it has been seen empty, with nothing handling it, on two counts a
 * second apart: a message the broker is moving within the set is in no queue's count meanwhile.
 */
export async function resizePartitions(
  options: ResizePartitionsOptions,
): Promise<ResizePartitionsResult> {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigurationError(
      'options',
      'resizePartitions takes an object { consumer, from, amqpUrl, db, ... }',
    );
  }
  // Checked before anything is declared: a misspelt `from` would otherwise resize from nothing.
  rejectUnknownOptions(options, RESIZE_PARTITIONS_OPTION_NAMES, { owner: 'resizePartitions' });
  const { consumer, from } = options;
  if (consumer === null || typeof consumer !== 'object') {
    throw new ConfigurationError(
      'consumer',
      'must be the consumer definition with its new partitions',
    );
  }
  const limits = { brokerConsumerTimeoutMs: Number.MAX_SAFE_INTEGER };
  const target = resolveConsumer(consumer, limits);
  if (target.partitions === undefined) {
    throw new ConfigurationError('consumer.partitions', 'must give the new partition count');
  }
  if (from !== 0) positiveInteger('from', from);
  if (from === target.partitions) {
    throw new ConfigurationError('from', `is the new count (${from}) already: nothing to resize`);
  }
  const pollIntervalMs = durationMs('pollIntervalMs', options.pollIntervalMs, 200);
  // From no partitions: the old "set" is the consumer's one queue, bound to its exchange.
  let oldSet: OldSet = from === 0 ? { queues: [target.queue] } : partitionSet(target.queue, from);
  const newSet = partitionSet(target.queue, target.partitions);
  const urls = amqpUrlList(options.amqpUrl);
  const model = await connectAmqpFirst(urls, {
    connectionName: `outboxkit-resize-${process.pid}`,
    // Its own connection, beside the drain host's: the same TLS settings for both.
    tls: amqpTlsFor(urls, options.amqpTls),
  });
  try {
    const oldSetFound =
      oldSet.exchange === undefined
        ? (await queueInfoOn(model, target.queue)) !== undefined
        : await exchangeExistsOn(model, oldSet.exchange);
    await refuseIfConsumed(
      model,
      newSet,
      'already consumes the new set: stop it until the resize returns',
    );
    if (oldSetFound) {
      await refuseIfConsumed(
        model,
        oldSet,
        'still consumes the old set: stop every process of the consumer first',
      );
    }
    // An unordered consumer without partitions has a due queue for its retries, and may have
    // some waiting in its delay queues: the drain handles those too, as that consumer.
    const unordered =
      from === 0 && (await queueInfoOn(model, retryDueQueueName(target.queue))) !== undefined;
    await declareTopology(model, [topologyOf(consumer)]);
    if (!oldSetFound) return { drained: 0, oldSetFound };
    const drainExchange = `${oldSet.exchange ?? target.queue}.drain`;
    const drainer = drainDefinition(options, drainExchange, unordered);
    if (unordered) {
      // Declared before the first count: the drain's own retries may use every delay queue.
      const topology = topologyOf(drainer);
      await declareTopology(model, [topology]);
      const delayQueues = topology.delayQueues.map((q) => q.name);
      // Counted upstream first: a retry that a delay queue dead-letters into the due queue
      // between two counts is then in the second, not missed by both.
      oldSet = {
        queues: [...delayQueues, retryDueQueueName(target.queue), target.queue],
        delayQueues,
      };
    }

    const channel = await model.createChannel();
    channel.on('error', () => {});
    try {
      for (const key of target.routingKeys) {
        if (oldSet.exchange === undefined) {
          await channel.unbindQueue(target.queue, target.exchange, key);
        } else {
          await channel.unbindExchange(oldSet.exchange, target.exchange, key);
        }
      }
    } finally {
      await closeChannel(channel);
    }
    const drained = await drain(model, options, drainer, oldSet, pollIntervalMs);
    await deleteSet(model, oldSet, drainExchange);
    return { drained, oldSetFound };
  } finally {
    await closeConnection(model);
  }
}

/** The queues to drain, and the partition set's exchange (none for a consumer without partitions). */
interface OldSet {
  readonly exchange?: string | undefined;
  /** In the order they are counted: a queue before those it dead-letters into. */
  readonly queues: readonly string[];
  /** Those of `queues` that dead-letter into the others (an unordered consumer's retries). */
  readonly delayQueues?: readonly string[] | undefined;
}

/**
 * How long the old set must stay empty, between two counts, before it is deleted. The broker
 * moves messages within it that no count sees meanwhile: a retry that a delay queue dead-letters
 * into the due queue (a quorum queue's at-least-once dead-lettering holds it in neither for a
 * few ms, until the due queue confirms it), a delivery a stopped drain host handed back to a
 * quorum queue (its requeue is applied after the consumer's close returns). AMQP shows neither,
 * so this waits for them; nothing else enters the set once it is unbound.
 */
const SETTLE_MS = 1000;

/**
 * The consumer as it ran at the old count, bound to a private exchange: ordered like the new one,
 * or `unordered` (a consumer without partitions that was not ordered), whose queues have no
 * single active consumer and which retries through its delay queues.
 */
function drainDefinition(
  options: ResizePartitionsOptions,
  drainExchange: string,
  unordered: boolean,
): AnyConsumerDefinition {
  const { consumer, from } = options;
  return {
    ...consumer,
    partitions: from === 0 ? undefined : from,
    ...(unordered && { ordered: false }),
    exchange: drainExchange,
    exchangeType: 'fanout',
    routingKeys: [''],
  };
}

/** Handles the old set's messages with a host of the old count until the set is empty. */
async function drain(
  model: ChannelModel,
  options: ResizePartitionsOptions,
  old: AnyConsumerDefinition,
  set: OldSet,
  pollIntervalMs: number,
): Promise<number> {
  const { consumer, from: _from, pollIntervalMs: _poll, ...hostOptions } = options;
  let drained = 0;
  while (!(await settledEmpty(model, set))) {
    const host = new ConsumerHost({ ...hostOptions, consumers: [old], retention: false });
    // It consumes the old set while the new one exists, which a start would refuse.
    drainingHosts.add(host);
    await host.start();
    try {
      // Empty and idle: nothing ready, nothing running here (no other process consumes it).
      while ((await readyIn(model, set)) > 0 || host.inFlight > 0) {
        await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
      }
    } finally {
      await host.stop();
      const { handled, duplicates } = host.stats(consumer.name);
      drained += handled + duplicates;
    }
  }
  return drained;
}

/** Whether the set is empty on two counts `SETTLE_MS` apart, while no host handles it. */
async function settledEmpty(model: ChannelModel, set: OldSet): Promise<boolean> {
  if ((await readyIn(model, set)) > 0) return false;
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  return (await readyIn(model, set)) === 0;
}

async function readyIn(model: ChannelModel, set: OldSet): Promise<number> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  try {
    let ready = 0;
    for (const queue of set.queues) ready += (await channel.checkQueue(queue)).messageCount;
    return ready;
  } finally {
    await closeChannel(channel);
  }
}

async function refuseIfConsumed(model: ChannelModel, set: OldSet, what: string): Promise<void> {
  for (const queue of set.queues) {
    // A queue that does not exist is consumed by nobody.
    const consumerCount = (await queueInfoOn(model, queue))?.consumerCount ?? 0;
    if (consumerCount > 0) {
      throw new StateError(
        `cannot resize partitions: a process (${consumerCount} consumer(s) on ${queue}) ${what}`,
        'consumed',
      );
    }
  }
}

/**
 * Deletes the old set once it is empty. Not with `ifEmpty`: RabbitMQ 3.x refuses it on quorum
 * queues (the default) and closes the connection. Checking first is enough, since nothing routes
 * to the set any more: it was unbound before the drain, and its consumer retries in place or,
 * unordered, through delay queues into its due queue: those go first, and the rest is checked
 * again after them, so that a retry they moved meanwhile is not deleted with the due queue.
 */
async function deleteSet(model: ChannelModel, set: OldSet, drainExchange: string): Promise<void> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  const refuseNotEmpty = async (queues: readonly string[]) => {
    for (const queue of queues) {
      const { messageCount } = await channel.checkQueue(queue);
      if (messageCount > 0) {
        throw new StateError(
          `cannot finish resizing partitions: ${queue} received ${messageCount} message(s) after its drain; run resizePartitions again to handle them`,
          'not-empty',
        );
      }
    }
  };
  try {
    await refuseNotEmpty(set.queues);
    const delayQueues = set.delayQueues ?? [];
    const rest = set.queues.filter((queue) => !delayQueues.includes(queue));
    if (delayQueues.length > 0) {
      for (const queue of delayQueues) await channel.deleteQueue(queue);
      await refuseNotEmpty(rest);
    }
    for (const queue of rest) await channel.deleteQueue(queue);
    if (set.exchange !== undefined) await channel.deleteExchange(set.exchange);
    await channel.deleteExchange(drainExchange);
  } finally {
    await closeChannel(channel);
  }
}

import type { ChannelModel } from 'amqplib';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { type AmqpUrls, amqpUrlList } from '../amqp/amqp-urls.js';
import { closeConnection } from '../amqp/close-within.js';
import { connectAmqpFirst } from '../amqp/connect-amqp.js';
import { queueInfoOn } from '../amqp/queue-info.js';
import type { HandlerFailure } from '../consumer/last-failure.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { StateError } from '../errors/state-error.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import type { TlsOptions } from '../options/tls-options.js';
import { vhostOf } from '../start/misconfiguration.js';
import { durationMs } from '../util/duration-option.js';
import { errorMessage } from '../util/logger.js';
import { pollUntil } from './poll-until.js';

/** What `waitForIdle` needs of a `ConsumerHost`. */
export interface IdleObservable {
  readonly consumers: readonly string[];
  readonly inFlight: number;
  readonly queues: readonly string[];
  stats(consumer: string): { readonly received: number };
  /** `false` for a host not started yet or stopped, which nothing would ever make idle. */
  readonly isRunning?: boolean | undefined;
  /** A consumer's last failed handler attempt, which a time-out then names. */
  lastFailure?(consumer: string): HandlerFailure | undefined;
}

export interface WaitForIdleOptions {
  /** RabbitMQ URL, to read the depth of the host's queues, or several nodes' URLs (the host's). */
  readonly amqpUrl: AmqpUrls;
  /** TLS settings for `amqps://` URLs, as the host's `amqpTls`. */
  readonly amqpTls?: TlsOptions | undefined;
  /** Give up after this long. Default 10 s. */
  readonly timeoutMs?: number | undefined;
}

/** Every option of `WaitForIdleOptions`. */
export const WAIT_FOR_IDLE_OPTION_NAMES = optionNames<WaitForIdleOptions>()([
  'amqpUrl',
  'amqpTls',
  'timeoutMs',
]);

/**
 * Waits until a consumer host has handled everything: its queues and retry delay queues are
 * empty, no delivery is running or waiting in the host, and that state held for two looks in a
 * row with no delivery received in between (a delivery on its way from the broker is in no
 * queue's count yet). Messages that end in a dead-letter queue count as handled.
 *
 * Publish first, and wait for that (`flushOutbox`, or a publisher confirm): a message not yet
 * in a queue cannot be waited for.
 *
 * @example
 * await flushOutbox(pool);
 * await waitForIdle(host, { amqpUrl });
 * assert.equal(host.stats('billing.order-placed').handled, 1);
 */
export async function waitForIdle(
  host: IdleObservable,
  idleOptions: WaitForIdleOptions,
): Promise<void> {
  // Anything else would fail inside the poll, to be reported only when the timeout is up.
  checkHost(host);
  const options = optionsObject('options', idleOptions, WAIT_FOR_IDLE_OPTION_NAMES, 'waitForIdle');
  if (options.amqpUrl === undefined) {
    throw new ConfigurationError('amqpUrl', "is required: the RabbitMQ URL of the host's queues");
  }
  const urls = amqpUrlList(options.amqpUrl);
  const tls = amqpTlsFor(urls, options.amqpTls);
  const timeoutMs = durationMs('timeoutMs', options.timeoutMs, 10_000);
  if (host.isRunning === false) {
    throw new StateError(
      'waitForIdle: the host is not running, so nothing would ever handle its queues: start() it first (in Nest, the module starts it in app.init())',
      'not-running',
    );
  }
  const model = await connectAmqpFirst(urls, {
    connectionName: `outboxkit-testing-wait-for-idle-${process.pid}`,
    tls,
  });
  const received = () => host.consumers.reduce((n, c) => n + host.stats(c).received, 0);
  let state = '';
  /** Deliveries received as of the last quiet look. */
  let quietAt: number | undefined;
  try {
    await requireQueues(model, host.queues, urls[0]!);
    const channel = await model.createChannel();
    channel.on('error', () => {});
    await pollUntil(
      'the consumers to be idle',
      timeoutMs,
      async () => {
        const before = received();
        let ready = 0;
        const waiting: string[] = [];
        for (const queue of host.queues) {
          const { messageCount } = await channel.checkQueue(queue);
          ready += messageCount;
          if (messageCount > 0) waiting.push(`${messageCount} in ${queue}`);
        }
        const inFlight = host.inFlight;
        const now = received();
        // The queues by name: a retry delay queue (`.retry.16000ms`) says what is being waited for.
        state = `${ready} message(s) in queues${waiting.length > 0 ? ` (${waiting.join(', ')})` : ''}, ${inFlight} in the host`;
        if (ready > 0 || inFlight > 0 || now !== before) {
          quietAt = undefined;
          return undefined;
        }
        if (quietAt !== now) {
          // Quiet once; look again to be sure nothing was on its way meanwhile.
          quietAt = now;
          return undefined;
        }
        return true;
      },
      () => state + lastFailures(host),
    );
  } finally {
    await closeConnection(model);
  }
}

/**
 * Each consumer's last handler failure, with its age, as a time-out names them: a message waiting
 * in a retry delay queue is a handler that threw, and the test's logger may be silent. It may
 * have happened before the wait (during `flushOutbox`), or in an earlier test: hence the age.
 */
function lastFailures(host: IdleObservable): string {
  const now = Date.now();
  const failures = host.consumers.flatMap((consumer) => {
    const failure = host.lastFailure?.(consumer);
    if (failure === undefined) return [];
    const { attempt, businessKey, error } = failure;
    const next = failure.next === 'retry' ? 'to be retried' : 'dead-lettered';
    const ago = ((now - failure.at.getTime()) / 1000).toFixed(1);
    const name = error instanceof Error ? `${error.name}: ` : '';
    return [
      `${consumer}, ${ago} s ago, attempt ${attempt} of key ${JSON.stringify(businessKey)} (${next}): ${name}${errorMessage(error)}`,
    ];
  });
  return failures.length === 0 ? '' : `; last handler failure of ${failures.join('; of ')}`;
}

/**
 * Refuses at once a host whose queues are not there (a host not started, or `amqpUrl` on another
 * virtual host): the poll would wait out its whole timeout on the channel the first 404 closed.
 */
async function requireQueues(
  model: ChannelModel,
  queues: readonly string[],
  amqpUrl: string,
): Promise<void> {
  for (const queue of queues) {
    if ((await queueInfoOn(model, queue)) === undefined) {
      throw new OutboxkitError(
        'idle-queue-not-found',
        `waitForIdle: the host's queue ${JSON.stringify(queue)} does not exist in virtual host ${JSON.stringify(vhostOf(amqpUrl))}: start the host before waiting for it, and give waitForIdle the host's amqpUrl`,
      );
    }
  }
}

/** A `ConsumerHost`, or anything with what `waitForIdle` reads of one. */
function checkHost(host: unknown): void {
  const h = host as Partial<Record<keyof IdleObservable, unknown>> | null;
  if (
    h === null ||
    typeof h !== 'object' ||
    !Array.isArray(h.consumers) ||
    !Array.isArray(h.queues) ||
    typeof h.inFlight !== 'number' ||
    typeof h.stats !== 'function'
  ) {
    throw new ConfigurationError(
      'host',
      `must be a ConsumerHost (consumers, queues, inFlight and stats()), got ${host === undefined ? 'undefined (in Nest, OutboxService.consumerHost is there once app.init() ran, and only with handlers)' : typeof host}`,
    );
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type { ConsumerHost } from '../../consumer/consumer-host.js';
import { ConfigurationError } from '../../errors/configuration-error.js';
import { optionNames } from '../../options/option-names.js';
import { rejectUnknownOptions } from '../../options/unknown-options.js';
import { describeValue } from '../../util/describe-value.js';
import { durationMs } from '../../util/duration-option.js';
import { errorMessage } from '../../util/logger.js';
import { withTimeout } from '../../util/with-timeout.js';
import { OutboxService } from '../outbox.service.js';

/** When the indicator reports `down`, beyond a broker connection that is lost. */
export interface OutboxHealthOptions {
  /**
   * Down when the oldest due outbox row has waited longer than this; rows delayed or scheduled
   * for later do not count before their time. Default: not checked.
   */
  readonly maxLagSeconds?: number | undefined;
  /** Down when more rows than this are parked. Default: not checked. */
  readonly maxParked?: number | undefined;
  /** Down when the handlers' dead-letter queues hold more than this. Default: not checked. */
  readonly maxDeadLettered?: number | undefined;
  /**
   * Down when the database or the broker does not answer within this. Default 2000 ms: each
   * check takes a few ms on a healthy machine, and a probe's `timeoutSeconds` must exceed it.
   */
  readonly timeoutMs?: number | undefined;
}

/**
 * Below the usual probe timeouts (Kubernetes' `timeoutSeconds: 3` recommended in
 * docs/operations.md), so a hung service gives a "down" with its reason rather than a probe
 * that times out; far above what the status query and the queue checks take when well.
 */
export const DEFAULT_HEALTH_TIMEOUT_MS = 2000;

/** Every option of `OutboxHealthOptions`, for the options table in docs/options.md. */
export const HEALTH_OPTION_NAMES = optionNames<OutboxHealthOptions>()([
  'maxLagSeconds',
  'maxParked',
  'maxDeadLettered',
  'timeoutMs',
]);

/**
 * A `@nestjs/terminus` health indicator for the outbox of this application: whether the relay
 * and the handlers are connected to RabbitMQ, the relay's lag (how long the oldest due row has waited),
 * and the parked and dead-lettered counts. Add it to the providers of a module that imports
 * `TerminusModule` and can inject `OutboxService`.
 *
 * @example
 * ```ts
 * @Get('health')
 * @HealthCheck()
 * check() {
 *   return this.health.check([() => this.outbox.isHealthy('outbox', { maxLagSeconds: 60 })]);
 * }
 * ```
 */
@Injectable()
export class OutboxHealthIndicator {
  readonly #health: HealthIndicatorService;
  readonly #outbox: OutboxService;
  /**
   * The reads still under way, which a probe that comes meanwhile waits for instead of starting
   * its own: while a service hangs, one probe every few seconds would otherwise pile up stalled
   * statements on the application's pool (and channel operations on the broker) until the pool
   * has nothing left for the application.
   */
  #statusRead: ReturnType<OutboxService['outboxStatus']> | undefined;
  #depthsRead: ReturnType<OutboxService['deadLetterDepths']> | undefined;

  constructor(
    @Inject(HealthIndicatorService) health: HealthIndicatorService,
    @Inject(OutboxService) outbox: OutboxService,
  ) {
    this.#health = health;
    this.#outbox = outbox;
  }

  /**
   * Reports `up` with the counts, or `down` with the counts and the `problems` found. Terminus
   * turns a `down` into a 503 of the health endpoint.
   */
  async isHealthy<const Key extends string = 'outbox'>(
    key: Key = 'outbox' as Key,
    options: OutboxHealthOptions = {},
  ): Promise<HealthIndicatorResult<Key>> {
    // A misspelt limit (`maxLag`) would turn its check off without a word.
    rejectUnknownOptions(options, HEALTH_OPTION_NAMES, {
      owner: 'OutboxHealthIndicator.isHealthy',
    });
    const indicator = this.#health.check(key);
    const problems: string[] = [];
    const { relay, consumerHost } = this.#outbox;
    const data: Record<string, unknown> = {
      relay: relay ? (relay.isConnected ? 'connected' : 'disconnected') : 'off',
      consumers: consumerHost ? (consumerHost.isConnected ? 'connected' : 'disconnected') : 'off',
    };
    if (!this.#outbox.isRunning) {
      // Stopping (or not started): its parts' connections are closed on purpose, not lost.
      problems.push('the outbox is not running');
    } else {
      if (data.relay === 'disconnected') {
        problems.push('the relay cannot publish: RabbitMQ is unreachable or blocking publishers');
      }
      if (data.consumers === 'disconnected') problems.push('the handlers lost RabbitMQ');
      // The status read below is a plain SELECT, which a standby or a read-only session
      // answers: only the relay's claims and the handlers' transactions find that they cannot
      // write.
      const relayProblem = relay?.databaseProblem;
      if (relayProblem) {
        data.relayDatabase = relayProblem.kind;
        problems.push(
          `the relay cannot use the database (${relayProblem.kind}): ${errorMessage(relayProblem.error)}`,
        );
      }
      if (consumerHost) {
        const waiting = waitingForDatabase(consumerHost);
        if (waiting.length > 0) {
          data.waitingForDatabase = waiting.reduce((n, w) => n + w.transactions, 0);
          for (const w of waiting) {
            problems.push(
              `the handlers of ${w.consumer} wait for the database (${w.transactions} transactions retried in place): ${errorMessage(w.error)}`,
            );
          }
        }
      }
    }

    const timeoutMs = durationMs('timeoutMs', options.timeoutMs, DEFAULT_HEALTH_TIMEOUT_MS);
    // A limit that is not a number turned its check off, and a negative one kept it down.
    const maxLagSeconds = limitOption('maxLagSeconds', options.maxLagSeconds);
    const maxParked = limitOption('maxParked', options.maxParked);
    const maxDeadLettered = limitOption('maxDeadLettered', options.maxDeadLettered);
    this.#statusRead ??= this.#outbox.outboxStatus().finally(() => {
      this.#statusRead = undefined;
    });
    this.#depthsRead ??= this.#outbox.deadLetterDepths().finally(() => {
      this.#depthsRead = undefined;
    });
    const [status, deadLetters] = await Promise.allSettled([
      withTimeout(this.#statusRead, timeoutMs, 'the outbox status query'),
      withTimeout(this.#depthsRead, timeoutMs, 'the dead-letter queue check'),
    ]);
    if (status.status === 'fulfilled') {
      const total = status.value.total;
      Object.assign(data, {
        pending: total.pending,
        lagSeconds: total.oldestPendingAgeSeconds ?? 0,
        retrying: total.retrying,
        parked: total.parked,
      });
      if (exceeds(total.oldestPendingAgeSeconds ?? 0, maxLagSeconds)) {
        // The relay is the likeliest cause but not the only one: say where else to look.
        problems.push(
          `the relay lags ${total.oldestPendingAgeSeconds} s behind: the oldest due row waits for a backlog, RabbitMQ, or an exchange that does not exist (the relay's log names it)`,
        );
      }
      if (exceeds(total.parked, maxParked)) problems.push(`${total.parked} rows parked`);
    } else {
      problems.push(`outbox status unavailable: ${errorMessage(status.reason)}`);
    }
    if (deadLetters.status === 'fulfilled') {
      let sum = 0;
      for (const depth of deadLetters.value.values()) sum += depth;
      data.deadLettered = sum;
      if (exceeds(sum, maxDeadLettered)) problems.push(`${sum} messages dead-lettered`);
    } else {
      problems.push(`dead-letter queues unavailable: ${errorMessage(deadLetters.reason)}`);
    }
    return problems.length > 0 ? indicator.down({ ...data, problems }) : indicator.up(data);
  }
}

/** The consumers whose transactions are now retried in place for the database, and why. */
function waitingForDatabase(
  host: ConsumerHost,
): Array<{ consumer: string; transactions: number; error: unknown }> {
  const waiting = [];
  for (const consumer of host.consumers) {
    const transactions = host.waitingForDatabase(consumer);
    if (transactions > 0) {
      waiting.push({ consumer, transactions, error: host.databaseWaitError(consumer) });
    }
  }
  return waiting;
}

/** A limit of the check: left out, or a whole number from 0 up (0: down at the first one). */
function limitOption(option: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    const got = typeof value === 'number' ? String(value) : describeValue(value);
    throw new ConfigurationError(option, `must be a whole number from 0 up, got ${got}`);
  }
  return value;
}

function exceeds(value: number, limit: number | undefined): boolean {
  return limit !== undefined && value > limit;
}

import { setImmediate } from 'node:timers';
import { CompiledQuery } from 'kysely';
import { ConfigurationError } from '../errors/configuration-error.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import { stringList } from '../options/string-list.js';
import type { KyselyQueryRunner } from '../sql/kysely-shape.js';
import { outboxTables } from '../sql/outbox-tables.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { durationMs } from '../util/duration-option.js';
import { errorMessage, type OutboxLogger, silentLogger } from '../util/logger.js';
import { positiveInteger } from '../util/positive-integer.js';
import { resolveLogger } from '../util/resolve-logger.js';
import { isPrivilegeRefusal } from './database-errors.js';
import { processedQueries } from './processed-queries.js';

/** How long processed keys are kept, and how they are cleaned up. */
export interface RetentionOptions {
  /**
   * Age after which a processed key is deleted. It must exceed the longest time a message can
   * come back: the whole retry schedule, and a dead-letter replay. Default 7 days.
   */
  readonly retentionMs?: number | undefined;
  /** Pause between clean-ups. Default 10 minutes. */
  readonly intervalMs?: number | undefined;
  /** Keys deleted per statement; small batches keep each lock short. Default 1000. */
  readonly batchSize?: number | undefined;
}

export interface RetentionCleanerOptions extends RetentionOptions {
  /** The Kysely instance the cleaner runs its statements on (taken by its shape). */
  readonly db: KyselyQueryRunner;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /** Only these consumers' keys; all consumers' when absent. */
  readonly consumers?: readonly string[] | undefined;
  readonly logger?: OutboxLogger | undefined;
}

/** Every option of `RetentionCleanerOptions`. */
export const RETENTION_CLEANER_OPTION_NAMES = optionNames<RetentionCleanerOptions>()([
  'db',
  'schema',
  'consumers',
  'logger',
  'retentionMs',
  'intervalMs',
  'batchSize',
]);

export const DEFAULT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * Deletes old processed keys in small batches, each its own short statement that skips rows
 * other transactions hold (`FOR UPDATE SKIP LOCKED`), so consumers never wait for it.
 *
 * @example
 * const cleaner = new RetentionCleaner({ db, retentionMs: 14 * 24 * 3600_000 });
 * cleaner.start();
 * // ...
 * await cleaner.stop();
 */
export class RetentionCleaner {
  readonly retentionMs: number;
  readonly intervalMs: number;
  readonly batchSize: number;
  readonly #options: RetentionCleanerOptions;
  readonly #logger: OutboxLogger;
  readonly #deleteOld: string;
  readonly #processedTable: string;
  readonly #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  /** Keys deleted so far. */
  deleted = 0;

  constructor(cleanerOptions: RetentionCleanerOptions) {
    const options = optionsObject(
      'options',
      cleanerOptions,
      RETENTION_CLEANER_OPTION_NAMES,
      'RetentionCleaner',
    );
    // Anything else would fail at the first clean-up, in the background, minutes later.
    // A transaction would end long before the clean-ups that run on it.
    if (
      options.db === null ||
      typeof options.db !== 'object' ||
      options.db.isTransaction === true
    ) {
      throw new ConfigurationError(
        'db',
        'must be a Kysely instance (not a transaction) on the outbox database',
      );
    }
    stringList('consumers', options.consumers, []);
    this.#options = options;
    this.#logger = resolveLogger(options.logger, () => silentLogger);
    this.retentionMs = positiveInteger(
      'retention.retentionMs',
      options.retentionMs,
      DEFAULT_RETENTION_MS,
    );
    this.intervalMs = durationMs('retention.intervalMs', options.intervalMs, 600_000);
    this.batchSize = positiveInteger('retention.batchSize', options.batchSize, 1000);
    this.#deleteOld = processedQueries(options.schema).deleteOld;
    this.#processedTable = outboxTables(options.schema).processed;
  }

  /** Deletes every key older than the retention, batch by batch. Returns how many. */
  async runOnce(signal?: AbortSignal): Promise<number> {
    const consumers = this.#options.consumers ? [...this.#options.consumers] : null;
    let total = 0;
    for (;;) {
      if (signal?.aborted || this.#stopping.signal.aborted) return total;
      const result = await this.#options.db.executeQuery(
        CompiledQuery.raw(this.#deleteOld, [this.retentionMs, consumers, this.batchSize]),
      );
      const count = Number(result.numAffectedRows ?? 0n);
      total += count;
      this.deleted += count;
      if (count < this.batchSize) return total;
      // Give the event loop and the database a breath between batches.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Cleans up now and then every `intervalMs`, in the background, until `stop()`. */
  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const logger = this.#logger;
    while (!this.#stopping.signal.aborted) {
      try {
        const count = await this.runOnce(this.#stopping.signal);
        if (count > 0) logger.debug('deleted old processed keys', { count });
      } catch (error) {
        logger.warn('could not delete old processed keys', {
          error: errorMessage(error),
          // Its delete skips the keys a claim holds (FOR UPDATE SKIP LOCKED): DELETE alone is not enough.
          ...(isPrivilegeRefusal(error) && {
            fix: `GRANT SELECT, UPDATE, DELETE ON ${this.#processedTable} TO <the consumers' role>`,
          }),
        });
      }
      await abortableDelay(this.intervalMs, this.#stopping.signal);
    }
  }
}

/** Every option of `RetentionOptions`, for the options table in docs/options.md. */
export const RETENTION_OPTION_NAMES = optionNames<RetentionOptions>()([
  'retentionMs',
  'intervalMs',
  'batchSize',
]);

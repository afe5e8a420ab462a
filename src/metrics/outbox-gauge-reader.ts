import type { PgQueryable } from '../sql/sql-executor.js';
import { type OutboxStatus, outboxStatus } from '../status/outbox-status.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';
import { withTimeout } from '../util/with-timeout.js';

/** Well under Prometheus' default scrape timeout (10 s), so the rest of a scrape still lands. */
export const OUTBOX_GAUGES_TIMEOUT_MS = 3_000;

/**
 * Reads the outbox status for the gauges of a scrape, waiting at most `OUTBOX_GAUGES_TIMEOUT_MS`: a database
 * that stalls (a lock, a failover) must not take the process's other metrics down with the
 * scrape. One read at a time: while a read outlives its scrape, later scrapes go without the
 * gauges instead of stacking more stalled statements on the pool.
 */
export class OutboxGaugeReader {
  readonly #pool: PgQueryable;
  readonly #schema: string | undefined;
  readonly #logger: OutboxLogger;
  #running: Promise<OutboxStatus> | undefined;

  constructor(pool: PgQueryable, options: { schema?: string | undefined; logger: OutboxLogger }) {
    this.#pool = pool;
    this.#schema = options.schema;
    this.#logger = options.logger;
  }

  /** The status, or undefined (and a warning) when the outbox could not be read in time. */
  async read(): Promise<OutboxStatus | undefined> {
    if (this.#running) {
      this.#logger.warn('outbox gauges left out of /metrics: the last read has not answered yet');
      return undefined;
    }
    const running = outboxStatus(this.#pool, {
      ...(this.#schema !== undefined && { schema: this.#schema }),
    });
    this.#running = running;
    void running.then(
      () => this.#forget(running),
      () => this.#forget(running),
    );
    try {
      return await withTimeout(running, OUTBOX_GAUGES_TIMEOUT_MS, "the outbox gauges' read");
    } catch (error) {
      // The error says which: a missing schema or a refused login as much as a stall.
      this.#logger.warn('outbox gauges left out of /metrics: the outbox could not be read', {
        error: errorMessage(error),
      });
      return undefined;
    }
  }

  #forget(read: Promise<OutboxStatus>): void {
    if (this.#running === read) this.#running = undefined;
  }
}

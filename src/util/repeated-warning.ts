import type { OutboxLogger } from './logger.js';

/** What one warning line says: occurrences, things in them, and the first one's context. */
interface Line {
  count: number;
  batches: number;
  context: Record<string, unknown>;
}

/**
 * A warning that repeats for as long as its cause lasts (a queue that nacks every publish logs
 * one per batch, many a second): the first occurrence is logged at once, the ones after it are
 * summed and logged once at the end of each interval. The lines' `count`s still add up to every
 * occurrence, and `batches` says how many occurrences a line stands for.
 */
export class RepeatedWarning {
  readonly #logger: OutboxLogger;
  readonly #message: string;
  readonly #intervalMs: number;
  #pending: Line | undefined;
  /**
   * Runs for the interval after each line: while it does, occurrences are summed. A timer, not
   * a time read off the wall clock, so a clock stepped back cannot hold the summed line back.
   */
  #quiet: NodeJS.Timeout | undefined;

  constructor(logger: OutboxLogger, message: string, intervalMs: number) {
    this.#logger = logger;
    this.#message = message;
    this.#intervalMs = intervalMs;
  }

  /** One occurrence of `count` things; `context` of the first of an interval is the one logged. */
  add(count: number, context: Record<string, unknown>): void {
    if (this.#quiet === undefined) {
      this.#log({ count, batches: 1, context });
      return;
    }
    this.#pending ??= { count: 0, batches: 0, context };
    this.#pending.count += count;
    this.#pending.batches += 1;
  }

  /** Logs what was summed since the last line, now, and ends the quiet interval: at a stop. */
  flush(): void {
    clearTimeout(this.#quiet);
    this.#quiet = undefined;
    const pending = this.#takePending();
    if (pending) this.#write(pending);
  }

  /** Logs `line` and starts a quiet interval. */
  #log(line: Line): void {
    this.#write(line);
    this.#quiet = setTimeout(() => {
      this.#quiet = undefined;
      const pending = this.#takePending();
      if (pending) this.#log(pending);
    }, this.#intervalMs);
    // A pending line must not keep a process alive that has nothing else to do.
    this.#quiet.unref();
  }

  #takePending(): Line | undefined {
    const pending = this.#pending;
    this.#pending = undefined;
    return pending;
  }

  #write(line: Line): void {
    this.#logger.warn(this.#message, {
      count: line.count,
      batches: line.batches,
      ...line.context,
    });
  }
}

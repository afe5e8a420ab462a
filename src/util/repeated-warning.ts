import type { OutboxLogger } from './logger.js';

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
  #quietUntil = 0;
  #pending: { count: number; batches: number; context: Record<string, unknown> } | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(logger: OutboxLogger, message: string, intervalMs: number) {
    this.#logger = logger;
    this.#message = message;
    this.#intervalMs = intervalMs;
  }

  /** One occurrence of `count` things; `context` of the first of an interval is the one logged. */
  add(count: number, context: Record<string, unknown>): void {
    const now = Date.now();
    if (this.#pending === undefined && now >= this.#quietUntil) {
      this.#logger.warn(this.#message, { count, batches: 1, ...context });
      this.#quietUntil = now + this.#intervalMs;
      return;
    }
    this.#pending ??= { count: 0, batches: 0, context };
    this.#pending.count += count;
    this.#pending.batches += 1;
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), Math.max(0, this.#quietUntil - now));
      // A pending line must not keep a process alive that has nothing else to do.
      this.#timer.unref();
    }
  }

  /** Logs what was summed since the last line, now (at the end of an interval, or a stop). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    if (pending === undefined) return;
    this.#pending = undefined;
    this.#logger.warn(this.#message, {
      count: pending.count,
      batches: pending.batches,
      ...pending.context,
    });
    this.#quietUntil = Date.now() + this.#intervalMs;
  }
}

/** What the dispatcher needs to know of a delivery. */
export interface DispatchItem {
  /** Items of one key run one at a time, in arrival order, when the dispatcher is ordered. */
  readonly orderingKey: string | undefined;
}

/** A run may ask to be run again later, keeping its key (ordered dispatchers only). */
export type RunResult = undefined | { readonly retryAfterMs: number };

export interface DispatcherOptions<T> {
  /** Runs at once at most. */
  readonly concurrency: number;
  /** Items per run (unordered only). */
  readonly batchSize: number;
  readonly ordered: boolean;
  run(items: T[]): Promise<RunResult>;
  /** A run rejected, its items unsettled; runs are expected to handle their own errors. */
  onError(error: unknown, items: readonly T[]): void;
}

/**
 * Hands deliveries to at most `concurrency` runs at a time, so a backlog waits in the broker's
 * prefetch window instead of piling transactions onto the database.
 *
 * Unordered, a run takes up to `batchSize` items in arrival order. Ordered, an item runs only
 * when no earlier item of its key is running or waiting to retry, and the earliest such item
 * goes first, so each key sees its items one by one in arrival order while different keys run
 * side by side. A run that returns `retryAfterMs` gives its slot back but keeps its key: the
 * key's later items wait until it ran again.
 */
export class DeliveryDispatcher<T extends DispatchItem> {
  readonly #options: DispatcherOptions<T>;
  #pending: T[] = [];
  /** Ordered retries whose delay is over: they run before anything new. */
  #resumed: T[] = [];
  readonly #deferred = new Map<T, NodeJS.Timeout>();
  /** The item holding each key: running, or waiting to retry. */
  readonly #owners = new Map<string, T>();
  #active = 0;
  #idleWaiters: Array<() => void> = [];

  constructor(options: DispatcherOptions<T>) {
    this.#options = options;
  }

  /** Runs in progress. */
  get active(): number {
    return this.#active;
  }

  /** Items not running: pending, or waiting to retry. */
  get waiting(): number {
    return this.#pending.length + this.#resumed.length + this.#deferred.size;
  }

  push(item: T): void {
    this.#pending.push(item);
    this.#pump();
  }

  /** Takes every waiting item that matches out of the dispatcher, releasing their keys. */
  remove(matches: (item: T) => boolean): T[] {
    const removed: T[] = [];
    const keep = (list: T[]) =>
      list.filter((item) => {
        if (!matches(item)) return true;
        removed.push(item);
        return false;
      });
    this.#pending = keep(this.#pending);
    this.#resumed = keep(this.#resumed);
    for (const [item, timer] of this.#deferred) {
      if (!matches(item)) continue;
      clearTimeout(timer);
      this.#deferred.delete(item);
      removed.push(item);
    }
    for (const item of removed) this.#release(item);
    this.#pump();
    return removed;
  }

  /** Resolves once no run is in progress. */
  idle(): Promise<void> {
    if (this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    const { concurrency, run, onError } = this.#options;
    while (this.#active < concurrency) {
      const items = this.#take();
      if (items.length === 0) return;
      this.#active += 1;
      for (const item of items) {
        if (item.orderingKey !== undefined && this.#options.ordered)
          this.#owners.set(item.orderingKey, item);
      }
      run(items).then(
        (result) => this.#finish(items, result),
        (error: unknown) => {
          onError(error, items);
          this.#finish(items, undefined);
        },
      );
    }
  }

  #take(): T[] {
    const { ordered, batchSize } = this.#options;
    if (!ordered) return this.#pending.splice(0, batchSize);
    const resumed = this.#resumed.shift();
    if (resumed) return [resumed];
    const index = this.#pending.findIndex(
      (item) => item.orderingKey === undefined || !this.#owners.has(item.orderingKey),
    );
    return index === -1 ? [] : this.#pending.splice(index, 1);
  }

  #finish(items: T[], result: RunResult): void {
    this.#active -= 1;
    const [only] = items;
    if (result !== undefined && this.#options.ordered && items.length === 1 && only) {
      const timer = setTimeout(() => {
        this.#deferred.delete(only);
        this.#resumed.push(only);
        this.#pump();
      }, result.retryAfterMs);
      this.#deferred.set(only, timer);
    } else {
      for (const item of items) this.#release(item);
    }
    this.#pump();
    if (this.#active === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  #release(item: T): void {
    const key = item.orderingKey;
    if (key !== undefined && this.#owners.get(key) === item) this.#owners.delete(key);
  }
}

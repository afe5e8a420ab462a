/**
 * A level-triggered wake-up: `wake()` before anyone waits is remembered, so a notification
 * that arrives while a worker is busy is not lost.
 */
export class WakeSignal {
  #pending = false;
  #waiters: Array<() => void> = [];

  wake(): void {
    this.#pending = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves at the next wake (or at once if one is pending), or after `timeoutMs`. */
  wait(timeoutMs: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== done);
        this.#pending = false;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.push(done);
    });
  }
}

import { clearTimeout, setTimeout } from 'node:timers';
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

  /**
   * Resolves at the next wake (or at once if one is pending) with true, or after `timeoutMs`
   * with false.
   */
  wait(timeoutMs: number): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== wake);
        this.#pending = false;
        resolve(woken);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#waiters.push(wake);
    });
  }
}

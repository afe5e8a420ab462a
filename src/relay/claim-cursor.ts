/** Where the relay's last full claim ended, in the claim's order: `(available_at, id)`. */
export interface ClaimPosition {
  /** `available_at` as Postgres prints it, so that it goes back exactly. */
  readonly availableAt: string;
  readonly id: string;
}

/**
 * How long claims start after the last full one before one starts from the outbox's head again:
 * the most a row committed behind the cursor (a late commit, a released row) waits while a
 * backlog drains.
 */
export const CURSOR_TTL_MS = 1000;

/**
 * Where a relay's lanes start their claims. A claim that scans from the outbox's head steps over
 * every row the other batches in flight hold locked, checking each lock: with four lanes of two
 * batches that was most of the relay's Postgres CPU (measured in docs/benchmarks.md). Starting
 * after the last full claim skips them; rows behind it are still claimed when the rows after it
 * run short, and every claim after `CURSOR_TTL_MS` starts from the head again.
 */
export class ClaimCursor {
  #position: ClaimPosition | undefined;
  #setAt = 0;

  /** The position to claim after, or `undefined` to claim from the head. */
  get position(): ClaimPosition | undefined {
    if (this.#position && performance.now() - this.#setAt > CURSOR_TTL_MS) {
      this.#position = undefined;
    }
    return this.#position;
  }

  /**
   * After a claim: a full one moves the cursor to its last row; a short one found the end of
   * what is claimable, so the next starts from the head.
   */
  claimed(last: ClaimPosition | undefined, full: boolean): void {
    if (!full || !last) {
      this.#position = undefined;
      return;
    }
    // The TTL counts from the first position after a start from the head, so that a long
    // backlog cannot keep postponing it.
    if (!this.#position) this.#setAt = performance.now();
    this.#position = last;
  }
}

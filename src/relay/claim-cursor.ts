/** Where the relay's last claim ended, in the claim's order: `(available_at, id)`. */
export interface ClaimPosition {
  /** `available_at` as Postgres prints it, so that it goes back exactly. */
  readonly availableAt: string;
  readonly id: string;
}

/**
 * How long claims start at the cursor before one starts from the outbox's head again, and how
 * far behind the cursor they look: a row that became claimable behind it by more than this (a
 * writer's transaction that committed seconds after it began, a delayed row come due, a row
 * released at a stop) waits at most about this long.
 */
export const CURSOR_TTL_MS = 1000;

/**
 * Where a relay's lanes start their claims. A claim that scans `(available_at, id)` from the
 * outbox's head steps over every row the relay's other batches hold locked, checking each lock,
 * and over the index entries of every row deleted since the last vacuum: at four lanes of two
 * batches the first was most of the relay's Postgres CPU in a drain, and the second grew with
 * every message in a steady stream (docs/benchmarks.md, issue 13). Claims start after the last
 * claim's last row instead, look back `CURSOR_TTL_MS` behind it when the rows after it run
 * short, and once the cursor is `CURSOR_TTL_MS` old one claim starts from the head again, so no
 * claimable row is left behind.
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

  /** After a claim that found rows: the next starts after the last of them. */
  claimed(last: ClaimPosition): void {
    // The TTL counts from the first position after a claim from the head, so that a steady
    // stream of claims cannot keep postponing the next one.
    if (!this.#position) this.#setAt = performance.now();
    this.#position = last;
  }
}

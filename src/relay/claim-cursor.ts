import { performance } from 'node:perf_hooks';
import { clearTimeout, setTimeout } from 'node:timers';
/** Where the relay's last claim ended, in the claim's order: `(available_at, id)`. */
export interface ClaimPosition {
  /**
   * `available_at` in epoch seconds, as exact decimal text (microseconds included), so that it
   * goes back to the same instant whatever the session's DateStyle and TimeZone.
   */
  readonly availableAtEpoch: string;
  readonly id: string;
}

/**
 * How long claims start at the cursor before one starts from the outbox's head again, and how
 * far behind the cursor they look: a row that became claimable behind it by more than this (a
 * writer's transaction that committed seconds after it began, a delayed row come due, a row
 * released at a stop) waits at most about this long.
 */
export const CURSOR_TTL_MS = 1000;

/** An id above any row's: with a time, a position after every row of that `available_at`. */
export const LAST_ID = '9223372036854775807';

/**
 * The longest a claim waits for the one before it. Claims take milliseconds; one that hangs (a
 * connection gone silent, answered only by the pool's `query_timeout`, or never when the
 * application's own pool has none) must not hold the other lanes: taking turns saves Postgres
 * CPU, it is not what keeps two claims apart (`SKIP LOCKED` does that).
 */
export const TURN_WAIT_MS = 1000;

/**
 * Where a relay's lanes start their claims. A claim that scans `(available_at, id)` from the
 * outbox's head steps over every row the relay's other batches hold locked, checking each lock,
 * and over the index entries of every row deleted since the last vacuum: at four lanes of two
 * batches the first was most of the relay's Postgres CPU in a drain, and the second grew with
 * every message in a steady stream (docs/benchmarks.md, issue 13). Claims start after the last
 * claim's last row instead, look back `CURSOR_TTL_MS` behind it when the rows after it run
 * short, and once the cursor is `CURSOR_TTL_MS` old one claim starts from the head again, so no
 * claimable row is left behind.
 *
 * The lanes' claims run one at a time (`inTurn`): claims sent together start from the same
 * position and each steps over the rows the others are locking, checking every lock, which in a
 * drain at four lanes of two batches more than doubled Postgres's CPU per message.
 */
export class ClaimCursor {
  #position: ClaimPosition | undefined;
  #setAt = 0;
  /** Settles when the claim in progress, and those queued before it, are done. */
  #turn: Promise<unknown> = Promise.resolve();

  /**
   * Runs `claim` once the claims started before it are done, so that it starts where the last
   * one ended, or after `TURN_WAIT_MS` at most. The caller has its connection already: a claim
   * never waits for the pool in turn.
   */
  inTurn<T>(claim: () => Promise<T>): Promise<T> {
    const previous = this.#turn;
    const turn = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, TURN_WAIT_MS);
      void previous.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    const result = turn.then(claim);
    this.#turn = result.catch(() => {});
    return result;
  }

  /** The position to claim after, or `undefined` to claim from the head. */
  get position(): ClaimPosition | undefined {
    if (this.#position && performance.now() - this.#setAt > CURSOR_TTL_MS) {
      this.#position = undefined;
    }
    return this.#position;
  }

  /**
   * After a claim that found rows: the next starts after the last of them. After a claim from
   * the head that found none: at that claim's `now()` with `LAST_ID`, since it read every row
   * due then. Without it, every claim ran from the head while none found a row, each reading
   * again the rows held behind the head of their key (a delayed or failing message): a probe's
   * relay over 100,000 of them spent most of a core of Postgres.
   */
  claimed(last: ClaimPosition): void {
    // The TTL counts from the first position after a claim from the head, so that a steady
    // stream of claims cannot keep postponing the next one.
    if (!this.#position) this.#setAt = performance.now();
    this.#position = last;
  }
}

import type { PublishOutcome } from './publish-outcome.js';

/**
 * Not published: an earlier row of its ordering key in the same batch was not confirmed. The
 * row stays as it was (no attempt counted), behind that row, and goes in a later batch.
 */
export const HELD: PublishOutcome = Object.freeze({ kind: 'held' });

/**
 * The order in which a batch's rows may be sent. Rows without an ordering key, and the first
 * row of each key, go at once; each later row of a key (its run, claimed with it in id order)
 * goes only once the row before it was confirmed. So at most one message per key is ever in
 * flight, as with one row per key per batch, and no row is sent while an earlier row of its key
 * may still fail: a nack, a return, a timeout or a closed channel stops the run, and the rest of
 * it is held.
 */
export class KeyRunSchedule {
  /** For each row, the next row of its key in the batch, or -1. */
  readonly #next: number[];
  readonly #first: number[] = [];

  /** `keys`: each row's ordering key (null: none), in batch order, a key's rows in id order. */
  constructor(keys: readonly (string | null)[]) {
    this.#next = keys.map(() => -1);
    const last = new Map<string, number>();
    keys.forEach((key, index) => {
      if (key === null) {
        this.#first.push(index);
        return;
      }
      const previous = last.get(key);
      if (previous === undefined) this.#first.push(index);
      else this.#next[previous] = index;
      last.set(key, index);
    });
  }

  /** Rows that may be sent at once, in batch order. */
  get first(): readonly number[] {
    return this.#first;
  }

  /** The row that may be sent once `index` was confirmed, if any. */
  nextAfter(index: number): number | undefined {
    const next = this.#next[index]!;
    return next === -1 ? undefined : next;
  }

  /** The rows of `index`'s key after it: held when `index` was not confirmed. */
  restAfter(index: number): number[] {
    const rest: number[] = [];
    for (let i = this.#next[index]!; i !== -1; i = this.#next[i]!) rest.push(i);
    return rest;
  }
}

/**
 * The rule that keeps a key's order, applied to a batch's final outcomes: after the first row of
 * a key that was not acked, every later row of that key is held, whatever its own outcome says.
 * A row the broker confirmed while an earlier row of its key failed would already have overtaken
 * it; the schedule never sends such a row, and this makes sure none is ever deleted.
 */
export function holdAfterFailure(
  keys: readonly (string | null)[],
  outcomes: readonly PublishOutcome[],
): PublishOutcome[] {
  const failed = new Set<string>();
  return outcomes.map((outcome, i) => {
    const key = keys[i]!;
    if (key === null) return outcome;
    if (failed.has(key)) return HELD;
    if (outcome.kind !== 'acked') failed.add(key);
    return outcome;
  });
}

/** A row of a key's run as the run claim returns it: `run_pos` 1 follows the key's head. */
export interface RunRow {
  readonly ordering_key: string | null;
  readonly run_pos: number;
}

/**
 * The rows of each key's run that can go: the unbroken stretch from position 1. A row the claim
 * skipped (locked elsewhere, changed meanwhile) ends its key's run there, since the rows after it
 * would overtake it. Returned in key order of first appearance, each run by position.
 */
export function unbrokenRuns<R extends RunRow>(rows: readonly R[]): R[] {
  const byKey = new Map<string, R[]>();
  for (const row of rows) {
    if (row.ordering_key === null) continue;
    let run = byKey.get(row.ordering_key);
    if (!run) {
      run = [];
      byKey.set(row.ordering_key, run);
    }
    run.push(row);
  }
  const kept: R[] = [];
  // Number(): the pool may be the application's, and parse int4 its own way.
  for (const run of byKey.values()) {
    run.sort((a, b) => Number(a.run_pos) - Number(b.run_pos));
    for (let i = 0; i < run.length && Number(run[i]!.run_pos) === i + 1; i += 1) kept.push(run[i]!);
  }
  return kept;
}

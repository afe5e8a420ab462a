/** A dead letter that could not be replayed; it stays where it was. */
export interface ReplayFailure {
  /** The parked row id, or the message id of a queued dead letter. */
  readonly id: string;
  readonly error: string;
}

/** What a replay or purge did. */
export interface DeadLetterWorkResult {
  /** Dead letters replayed (or purged). */
  readonly done: number;
  /** Dead letters that matched but could not be replayed; they were left in place. */
  readonly failed: readonly ReplayFailure[];
}

/** Called after each chunk of work, so a CLI can show progress. */
export type ProgressListener = (done: number, failed: number) => void;

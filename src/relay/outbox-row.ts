import { byteaBuffer } from '../sql/bytea-buffer.js';

/** An outbox row as the relay claims it. */
export interface OutboxRow {
  readonly id: string;
  readonly message_id: string;
  readonly exchange: string;
  readonly routing_key: string;
  /** Empty for a row claimed without its payload, which was over the relay's limit. */
  readonly payload: Buffer;
  /** The payload's size, set only for a row claimed without it (`payload` is then empty). */
  readonly oversizeBytes?: number;
  readonly content_type: string;
  readonly headers: Record<string, unknown> | null;
  readonly ordering_key: string | null;
  readonly correlation_id: string | null;
  readonly causation_id: string | null;
  /**
   * When the row was written, in whole seconds since the epoch; NaN for an infinite `created_at`
   * (written by SQL), which no AMQP timestamp holds: such a row is parked.
   */
  readonly created_at_s: number;
  /** Failed tries, whatever failed: a row with any is claimed as a retry. */
  readonly attempts: number;
  /** Failures that count towards `retry.maxAttempts`: returns and rejections. */
  readonly rejections: number;
  /**
   * Milliseconds from the row's write to its claim, by the database's clock (so no clock skew):
   * the time it waited in the outbox, for the relay's spans.
   */
  readonly waited_ms?: number;
  /** `available_at` in epoch seconds, exact decimal text, for the relay's `ClaimCursor`. */
  readonly available_at_epoch?: string;
}

const EMPTY = Buffer.alloc(0);

/**
 * The claim's rows as the relay uses them, whatever the pool's type parsers (the pool may be the
 * application's): the headers, which the claim sends as text (see `ROW_COLUMNS`), parsed, and
 * the numbers made numbers. In place, once per claimed row.
 */
export function claimedRows<T extends OutboxRow>(rows: T[]): T[] {
  for (const row of rows) {
    const r = row as { -readonly [K in keyof OutboxRow]: unknown };
    if (typeof r.headers === 'string') r.headers = JSON.parse(r.headers);
    // NULL only for a payload over the relay's limit (the column is NOT NULL): see `rowColumns`.
    if (r.payload === null) {
      r.payload = EMPTY;
      r.oversizeBytes = Number.POSITIVE_INFINITY;
    } else {
      r.payload = byteaBuffer(r.payload);
    }
    // NULL for an infinite created_at: NaN, not the 0 that Number(null) is (1970).
    r.created_at_s = r.created_at_s === null ? Number.NaN : Number(r.created_at_s);
    r.attempts = Number(r.attempts);
    r.rejections = Number(r.rejections);
    if (r.waited_ms !== undefined) {
      r.waited_ms = r.waited_ms === null ? undefined : Number(r.waited_ms);
    }
  }
  return rows;
}

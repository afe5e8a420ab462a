// The dashboard's JSON API, as the page reads it and the server (dashboard-views.ts) writes it. Plain types with no import, so the browser
// program can use them without the server's modules; test/dashboard-page-types.test.ts checks
// that the server's answers (`DashboardStatus`, `DashboardDeadLetters`) fit them.

export interface PageCounts {
  readonly pending: number;
  readonly oldestPendingAgeSeconds: number | null;
  readonly retrying: number;
  readonly parked: number;
}

export interface PageStatus {
  readonly allowReplay: boolean;
  readonly refreshIntervalMs: number;
  readonly status: {
    readonly schema: string;
    readonly total: PageCounts;
    readonly exchanges: ReadonlyArray<
      PageCounts & { readonly exchange: string; readonly lastError: string | null }
    >;
  };
  readonly rates: {
    readonly publishedPerSecond: number | null;
    readonly writtenPerSecond: number | null;
  };
}

/**
 * A parked row as the dashboard's API returns it: what an operator needs to decide on a replay,
 * and nothing more. Payloads and headers stay out, since they may carry personal data or
 * tokens; `outboxkit dead-letters show` reads them when needed.
 */
export interface ParkedRowView {
  readonly id: string;
  readonly messageId: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly orderingKey: string | null;
  readonly reason: string;
  readonly lastError: string | null;
  readonly attempts: number;
  readonly createdAt: string;
  readonly parkedAt: string;
  readonly payloadBytes: number;
}

/** A message of a dead-letter queue as the dashboard's API returns it; see `ParkedRowView`. */
export interface QueuedDeadLetterView {
  readonly messageId: string | null;
  readonly exchange: string | null;
  readonly routingKey: string | null;
  readonly reason: string | null;
  readonly error: string | null;
  readonly attempts: number | null;
  readonly consumer: string | null;
  readonly deadAt: string | null;
  readonly payloadBytes: number;
}

export interface PageQueue {
  readonly queue: string;
  readonly deadLetterQueue: string;
  readonly depth: number | null;
  readonly error?: string | undefined;
  readonly messages?: readonly QueuedDeadLetterView[] | undefined;
}

export interface PageDeadLetters {
  readonly parked: { readonly total: number; readonly rows: readonly ParkedRowView[] };
  readonly queues: readonly PageQueue[];
}

/** What a replay or purge answers. */
export interface PageWorkResult {
  readonly done: number;
  readonly failed?: ReadonlyArray<{ readonly error: string }> | undefined;
}

// What the page reads of the dashboard's JSON API. Plain types with no import, so the browser
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
    readonly exchanges: ReadonlyArray<PageCounts & { readonly exchange: string }>;
  };
  readonly rates: {
    readonly publishedPerSecond: number | null;
    readonly writtenPerSecond: number | null;
  };
}

export interface PageParkedRow {
  readonly id: string;
  readonly messageId: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly reason: string;
  readonly lastError: string | null;
  readonly attempts: number;
  readonly parkedAt: string;
}

export interface PageDeadLetter {
  readonly messageId: string | null;
  readonly exchange: string | null;
  readonly routingKey: string | null;
  readonly reason: string | null;
  readonly error: string | null;
  readonly attempts: number | null;
  readonly deadAt: string | null;
}

export interface PageQueue {
  readonly queue: string;
  readonly deadLetterQueue: string;
  readonly depth: number | null;
  readonly error?: string;
  readonly messages?: readonly PageDeadLetter[];
}

export interface PageDeadLetters {
  readonly parked: { readonly total: number; readonly rows: readonly PageParkedRow[] };
  readonly queues: readonly PageQueue[];
}

/** What a replay or purge answers. */
export interface PageWorkResult {
  readonly done: number;
  readonly failed?: ReadonlyArray<{ readonly error: string }>;
}

import { CompiledQuery, type ControlledTransaction, type Kysely, type Transaction } from 'kysely';
import type { LatencyHistogram } from '../metrics/latency-histogram.js';
import { ProcessSpan } from '../tracing/process-span.js';
import type { OutboxLogger } from '../util/logger.js';
import { closableTransaction } from './closable-transaction.js';
import type { ConsumeContext } from './consumer-definition.js';
import { endTimedOut } from './end-timed-out.js';
import { HandlerTimeoutError } from './handler-timeout-error.js';
import type { ParsedDelivery } from './parse-delivery.js';
import type { ProcessedQueries } from './processed-queries.js';
import type { ResolvedConsumer } from './resolve-consumer.js';
import { TransactionClosedError } from './transaction-closed-error.js';

/** One delivery to handle in a claim transaction. */
export interface ClaimTask {
  readonly delivery: ParsedDelivery;
  /** The attempt number the handler sees. */
  readonly attempt: number;
}

/**
 * Whose failure a rollback was: `handler` when a handler threw and the transaction then rolled
 * back on its own connection, which therefore worked, whatever the error says (an HTTP client's
 * ECONNREFUSED is the handler's); `transaction` when a statement of the transaction itself
 * failed: BEGIN, the claim, COMMIT, or the ROLLBACK after a handler's error, which fails when
 * the connection died under the handler.
 */
export type FailureSource = 'handler' | 'transaction';

export type ClaimOutcome =
  /** Committed; `handled[i]` tells whether task i's handler ran or its key was processed before. */
  | { readonly kind: 'committed'; readonly handled: readonly boolean[] }
  /** Task `index` ran out of time (its handler, or the claim); the transaction was rolled back. */
  | { readonly kind: 'timed-out'; readonly index: number; readonly error: HandlerTimeoutError }
  /** Rolled back: a handler threw, or a statement of the transaction failed. */
  | { readonly kind: 'failed'; readonly error: unknown; readonly source: FailureSource };

export interface ClaimDeps {
  // biome-ignore lint/suspicious/noExplicitAny: handlers use tables of the application's own
  readonly db: Kysely<any>;
  readonly queries: ProcessedQueries;
  readonly consumer: ResolvedConsumer;
  readonly logger: OutboxLogger;
  /** Receives the rollback of a timed-out transaction whose session did not answer in time. */
  readonly onAbandoned: (rollback: Promise<unknown>) => void;
  /** Receives the run time of every handler attempt, failed ones included. */
  readonly handlerSeconds?: LatencyHistogram;
}

// biome-ignore lint/suspicious/noExplicitAny: see ClaimDeps.db
export type AnyTransaction = ControlledTransaction<any>;

type HandlerResult =
  | { readonly kind: 'ok' }
  | { readonly kind: 'threw'; readonly error: unknown }
  | { readonly kind: 'timed-out'; readonly error: HandlerTimeoutError };

/** SQLSTATE lock_not_available: the claim's `lock_timeout` ran out. */
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Runs one transaction: claims the tasks' business keys in the processed-messages table, runs
 * the handler of each task whose key was new, in order, and commits. A key already claimed
 * (committed, or held by a concurrent transaction that then commits) skips its handler: at
 * READ COMMITTED the insert waits for the other transaction and then inserts nothing.
 *
 * Time limits: the claim waits for a key another transaction holds at most `timeoutMs` (its
 * `lock_timeout`). A handler still running after `timeoutMs` gets its signal aborted and its
 * view of the transaction closed, the statement it may be stuck in is cancelled, and the
 * transaction is rolled back at once, without waiting for the handler: the dedupe rows and the
 * connection are free again, and nothing of the handler can commit or run outside the
 * transaction. Should the session not answer within another `timeoutMs` (every statement of
 * the transaction is bounded by that `statement_timeout`, so only a dead link does that), it is
 * terminated from another connection, which also ends its locks.
 *
 * Tracing: each task gets a `CONSUMER` span (when `@opentelemetry/api` is installed) that
 * continues the trace in the message's headers, has the handler run inside it, and ends with
 * the transaction: failed when the handler threw or the transaction rolled back.
 */
export async function runClaimTransaction(
  deps: ClaimDeps,
  tasks: readonly ClaimTask[],
): Promise<ClaimOutcome> {
  const { consumer } = deps;
  const spans = tasks.map((task) =>
    ProcessSpan.start({
      queue: consumer.queue,
      consumer: consumer.name,
      info: task.delivery.info,
      attempt: task.attempt,
      bodySize: task.delivery.message.content.length,
    }),
  );
  const execute = () => transact(deps, tasks, spans);
  // A lone message's span is active for the whole transaction, so spans of instrumented
  // database drivers (BEGIN, the claim, COMMIT) join it; in a batch, only each handler is.
  const outcome = await (tasks.length === 1 && spans[0] ? spans[0].run(execute) : execute());
  try {
    if (outcome.kind === 'timed-out') spans[outcome.index]?.fail(outcome.error);
    const rolledBack = outcome.kind === 'committed' ? undefined : outcome.error;
    for (const span of spans) span?.end(rolledBack);
  } catch {
    // Whatever tracing does, the delivery must still be settled.
  }
  return outcome;
}

async function transact(
  deps: ClaimDeps,
  tasks: readonly ClaimTask[],
  spans: ReadonlyArray<ProcessSpan | undefined>,
): Promise<ClaimOutcome> {
  const { db, queries, consumer } = deps;
  let trx: AnyTransaction;
  try {
    trx = await db.startTransaction().setIsolationLevel(consumer.isolationLevel).execute();
  } catch (error) {
    return { kind: 'failed', error, source: 'transaction' };
  }
  let claimed: Claimed;
  try {
    claimed = await claim(trx, queries, consumer, tasks);
  } catch (error) {
    await trx
      .rollback()
      .execute()
      .catch(() => {});
    if (sqlState(error) === LOCK_NOT_AVAILABLE) {
      // A lone message's attempt ran out of time; a batch cannot tell whose key was held, and
      // its messages are tried one by one, each under its own limit.
      const key = tasks.map((t) => t.delivery.businessKey).join(', ');
      const timeout = new HandlerTimeoutError(consumer.name, consumer.timeoutMs, key);
      return tasks.length === 1
        ? { kind: 'timed-out', index: 0, error: timeout }
        : { kind: 'failed', error: timeout, source: 'transaction' };
    }
    return { kind: 'failed', error, source: 'transaction' };
  }

  let closed: Error | undefined;
  const view = closableTransaction(trx, () => closed);
  for (const [index, task] of tasks.entries()) {
    if (!claimed.handled[index]) {
      spans[index]?.markDuplicate();
      continue;
    }
    const result = await runHandler(deps, task, view, spans[index]);
    if (result.kind === 'timed-out') {
      closed = result.error;
      await endTimedOut(deps, trx, claimed.pid);
      return { kind: 'timed-out', index, error: result.error };
    }
    if (result.kind === 'threw') {
      closed = new TransactionClosedError(consumer.name);
      try {
        await trx.rollback().execute();
      } catch (rollbackError) {
        return { kind: 'failed', error: rollbackError, source: 'transaction' };
      }
      return { kind: 'failed', error: result.error, source: 'handler' };
    }
  }
  // A statement the handlers left running unawaited must not slip in after the COMMIT.
  closed = new TransactionClosedError(consumer.name);
  try {
    await trx.commit().execute();
  } catch (error) {
    // Kysely keeps the connection after a failed COMMIT; the rollback gives it back.
    await trx
      .rollback()
      .execute()
      .catch(() => {});
    return { kind: 'failed', error, source: 'transaction' };
  }
  return { kind: 'committed', handled: claimed.handled };
}

/** Calls one handler and waits for it at most `timeoutMs`. */
async function runHandler(
  deps: ClaimDeps,
  task: ClaimTask,
  // biome-ignore lint/suspicious/noExplicitAny: see ClaimDeps.db
  trx: Transaction<any>,
  span: ProcessSpan | undefined,
): Promise<HandlerResult> {
  const { consumer, handlerSeconds } = deps;
  const controller = new AbortController();
  const context: ConsumeContext = {
    ...task.delivery.info,
    attempt: task.attempt,
    trx,
    consumer: consumer.name,
    businessKey: task.delivery.businessKey,
    signal: controller.signal,
  };
  const started = performance.now();
  const handle = async () => consumer.definition.handler(task.delivery.payload, context);
  const settled = (span ? span.run(handle) : handle()).then(
    (): HandlerResult => ({ kind: 'ok' }),
    (error: unknown): HandlerResult => ({ kind: 'threw', error }),
  );
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<HandlerResult>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          kind: 'timed-out',
          error: new HandlerTimeoutError(consumer.name, consumer.timeoutMs),
        }),
      consumer.timeoutMs,
    );
  });
  let result = await Promise.race([settled, limit]);
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  handlerSeconds?.observe(seconds);
  // The transaction's lock_timeout and statement_timeout (see the claim) may beat a late timer
  // to it: a handler whose statement they ended ran out of time all the same.
  if (result.kind === 'threw' && seconds * 1000 >= consumer.timeoutMs) {
    result = {
      kind: 'timed-out',
      error: new HandlerTimeoutError(consumer.name, consumer.timeoutMs),
    };
  }
  if (result.kind === 'timed-out') controller.abort(result.error);
  if (result.kind === 'threw') span?.fail(result.error);
  return result;
}

interface Claimed {
  readonly pid: number | undefined;
  readonly handled: boolean[];
}

async function claim(
  trx: AnyTransaction,
  queries: ProcessedQueries,
  consumer: ResolvedConsumer,
  tasks: readonly ClaimTask[],
): Promise<Claimed> {
  const limitMs = consumer.timeoutMs;
  if (tasks.length === 1) {
    const { delivery } = tasks[0]!;
    const { rows } = await trx.executeQuery<{ pid: number }>(
      CompiledQuery.raw(queries.claimOne, [
        consumer.name,
        delivery.businessKey,
        delivery.info.messageId ?? null,
        limitMs,
      ]),
    );
    return { pid: rows[0]?.pid, handled: [rows.length > 0] };
  }
  // The first task of a key in the batch gets the handler; later ones are duplicates of it.
  const first = new Map<string, number>();
  const keys: string[] = [];
  const ids: Array<string | null> = [];
  for (const [index, { delivery }] of tasks.entries()) {
    if (first.has(delivery.businessKey)) continue;
    first.set(delivery.businessKey, index);
    keys.push(delivery.businessKey);
    ids.push(delivery.info.messageId ?? null);
  }
  const { rows } = await trx.executeQuery<{ business_key: string; pid: number }>(
    CompiledQuery.raw(queries.claimMany, [consumer.name, keys, ids, limitMs]),
  );
  const claimed = new Set(rows.map((r) => r.business_key));
  return {
    pid: rows[0]?.pid,
    handled: tasks.map(
      ({ delivery }, index) =>
        claimed.has(delivery.businessKey) && first.get(delivery.businessKey) === index,
    ),
  };
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

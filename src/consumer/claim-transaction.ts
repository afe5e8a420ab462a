import { performance } from 'node:perf_hooks';
import { clearTimeout, setTimeout } from 'node:timers';
import type { ControlledTransaction, Kysely, Transaction } from 'kysely';
import type { LatencyHistogram } from '../metrics/latency-histogram.js';
import type { RunStatement } from '../orm/joined-transaction.js';
import { kyselyQueryable } from '../sql/kysely-queryable.js';
import type { StatementNames } from '../sql/statement-names.js';
import { notMigratedError } from '../start/check-schema.js';
import { ProcessSpan } from '../tracing/process-span.js';
import type { OutboxLogger } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import { abortedTransaction } from './aborted-transaction.js';
import { closableTransaction, StatementWatch, watchConnection } from './closable-transaction.js';
import type { ConsumeContext } from './consumer-definition.js';
import type { ConsumerTransactions } from './consumer-transactions.js';
import { sqlStateOf } from './database-errors.js';
import { awaitRollback, cancelTimedOut, endTimedOut } from './end-timed-out.js';
import { HandlerStoppedError } from './handler-stopped-error.js';
import { HandlerTimeoutError } from './handler-timeout-error.js';
import type { ParsedDelivery } from './parse-delivery.js';
import type { ProcessedQueries } from './processed-queries.js';
import type { ResolvedConsumer } from './resolve-consumer.js';
import type { TransactionAbortedError } from './transaction-aborted-error.js';
import { TransactionGate } from './transaction-gate.js';

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
  /**
   * The host's stop deadline passed while a handler ran; rolled back. Not the message's doing:
   * every delivery goes back to the broker, and no attempt counts.
   */
  | { readonly kind: 'stopped'; readonly error: HandlerStoppedError }
  /** Rolled back: a handler threw, or a statement of the transaction failed. */
  | {
      readonly kind: 'failed';
      readonly error: unknown;
      readonly source: FailureSource;
      /**
       * The transaction's connection is known to be gone, whatever `error` says: an ORM's
       * ROLLBACK failed after a handler's error (ORMs report that in errors of their own).
       */
      readonly connectionLost?: true;
      /**
       * The transaction never began (BEGIN, or the ORM's opening of it, failed): nothing of the
       * message had run, so it cannot be the message's doing, whatever `error` says (an ORM not
       * connected yet, a pool already ended).
       */
      readonly neverBegan?: true;
    };

export interface ClaimDeps {
  // biome-ignore lint/suspicious/noExplicitAny: handlers use tables of the application's own
  readonly db: Kysely<any>;
  readonly queries: ProcessedQueries;
  /** Sends the claim by name, when on; the claim of an ORM's transaction never is. */
  readonly statementNames?: StatementNames | undefined;
  readonly consumer: ResolvedConsumer;
  readonly logger: OutboxLogger;
  /** Receives the rollback of a timed-out transaction whose session did not answer in time. */
  readonly onAbandoned: (rollback: Promise<unknown>) => void;
  /** Receives the run time of every handler attempt, failed ones included. */
  readonly handlerSeconds?: LatencyHistogram;
  /**
   * Opens the transactions with an ORM instead of `db` (see the host's `transactions` option);
   * `db` then only sends the cancel and terminate of a timed-out handler's session.
   */
  readonly transactions?: ConsumerTransactions<unknown> | undefined;
  /** When the host's stop gives up on running handlers. */
  readonly stopDeadline?: StopDeadline | undefined;
}

/**
 * Aborts when the host has been stopping for `stopTimeoutMs`: a handler still running is then
 * given up as at its time-out, with a `HandlerStoppedError`.
 */
export interface StopDeadline {
  readonly signal: AbortSignal;
  readonly stopTimeoutMs: number;
}

// biome-ignore lint/suspicious/noExplicitAny: see ClaimDeps.db
export type AnyTransaction = ControlledTransaction<any>;

type HandlerResult =
  | { readonly kind: 'ok' }
  | { readonly kind: 'threw'; readonly error: unknown }
  | { readonly kind: 'timed-out'; readonly error: HandlerTimeoutError }
  | { readonly kind: 'stopped'; readonly error: HandlerStoppedError };

/** What a consumer does until its schema is migrated, for the `schema-not-migrated` error. */
const NOT_MIGRATED_MEANWHILE =
  '(meanwhile each message is retried in place, its attempts not counted, and handed back to the queue after databaseRetryLimitMs)';

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
  const execute = () =>
    deps.transactions
      ? transactWith(deps, deps.transactions, tasks, spans)
      : transact(deps, tasks, spans);
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
    return { kind: 'failed', error, source: 'transaction', neverBegan: true };
  }
  // Without the application's plugins: a renamed `business_key` would make every key of a
  // batch look claimed before.
  const statements = kyselyQueryable(trx);
  let claimed: Claimed;
  try {
    const names = deps.statementNames;
    claimed = await claim(
      (text, params) =>
        statements.query(names === undefined ? text : names.sql(text, params), params),
      queries,
      consumer,
      tasks,
    );
  } catch (error) {
    await trx
      .rollback()
      .execute()
      .catch(() => {});
    return claimFailed(deps, tasks, error);
  }
  const claimedAt = monotonicMs();

  const gate = new TransactionGate(consumer.name);
  const closed = () => gate.error;
  const watch = new StatementWatch();
  const view = closableTransaction(trx, closed, watch);
  let unwatch: (() => void) | undefined;
  try {
    if (claimed.handled.includes(true)) unwatch = await watchConnection(trx, watch, closed);
  } catch (error) {
    return failedTransaction(trx, error);
  }
  try {
    return await handleClaimed(deps, trx, tasks, spans, claimed, claimedAt, gate, view, watch);
  } finally {
    unwatch?.();
  }
}

/** `transact` once the keys are claimed: the handlers, then COMMIT, or ROLLBACK. */
async function handleClaimed(
  deps: ClaimDeps,
  trx: AnyTransaction,
  tasks: readonly ClaimTask[],
  spans: ReadonlyArray<ProcessSpan | undefined>,
  claimed: Claimed,
  claimedAt: number,
  gate: TransactionGate,
  view: Transaction<unknown>,
  watch: StatementWatch,
): Promise<ClaimOutcome> {
  const { consumer } = deps;
  for (const [index, task] of tasks.entries()) {
    if (!claimed.handled[index]) {
      spans[index]?.markDuplicate();
      continue;
    }
    const result = await runHandler(deps, task, { trx: view, tx: view }, spans[index]);
    if (result.kind === 'timed-out' || result.kind === 'stopped') {
      gate.closeWith(result.error);
      // Not waited for: the statement the handler is stuck in is cancelled first.
      void watch.closeStreams();
      await endTimedOut(deps, trx, claimed.pid, claimedAt);
      return result.kind === 'stopped'
        ? { kind: 'stopped', error: result.error }
        : { kind: 'timed-out', index, error: result.error };
    }
    if (result.kind === 'threw') {
      gate.close();
      await watch.closeStreams();
      return handlerFailed(trx, result.error);
    }
  }
  // A statement the handlers left running unawaited must not slip in after the COMMIT.
  gate.close();
  await watch.closeStreams();
  if (watch.doubtful) {
    let aborted: TransactionAbortedError | undefined;
    try {
      aborted = await abortedTransaction(kyselyQueryable(trx).query, consumer.name, watch.failure);
    } catch (error) {
      return failedTransaction(trx, error);
    }
    if (aborted !== undefined) return handlerFailed(trx, aborted);
  }
  try {
    await trx.commit().execute();
  } catch (error) {
    // Kysely keeps the connection after a failed COMMIT; the rollback gives it back.
    return failedTransaction(trx, error);
  }
  return { kind: 'committed', handled: claimed.handled };
}

/** A statement of the transaction itself failed: rolled back, whatever that ROLLBACK does. */
async function failedTransaction(trx: AnyTransaction, error: unknown): Promise<ClaimOutcome> {
  await trx
    .rollback()
    .execute()
    .catch(() => {});
  return { kind: 'failed', error, source: 'transaction' };
}

/**
 * The handlers failed: rolled back. A ROLLBACK that fails is the transaction's failure, since on
 * Postgres only a connection that is gone fails it.
 */
async function handlerFailed(trx: AnyTransaction, error: unknown): Promise<ClaimOutcome> {
  try {
    await trx.rollback().execute();
  } catch (rollbackError) {
    return { kind: 'failed', error: rollbackError, source: 'transaction' };
  }
  return { kind: 'failed', error, source: 'handler' };
}

/**
 * `transact` with the transaction an ORM adapter opens: the same claim, handlers, time limits
 * and outcomes. The adapter commits when `work` resolves and rolls back when it rejects; what
 * failed is told by how far `work` got: BEGIN (never entered), the claim, a handler (the
 * rejection is the handler's own error when the rollback worked), or COMMIT (after `work`).
 */
async function transactWith(
  deps: ClaimDeps,
  transactions: ConsumerTransactions<unknown>,
  tasks: readonly ClaimTask[],
  spans: ReadonlyArray<ProcessSpan | undefined>,
): Promise<ClaimOutcome> {
  const { queries, consumer } = deps;
  const gate = new TransactionGate(consumer.name);
  let entered = false;
  let claimError: { readonly error: unknown } | undefined;
  let handlerError: { readonly error: unknown } | undefined;
  let timedOut:
    | {
        readonly index: number;
        readonly error: HandlerTimeoutError | HandlerStoppedError;
        readonly pid?: number;
        readonly claimedAt: number;
      }
    | undefined;
  let deadline = 0;
  let handled: boolean[] | undefined;
  let gaveUp!: () => void;
  const givenUp = new Promise<undefined>((resolve) => {
    gaveUp = () => resolve(undefined);
  });
  const run = (async () =>
    transactions.run(
      {
        isolationLevel: consumer.isolationLevel,
        timeoutMs: consumer.timeoutMs,
        handlers: tasks.length,
        closed: () => gate.error,
      },
      async (transaction) => {
        entered = true;
        let claimed: Claimed;
        try {
          claimed = await claim(
            (text, params) => transaction.query(text, params),
            queries,
            consumer,
            tasks,
          );
        } catch (error) {
          claimError = { error };
          throw error;
        }
        const claimedAt = monotonicMs();
        for (const [index, task] of tasks.entries()) {
          if (!claimed.handled[index]) {
            spans[index]?.markDuplicate();
            continue;
          }
          const handles = { trx: undefined, tx: transaction.tx };
          const result = await runHandler(deps, task, handles, spans[index]);
          if (result.kind === 'timed-out' || result.kind === 'stopped') {
            gate.closeWith(result.error);
            timedOut = {
              index,
              error: result.error,
              ...(claimed.pid !== undefined && { pid: claimed.pid }),
              claimedAt,
            };
            deadline = monotonicMs() + consumer.timeoutMs;
            // The cancel lands before the adapter's ROLLBACK, which this rejection starts.
            await cancelTimedOut(deps, claimed.pid, deadline);
            gaveUp();
            throw result.error;
          }
          if (result.kind === 'threw') {
            gate.close();
            handlerError = { error: result.error };
            throw result.error;
          }
        }
        // A statement the handlers left running unawaited must not slip in after the COMMIT.
        gate.close();
        // The handlers' statements go through the ORM, unseen: whether one failed and left the
        // transaction aborted is asked whenever one ran.
        if (claimed.handled.includes(true)) {
          const aborted = await abortedTransaction(
            (text, params) => transaction.query(text, params),
            consumer.name,
            undefined,
          );
          if (aborted !== undefined) {
            handlerError = { error: aborted };
            throw aborted;
          }
        }
        handled = claimed.handled;
      },
    ))();
  // Settled only once the adapter's transaction ended: rollback or commit included.
  const ended = run.then(
    () => ({ error: undefined, failed: false }),
    (error: unknown) => ({ error, failed: true }),
  );
  // A timed-out handler's rollback is waited for only until its deadline.
  const first = await Promise.race([ended, givenUp]);
  if (timedOut !== undefined) {
    const late: NonNullable<typeof timedOut> = timedOut;
    await awaitRollback(deps, ended, late.pid, deadline, late.claimedAt);
    return late.error instanceof HandlerStoppedError
      ? { kind: 'stopped', error: late.error }
      : { kind: 'timed-out', index: late.index, error: late.error };
  }
  const { error, failed } = first ?? (await ended);
  if (!failed) return { kind: 'committed', handled: handled ?? tasks.map(() => false) };
  if (!entered) return { kind: 'failed', error, source: 'transaction', neverBegan: true };
  if (claimError !== undefined) return claimFailed(deps, tasks, claimError.error);
  if (handlerError !== undefined) {
    // Rejected with anything but the handler's own error: the ROLLBACK failed, which on
    // Postgres only a connection that is gone does (the ORM may say so in an error of its own,
    // such as TypeORM's "Query runner already released").
    return error === handlerError.error
      ? { kind: 'failed', error, source: 'handler' }
      : { kind: 'failed', error, source: 'transaction', connectionLost: true };
  }
  // `work` resolved and the transaction still failed: COMMIT did.
  return { kind: 'failed', error, source: 'transaction' };
}

// biome-ignore lint/suspicious/noExplicitAny: the context of any handler, whatever its database and handle
type AnyConsumeContext = ConsumeContext<any, any>;

/** The transaction handles a handler's context carries. */
interface Handles {
  /** The Kysely transaction; not there when an ORM adapter opened the transaction. */
  // biome-ignore lint/suspicious/noExplicitAny: see ClaimDeps.db
  readonly trx: Transaction<any> | undefined;
  readonly tx: unknown;
}

const HANDLER_OK: HandlerResult = Object.freeze({ kind: 'ok' });

/** Calls one handler and waits for it at most `timeoutMs`. */
async function runHandler(
  deps: ClaimDeps,
  task: ClaimTask,
  handles: Handles,
  span: ProcessSpan | undefined,
): Promise<HandlerResult> {
  const { consumer, handlerSeconds } = deps;
  const { delivery } = task;
  const { info } = delivery;
  // Made when the handler first reads its signal: most never do, and an AbortController costs
  // more than the rest of the context.
  let controller: AbortController | undefined;
  let abortedWith: HandlerTimeoutError | HandlerStoppedError | undefined;
  // Field by field rather than spread from `info`: a spread copy is several times slower.
  const context = {
    messageId: info.messageId,
    headers: info.headers,
    redelivered: info.redelivered,
    attempt: task.attempt,
    exchange: info.exchange,
    routingKey: info.routingKey,
    contentType: info.contentType,
    correlationId: info.correlationId,
    causationId: info.causationId,
    timestamp: info.timestamp,
    orderingKey: info.orderingKey,
    // biome-ignore lint/suspicious/noExplicitAny: see ClaimDeps.db
    trx: handles.trx as Transaction<any>,
    tx: handles.tx,
    consumer: consumer.name,
    businessKey: delivery.businessKey,
    get signal(): AbortSignal {
      if (controller === undefined) {
        controller = new AbortController();
        if (abortedWith !== undefined) controller.abort(abortedWith);
      }
      return controller.signal;
    },
  } satisfies AnyConsumeContext;
  const started = performance.now();
  const handle = async () => consumer.definition.handler(delivery.payload, context);
  // One promise settled by whichever comes first, the handler or its timer.
  const { stopDeadline } = deps;
  let result = await new Promise<HandlerResult>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    // Whichever comes first lets go of the others: a timer left would keep the process alive
    // for `timeoutMs` after a stop, and a listener left on the host's signal would keep a hung
    // handler's delivery for the host's lifetime.
    const settled = () => {
      clearTimeout(timer);
      stopDeadline?.signal.removeEventListener('abort', onStopDeadline);
    };
    const onStopDeadline = () => {
      settled();
      resolve({
        kind: 'stopped',
        error: new HandlerStoppedError(consumer.name, stopDeadline!.stopTimeoutMs),
      });
    };
    // Past the stop deadline (a later task of a batch): not started at all, so none of its
    // effects outside the transaction happen either.
    if (stopDeadline?.signal.aborted) {
      onStopDeadline();
      return;
    }
    (span ? span.run(handle) : handle()).then(
      () => {
        settled();
        resolve(HANDLER_OK);
      },
      (error: unknown) => {
        settled();
        resolve({ kind: 'threw', error });
      },
    );
    stopDeadline?.signal.addEventListener('abort', onStopDeadline, { once: true });
    timer = setTimeout(() => {
      settled();
      resolve({
        kind: 'timed-out',
        error: new HandlerTimeoutError(consumer.name, consumer.timeoutMs),
      });
    }, consumer.timeoutMs);
  });
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
  if (result.kind === 'timed-out' || result.kind === 'stopped') {
    abortedWith = result.error;
    controller?.abort(result.error);
  }
  if (result.kind === 'threw') span?.fail(result.error);
  return result;
}

interface Claimed {
  readonly pid: number | undefined;
  readonly handled: boolean[];
}

/**
 * The message id as the dedupe row records it, for information only. A message id with NUL,
 * which Postgres text cannot hold, would fail the claim on every attempt when the key is a
 * `businessKey`'s (as the key itself it is refused before, see `businessKeyProblem`); its NULs
 * are recorded as U+FFFD.
 */
function storedMessageId(messageId: string | undefined): string | null {
  return messageId === undefined ? null : messageId.replaceAll('\u0000', '\uFFFD');
}

async function claim(
  run: RunStatement,
  queries: ProcessedQueries,
  consumer: ResolvedConsumer,
  tasks: readonly ClaimTask[],
): Promise<Claimed> {
  const limitMs = consumer.timeoutMs;
  if (tasks.length === 1) {
    const { delivery } = tasks[0]!;
    const { rows } = (await run(queries.claimOne, [
      consumer.name,
      delivery.businessKey,
      storedMessageId(delivery.info.messageId),
      limitMs,
    ])) as { rows: object[] };
    return { pid: pidOf(columnsOf(rows[0])[0]), handled: [rows.length > 0] };
  }
  // The first task of a key in the batch gets the handler; later ones are duplicates of it.
  const first = new Map<string, number>();
  const keys: string[] = [];
  // A missing id goes as '' (no message id is empty: see `messageInfo`), made null again by the
  // INSERT: an array's NULL reads as the text "NULL" under `array_nulls = off`.
  const ids: string[] = [];
  for (const [index, { delivery }] of tasks.entries()) {
    if (first.has(delivery.businessKey)) continue;
    first.set(delivery.businessKey, index);
    keys.push(delivery.businessKey);
    ids.push(storedMessageId(delivery.info.messageId) ?? '');
  }
  const { rows } = (await run(queries.claimMany, [consumer.name, keys, ids, limitMs])) as {
    rows: object[];
  };
  const claimed = new Set(rows.map((row) => columnsOf(row)[0]));
  return {
    pid: pidOf(columnsOf(rows[0])[1]),
    handled: tasks.map(
      ({ delivery }, index) =>
        claimed.has(delivery.businessKey) && first.get(delivery.businessKey) === index,
    ),
  };
}

/**
 * A claim's row, read by position: an ORM's hooks may rename columns (Knex's
 * `postProcessResponse` camel-casing keys), and a `business_key` read by name as `undefined`
 * made every delivery of a batch look like a duplicate, acked unhandled.
 */
function columnsOf(row: object | undefined): unknown[] {
  return row === undefined ? [] : Object.values(row);
}

/** pg gives an int4 as a number; an ORM may give it as a string or a bigint. */
function pidOf(pid: unknown): number | undefined {
  if (pid === undefined || pid === null) return undefined;
  const n = Number(pid);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The outcome of a claim that failed (its transaction rolled back). */
function claimFailed(
  deps: Pick<ClaimDeps, 'consumer' | 'queries'>,
  tasks: readonly ClaimTask[],
  error: unknown,
): ClaimOutcome {
  const { consumer, queries } = deps;
  // The claim names only outboxkit's table: the schema was never migrated (a start check that
  // found Postgres down could not tell). Not the messages' fault: see `DatabaseRetryLoop`.
  const notMigrated = notMigratedError(error, queries.schema, NOT_MIGRATED_MEANWHILE);
  if (notMigrated) return { kind: 'failed', error: notMigrated, source: 'transaction' };
  if (sqlStateOf(error) !== LOCK_NOT_AVAILABLE) {
    return { kind: 'failed', error, source: 'transaction' };
  }
  // A lone message's attempt ran out of time; a batch cannot tell whose key was held, and
  // its messages are tried one by one, each under its own limit.
  const key = tasks.map((t) => t.delivery.businessKey).join(', ');
  const timeout = new HandlerTimeoutError(consumer.name, consumer.timeoutMs, key);
  return tasks.length === 1
    ? { kind: 'timed-out', index: 0, error: timeout }
    : { kind: 'failed', error: timeout, source: 'transaction' };
}

import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { LatencyHistogram } from '../metrics/latency-histogram.js';
import { ProcessSpan } from '../tracing/process-span.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';
import type { ConsumeContext } from './consumer-definition.js';
import { HandlerTimeoutError } from './handler-timeout-error.js';
import type { ParsedDelivery } from './parse-delivery.js';
import type { ProcessedQueries } from './processed-queries.js';
import type { ResolvedConsumer } from './resolve-consumer.js';

/** One delivery to handle in a claim transaction. */
export interface ClaimTask {
  readonly delivery: ParsedDelivery;
  /** The attempt number the handler sees. */
  readonly attempt: number;
}

export type ClaimOutcome =
  /** Committed; `handled[i]` tells whether task i's handler ran or its key was processed before. */
  | { readonly kind: 'committed'; readonly handled: readonly boolean[] }
  /** Task `index` ran past the time limit; nothing of the transaction can commit. */
  | { readonly kind: 'timed-out'; readonly index: number; readonly error: HandlerTimeoutError }
  /** Rolled back: a handler threw, or the database failed. */
  | { readonly kind: 'failed'; readonly error: unknown };

export interface ClaimDeps {
  // biome-ignore lint/suspicious/noExplicitAny: handlers use tables of the application's own
  readonly db: Kysely<any>;
  readonly queries: ProcessedQueries;
  readonly consumer: ResolvedConsumer;
  readonly logger: OutboxLogger;
  /** Receives a transaction given up on after a time-out, which ends when its handler does. */
  readonly onAbandoned: (transaction: Promise<unknown>) => void;
  /** Receives the run time of every handler attempt, failed ones included. */
  readonly handlerSeconds?: LatencyHistogram;
}

/**
 * Runs one transaction: claims the tasks' business keys in the processed-messages table, runs
 * the handler of each task whose key was new, in order, and commits. A key already claimed
 * (committed, or held by a concurrent transaction that then commits) skips its handler: at
 * READ COMMITTED the insert waits for the other transaction and then inserts nothing.
 *
 * Time limit: a handler still running after `timeoutMs` gets its signal aborted and the
 * statement it may be stuck in cancelled, and the outcome is reported at once. The session is
 * not terminated: pg would emit an unhandled 'error' on the checked-out client and crash the
 * process. Instead the transaction is held open until the handler settles and is then rolled
 * back, so it never commits, and no statement of the handler can run outside it.
 *
 * Tracing: each task gets a `CONSUMER` span (when `@opentelemetry/api` is installed) that
 * continues the trace in the message's headers, has the handler run inside it, and ends with
 * the transaction: failed when the handler threw or the transaction rolled back.
 */
export function runClaimTransaction(
  deps: ClaimDeps,
  tasks: readonly ClaimTask[],
): Promise<ClaimOutcome> {
  const { db, queries, consumer, logger, handlerSeconds } = deps;
  const spans = tasks.map((task) =>
    ProcessSpan.start({
      queue: consumer.queue,
      consumer: consumer.name,
      info: task.delivery.info,
      attempt: task.attempt,
      bodySize: task.delivery.message.content.length,
    }),
  );
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome: ClaimOutcome) => {
      if (settled) return false;
      settled = true;
      // The outcome first: whatever tracing does, the delivery must still be settled.
      resolve(outcome);
      if (outcome.kind === 'timed-out') spans[outcome.index]?.fail(outcome.error);
      const rolledBack = outcome.kind === 'committed' ? undefined : outcome.error;
      for (const span of spans) span?.end(rolledBack);
      return true;
    };
    let timedOut:
      | { index: number; error: HandlerTimeoutError; cancelled: Promise<void> }
      | undefined;

    // biome-ignore lint/suspicious/noExplicitAny: see ClaimDeps.db
    const body = async (trx: Transaction<any>): Promise<boolean[]> => {
      const { pid, handled } = await claim(trx, queries, consumer.name, tasks);
      for (const [index, task] of tasks.entries()) {
        const span = spans[index];
        if (!handled[index]) {
          span?.markDuplicate();
          continue;
        }
        const controller = new AbortController();
        const context: ConsumeContext = {
          ...task.delivery.info,
          attempt: task.attempt,
          trx,
          consumer: consumer.name,
          businessKey: task.delivery.businessKey,
          signal: controller.signal,
        };
        const timer = setTimeout(() => {
          const error = new HandlerTimeoutError(consumer.name, consumer.timeoutMs);
          controller.abort(error);
          const cancelled = db.executeQuery(CompiledQuery.raw(queries.cancelBackend, [pid])).then(
            () => {},
            (cancelError: unknown) =>
              logger.warn('could not cancel the statement of a timed-out handler', {
                consumer: consumer.name,
                error: errorMessage(cancelError),
              }),
          );
          timedOut = { index, error, cancelled };
          void cancelled.then(() => {
            if (settle({ kind: 'timed-out', index, error })) onAbandoned();
          });
        }, consumer.timeoutMs);
        let failure: { error: unknown } | undefined;
        const started = performance.now();
        const handle = async () => consumer.definition.handler(task.delivery.payload, context);
        try {
          await (span ? span.run(handle) : handle());
        } catch (error) {
          failure = { error };
          span?.fail(error);
        } finally {
          clearTimeout(timer);
          handlerSeconds?.observe((performance.now() - started) / 1000);
        }
        if (timedOut) {
          // The cancel must land before ROLLBACK: it could cancel the ROLLBACK itself, or the
          // next user of the session.
          await timedOut.cancelled;
          throw timedOut.error;
        }
        if (failure) throw failure.error;
      }
      return handled;
    };

    const execute = () => db.transaction().setIsolationLevel(consumer.isolationLevel).execute(body);
    // A lone message's span is active for the whole transaction, so spans of instrumented
    // database drivers (BEGIN, the claim, COMMIT) join it; in a batch, only each handler is.
    const transaction = tasks.length === 1 && spans[0] ? spans[0].run(execute) : execute();
    const onAbandoned = () => deps.onAbandoned(transaction.catch(() => {}));
    transaction.then(
      (handled) => settle({ kind: 'committed', handled }),
      (error: unknown) => {
        // After a time-out, whatever the rollback reports is a consequence of it.
        if (timedOut) {
          const { cancelled, index, error: timeout } = timedOut;
          void cancelled.then(() => settle({ kind: 'timed-out', index, error: timeout }));
        } else {
          settle({ kind: 'failed', error });
        }
      },
    );
  });
}

async function claim(
  // biome-ignore lint/suspicious/noExplicitAny: see ClaimDeps.db
  trx: Transaction<any>,
  queries: ProcessedQueries,
  consumer: string,
  tasks: readonly ClaimTask[],
): Promise<{ pid: number | undefined; handled: boolean[] }> {
  if (tasks.length === 1) {
    const { delivery } = tasks[0]!;
    const { rows } = await trx.executeQuery<{ pid: number }>(
      CompiledQuery.raw(queries.claimOne, [
        consumer,
        delivery.businessKey,
        delivery.info.messageId ?? null,
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
    CompiledQuery.raw(queries.claimMany, [consumer, keys, ids]),
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

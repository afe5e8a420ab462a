import type {
  CompiledQuery,
  DatabaseConnection,
  KyselyPlugin,
  QueryExecutor,
  QueryResult,
  Transaction,
} from 'kysely';
import { transactionControl } from '../sql/transaction-control.js';
import { ABORTED_CHECK } from './aborted-transaction.js';
import { TransactionControlError } from './transaction-control-error.js';

/**
 * A handler's view of its transaction, whose statements fail with `closed()`'s error once it
 * returns one. A timed-out handler may still run while its transaction is rolled back, and
 * Kysely checks that a transaction is open when a statement is called, not when the statement
 * reaches the connection: a statement called while the ROLLBACK waits would run after it,
 * outside any transaction, on a connection already back in the pool. The view refuses it the
 * moment the transaction is given up, and so does every view derived from it (the writer's is
 * `withoutPlugins()`). `startTransaction()`, which Kysely leaves on a transaction, is refused: it
 * would wait for a connection of the pool while holding this one.
 */
export function closableTransaction<DB>(
  trx: Transaction<DB>,
  closed: () => Error | undefined,
  watch?: StatementWatch,
): Transaction<DB> {
  // A plugin goes with every view derived from this one (`withSchema`, `withPlugin`).
  const gate: KyselyPlugin = {
    transformQuery({ node }) {
      const error = closed();
      if (error) throw error;
      return node;
    },
    async transformResult({ result }) {
      return result;
    },
  };
  return guarded(trx.withPlugin(gate), closed, watch);
}

/** Kysely's ways to derive a view of a transaction: each view is guarded as its source was. */
const DERIVED_VIEWS = ['withPlugin', 'withoutPlugins', 'withSchema', 'withTables'] as const;
/** The executor's: Kysely derives a view's executor with one of these. */
const DERIVED_EXECUTORS = ['withPlugin', 'withPlugins', 'withPluginAtFront', 'withoutPlugins'];

/**
 * `trx` and every view derived from it (`withSchema`, `withoutPlugins`, ...) with their compiled
 * queries refused once `closed()` says so (Kysely hands one to the connection without any plugin
 * seeing it), their streams told to `watch`, and without `startTransaction()`.
 */
function guarded<DB>(
  trx: Transaction<DB>,
  closed: () => Error | undefined,
  watch: StatementWatch | undefined,
): Transaction<DB> {
  guardedExecutor(trx.getExecutor(), closed, watch);
  const view = trx as unknown as Record<string, unknown>;
  view.startTransaction = () => {
    throw new TransactionControlError('startTransaction()');
  };
  for (const name of DERIVED_VIEWS) {
    const derive = trx[name] as (...args: unknown[]) => Transaction<DB>;
    view[name] = (...args: unknown[]) => guarded(derive.apply(trx, args), closed, watch);
  }
  return trx;
}

const GUARDED = new WeakSet<QueryExecutor>();

function guardedExecutor(
  executor: QueryExecutor,
  closed: () => Error | undefined,
  watch: StatementWatch | undefined,
): QueryExecutor {
  if (GUARDED.has(executor)) return executor;
  GUARDED.add(executor);
  const executeQuery = executor.executeQuery.bind(executor);
  executor.executeQuery = ((...args: Parameters<typeof executeQuery>) => {
    const error = closed();
    return error ? Promise.reject(error) : executeQuery(...args);
  }) as typeof executor.executeQuery;
  if (watch) {
    // A stream holds the transaction's connection until it is read to the end or closed, and
    // Kysely's COMMIT waits for it: only the stream the handler holds can let go of it.
    const stream = executor.stream.bind(executor);
    executor.stream = ((...args: Parameters<typeof stream>) =>
      watch.held(stream(...args))) as typeof executor.stream;
  }
  const own = executor as unknown as Record<string, unknown>;
  for (const name of DERIVED_EXECUTORS) {
    const derive = own[name];
    if (typeof derive !== 'function') continue;
    own[name] = (...args: unknown[]) =>
      guardedExecutor(derive.apply(executor, args) as QueryExecutor, closed, watch);
  }
  return executor;
}

/**
 * What the statements of a handler's transaction did that the COMMIT would not tell, seen where
 * every one of them passes, whatever view or stream sent it: its connection. Postgres answers
 * COMMIT on a transaction that a failed statement aborted with ROLLBACK, not an error, so a
 * statement that failed, or has not answered yet, makes the transaction doubtful; only then is it
 * looked at before the COMMIT, and a handler whose statements all worked costs no round trip.
 */
export class StatementWatch {
  #unanswered = 0;
  #failure: { readonly error: unknown } | undefined;
  readonly #held = new Set<AsyncIterator<unknown>>();

  /** Whether a statement failed or has not answered: the transaction may be aborted. */
  get doubtful(): boolean {
    return this.#failure !== undefined || this.#unanswered > 0;
  }

  /** The first statement that failed. */
  get failure(): { readonly error: unknown } | undefined {
    return this.#failure;
  }

  /**
   * Closes the streams the handlers left open through their view: each holds the connection,
   * and the COMMIT would wait behind it for ever. Closing a stream's cursor alone would not do:
   * Kysely lets the connection go only when the stream the handler holds ends.
   */
  async closeStreams(): Promise<void> {
    const held = [...this.#held];
    this.#held.clear();
    await Promise.all(held.map((stream) => stream.return?.().catch(() => {})));
  }

  /** A stream as the handler holds it, from `trx.stream()` or a builder's `stream()`. */
  async *held<R>(inner: AsyncIterableIterator<R>): AsyncIterableIterator<R> {
    this.#held.add(inner);
    try {
      yield* inner;
    } finally {
      this.#held.delete(inner);
    }
  }

  async run<R>(statement: Promise<R>): Promise<R> {
    this.#unanswered += 1;
    try {
      return await statement;
    } catch (error) {
      this.#failure ??= { error };
      throw error;
    } finally {
      this.#unanswered -= 1;
    }
  }

  /** A stream of the connection, its failure told as a statement's. */
  async *stream<R>(inner: AsyncIterableIterator<R>): AsyncIterableIterator<R> {
    try {
      for (;;) {
        const next = await this.run(inner.next());
        if (next.done) return;
        yield next.value;
      }
    } finally {
      // Ended early (the stream's reader stopped): its cursor is closed.
      await inner.return?.();
    }
  }
}

/** Kysely's own COMMIT and ROLLBACK, which end the transaction. */
const ENDS = new Set(['commit', 'rollback']);
/** The statements outboxkit itself sends on the transaction once its handlers are done. */
const OWN_STATEMENTS = new Set([...ENDS, ABORTED_CHECK]);

/**
 * Watches the statements of `trx`'s connection until the transaction's COMMIT or ROLLBACK is
 * sent (or the returned function is called, where neither was): each statement's failure goes
 * to `watch`, a statement that would end the transaction is refused while the handlers run, and
 * once `closed()` gives an error, only outboxkit's own COMMIT, ROLLBACK and look at the
 * transaction pass (a compiled query of a view derived from the handler's goes round the view's
 * gate).
 */
export async function watchConnection(
  trx: { getExecutor(): Pick<QueryExecutor, 'provideConnection'> },
  watch: StatementWatch,
  closed: () => Error | undefined,
): Promise<() => void> {
  const connection = (await trx
    .getExecutor()
    .provideConnection(async (held) => held)) as DatabaseConnection & {
    executeQuery: DatabaseConnection['executeQuery'];
    streamQuery: DatabaseConnection['streamQuery'];
  };
  const executeQuery = connection.executeQuery;
  const streamQuery = connection.streamQuery;
  const own = {
    executeQuery: Object.getOwnPropertyDescriptor(connection, 'executeQuery'),
    streamQuery: Object.getOwnPropertyDescriptor(connection, 'streamQuery'),
  };
  const refusal = (query: CompiledQuery): Error | undefined => {
    const error = closed();
    if (error) return OWN_STATEMENTS.has(query.sql) ? undefined : error;
    // Only the host ends a handler's transaction, or begins one on its connection.
    const control = transactionControl(query.sql);
    return control ? new TransactionControlError(control.keyword) : undefined;
  };
  let watching = true;
  const unwatch = () => {
    if (!watching) return;
    watching = false;
    // Put back only where this watch is still on top. Where something wrapped it since (the
    // writer's late-write watch stays on a connection it wrote on), it stays below, passing
    // every statement through.
    if (connection.executeQuery !== watchedExecuteQuery) return;
    for (const [name, descriptor] of Object.entries(own)) {
      if (descriptor) Object.defineProperty(connection, name, descriptor);
      else delete (connection as unknown as Record<string, unknown>)[name];
    }
  };
  const watchedExecuteQuery = <R>(query: CompiledQuery): Promise<QueryResult<R>> => {
    if (!watching) return executeQuery.call(connection, query) as Promise<QueryResult<R>>;
    const error = refusal(query);
    if (error) return Promise.reject(error);
    // The transaction's end: the connection goes back to its pool as it came. Kysely gives it
    // back as soon as this is answered, and a caller waiting for a connection may run its first
    // statement before the host's own code would have taken the watch off.
    if (ENDS.has(query.sql)) unwatch();
    return watch.run(executeQuery.call(connection, query) as Promise<QueryResult<R>>);
  };
  connection.executeQuery = watchedExecuteQuery;
  // Its chunk size is optional in Kysely 0.28 and required in 0.29: passed on as it came.
  connection.streamQuery = ((...args: Parameters<typeof streamQuery>) => {
    if (!watching) return streamQuery.apply(connection, args);
    const error = refusal(args[0]);
    if (error) throw error;
    return watch.stream(streamQuery.apply(connection, args));
  }) as typeof streamQuery;
  return unwatch;
}

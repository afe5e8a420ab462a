import type { KyselyPlugin, QueryExecutor, Transaction } from 'kysely';

/**
 * What a handler's statements did that the COMMIT would not tell: Postgres answers COMMIT on a
 * transaction that a failed statement aborted with ROLLBACK, not an error. A statement that
 * failed, or has not answered yet, makes the transaction doubtful; only then is it looked at
 * before the COMMIT, so a handler whose statements all worked costs no round trip more.
 */
export class StatementWatch {
  readonly #unanswered = new Set<unknown>();
  #failure: { readonly error: unknown } | undefined;

  sent(queryId: unknown): void {
    this.#unanswered.add(queryId);
  }

  answered(queryId: unknown): void {
    this.#unanswered.delete(queryId);
  }

  failed(error: unknown): void {
    this.#failure ??= { error };
  }

  /** Whether a statement failed or has not answered: the transaction may be aborted. */
  get doubtful(): boolean {
    return this.#failure !== undefined || this.#unanswered.size > 0;
  }

  /** The first failure the view saw itself (one of a view derived from it is only counted). */
  get failure(): { readonly error: unknown } | undefined {
    return this.#failure;
  }
}

/**
 * A handler's view of its transaction, whose statements fail with `closed()`'s error once it
 * returns one. A timed-out handler may still run while its transaction is rolled back, and
 * Kysely checks that a transaction is open when a statement is called, not when the statement
 * reaches the connection: a statement called while the ROLLBACK waits would run after it,
 * outside any transaction, on a connection already back in the pool. The view refuses it the
 * moment the transaction is given up, and so does its `withoutPlugins()` view (the writer's).
 */
export function closableTransaction<DB>(
  trx: Transaction<DB>,
  closed: () => Error | undefined,
  watch?: StatementWatch,
): Transaction<DB> {
  // A plugin goes with every view derived from this one (`withSchema`, `withPlugin`); it sees
  // a statement before it is sent and its result, not its failure.
  const gate: KyselyPlugin = {
    transformQuery({ node, queryId }) {
      const error = closed();
      if (error) throw error;
      watch?.sent(queryId);
      return node;
    },
    async transformResult({ result, queryId }) {
      watch?.answered(queryId);
      return result;
    },
  };
  const view = guarded(trx.withPlugin(gate), closed, watch);
  const withoutPlugins = trx.withoutPlugins.bind(trx);
  view.withoutPlugins = () => guarded(withoutPlugins(), closed, watch);
  return view;
}

/**
 * `trx` with its compiled queries refused once `closed()` says so (Kysely hands one to the
 * connection without any plugin seeing it), and their failures told to `watch`.
 */
function guarded<DB>(
  trx: Transaction<DB>,
  closed: () => Error | undefined,
  watch: StatementWatch | undefined,
): Transaction<DB> {
  const executor: QueryExecutor = trx.getExecutor();
  const executeQuery = executor.executeQuery.bind(executor);
  executor.executeQuery = ((...args: Parameters<typeof executeQuery>) => {
    const error = closed();
    if (error) return Promise.reject(error);
    const sent = executeQuery(...args);
    return watch === undefined
      ? sent
      : sent.catch((failure: unknown) => {
          watch.failed(failure);
          throw failure;
        });
  }) as typeof executor.executeQuery;
  return trx;
}

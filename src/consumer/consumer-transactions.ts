import { ABORTED_CHECK } from './aborted-transaction.js';
import type { IsolationLevel } from './consumer-definition.js';

/** What a consumer host asks of the transaction an ORM adapter opens for it. */
export interface ConsumerTransactionOptions {
  /** The consumer's `isolationLevel`. */
  readonly isolationLevel: IsolationLevel;
  /**
   * The consumer's `timeoutMs`. The claim and each handler are bounded by it; an ORM that ends
   * its transactions after a time of its own (Prisma's `timeout`) must give it longer than the
   * claim, the handlers and a cancel take together.
   */
  readonly timeoutMs: number;
  /**
   * How many handlers run in the transaction, one after another: a batch's deliveries. Each
   * has `timeoutMs` of its own, so a batch may last that many times longer.
   */
  readonly handlers: number;
  /**
   * The error the handler's statements must fail with from now on, once the host gives the
   * transaction up (a handler timed out or threw, or the transaction is about to commit), else
   * `undefined`. An adapter that can refuse the handler's statements asks it before each; the
   * host's own statements (`query`, COMMIT, ROLLBACK) are not refused.
   */
  readonly closed: () => Error | undefined;
}

/** One open transaction of an ORM, as a consumer host uses it. */
export interface ConsumerTransaction<Tx> {
  /** What the handler gets as `context.tx`: the ORM's own handle on this transaction. */
  readonly tx: Tx;
  /** Runs one statement with positional (`$1`) parameters in the transaction: the claim. */
  query(text: string, params: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * Opens the transactions of a consumer's handlers with an ORM instead of Kysely, so a handler
 * writes with the ORM in the transaction that holds its dedupe row. Each ORM's entry point has
 * one (`typeormConsumerTransactions(dataSource)` in `outboxkit/typeorm`, ...); pass it as the
 * consumer host's `transactions` option.
 *
 * `run` opens a transaction at `options.isolationLevel` and calls `work` in it (inside the
 * ORM's own context, so an ambient transaction such as nestjs-cls's is the handler's too). When
 * `work` resolves, it commits; when `work` rejects, it rolls back and rejects with `work`'s
 * error, or with the rollback's own error when the rollback failed. BEGIN or COMMIT failing
 * rejects with their error. The host tells these apart by what it saw of `work`.
 */
export interface ConsumerTransactions<Tx = unknown> {
  run(
    options: ConsumerTransactionOptions,
    work: (transaction: ConsumerTransaction<Tx>) => Promise<void>,
  ): Promise<void>;
}

/** The ORM handle of a `ConsumerTransactions`: `TxOf<typeof transactions>`. */
export type TxOf<T> = T extends ConsumerTransactions<infer Tx> ? Tx : never;

/**
 * What an adapter's gate answers a statement of the handler's transaction: the host's error once
 * it gave the transaction up, else `undefined` (run it). `COMMIT` and `ROLLBACK` (and their
 * savepoint forms) always run: they are the adapter's own ending of the transaction; so does the
 * host's look, after the handlers, at whether a failed statement aborted it.
 */
export function refusal(closed: () => Error | undefined, sql: unknown): Error | undefined {
  const error = closed();
  if (error === undefined) return undefined;
  if (sql === ABORTED_CHECK) return undefined;
  return typeof sql === 'string' && /^\s*(COMMIT|ROLLBACK)\b/i.test(sql) ? undefined : error;
}

/**
 * Puts the host's gate (`closed`) in front of the statements of an ORM's transaction handle.
 * Returns what to call once the transaction has ended, where a gate may have to come off (one
 * on a connection the transaction shares with its database), else `undefined`.
 */
export type HandleGate<Tx> = (tx: Tx, closed: () => Error | undefined) => (() => void) | undefined;

/**
 * The key under which an ORM's writer function (`typeormTransaction`, `knexTransaction`) carries
 * the `HandleGate` of its handles. An adapter that gets its transaction from another library's
 * callback (nestjs-cls's `withTransaction`) cannot wrap the ORM's statements itself; through the
 * writer function it was given, it gates them as the ORM's own adapter does.
 */
export const HANDLE_GATE: unique symbol = Symbol('outboxkit.handleGate');

/** `writer` with its handles' gate attached under `HANDLE_GATE`. */
export function withHandleGate<W extends object, Tx>(
  writer: W,
  gate: HandleGate<Tx>,
): W & { readonly [HANDLE_GATE]: HandleGate<Tx> } {
  return Object.defineProperty(writer, HANDLE_GATE, { value: gate }) as W & {
    readonly [HANDLE_GATE]: HandleGate<Tx>;
  };
}

/** The gate `writer` carries for its handles, if any. */
export function handleGateOf<Tx>(writer: object): HandleGate<Tx> | undefined {
  return (writer as { readonly [HANDLE_GATE]?: HandleGate<Tx> })[HANDLE_GATE];
}

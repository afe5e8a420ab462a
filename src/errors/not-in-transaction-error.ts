import { OutboxkitError } from './outboxkit-error.js';

/** The fix for a handle the caller kept: the one for a handle that never had a transaction would mislead. */
export const TRANSACTION_ENDED =
  "this handle's transaction has ended (committed or rolled back): write through it only " +
  'inside its transaction, before it commits.';

export const TRANSACTION_ENDING =
  "this handle's transaction was told to commit or roll back before this write reached its " +
  'connection, where it would have committed on its own: await every write before the ' +
  "transaction's callback returns.";

const KYSELY_OR_PG =
  'pass the Kysely `trx` from `db.transaction().execute(trx => ...)`, or a pg client after `BEGIN`.';

/**
 * The writer was given a connection that is not inside a transaction. Writing there would
 * commit the outbox row on its own, apart from the business rows it belongs to.
 */
export class NotInTransactionError extends OutboxkitError {
  /**
   * @param fix what to pass instead; an ORM adapter names its own transaction handle.
   * @param options.cause the ORM's own error, when the ORM is what said the transaction ended.
   */
  constructor(fix: string = KYSELY_OR_PG, options?: { cause?: unknown }) {
    super(
      'not-in-transaction',
      `The outbox writer needs the caller's transaction: ${fix}`,
      options,
    );
  }
}

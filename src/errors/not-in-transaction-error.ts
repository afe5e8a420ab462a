import { OutboxkitError } from './outboxkit-error.js';

/**
 * The writer was given a connection that is not inside a transaction. Writing there would
 * commit the outbox row on its own, apart from the business rows it belongs to.
 */
export class NotInTransactionError extends OutboxkitError {
  constructor() {
    super(
      'not-in-transaction',
      "The outbox writer needs the caller's transaction: pass the Kysely `trx` from " +
        '`db.transaction().execute(trx => ...)`, or a pg client after `BEGIN`.',
    );
  }
}

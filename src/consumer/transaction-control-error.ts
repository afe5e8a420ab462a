import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * A handler tried to end its transaction, or to open another one, through its `trx`: its
 * effects must commit together with the message's dedupe row, which only the host's COMMIT
 * does. After a ROLLBACK of its own, its later writes would commit one by one, without the
 * dedupe row, and the message would be acked as handled. The statement is refused, and the
 * handler's attempt fails unless it catches the error.
 */
export class TransactionControlError extends OutboxkitError {
  constructor(statement: string) {
    super(
      'transaction-control',
      `A handler ran ${statement} on its transaction; refused: the consumer host begins and ends ` +
        "each handler's transaction, so that its effects commit with the message's dedupe row. " +
        'Throw to roll back; use SAVEPOINT and ROLLBACK TO SAVEPOINT to undo part of it.',
    );
  }
}

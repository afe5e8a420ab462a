import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * A handler ran a statement on its transaction after the transaction had ended: the handler had
 * returned (a statement it did not await), or had run out of time. The statement is refused
 * rather than run outside the transaction.
 */
export class TransactionClosedError extends OutboxkitError {
  constructor(consumer: string) {
    super(
      'transaction-closed',
      `A handler of consumer "${consumer}" ran a statement on its transaction after the ` +
        'transaction had ended; the statement was refused. Await every statement before the ' +
        'handler returns.',
    );
  }
}

import { OutboxkitError } from '../errors/outboxkit-error.js';

/** `show` or `replay` of one dead letter found nothing with that id. */
export class DeadLetterNotFoundError extends OutboxkitError {
  /** The parked row id or message id that was asked for. */
  readonly id: string;
  /** `outbox_parked` of a schema, or a dead-letter queue. */
  readonly where: string;

  constructor(id: string, where: string) {
    super(
      'dead-letter-not-found',
      `No dead letter ${JSON.stringify(id)} in ${where}: list them to see the ids there; it may have been replayed or purged already`,
    );
    this.id = id;
    this.where = where;
  }
}

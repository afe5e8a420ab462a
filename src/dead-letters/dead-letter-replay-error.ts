import { OutboxkitError } from '../errors/outboxkit-error.js';

/** A replayed copy was not confirmed; the dead letter stays in its queue. */
export class DeadLetterReplayError extends OutboxkitError {
  readonly id: string;

  constructor(id: string, queue: string, detail: string) {
    super(
      'dead-letter-replay-failed',
      `Dead letter ${JSON.stringify(id)} in ${queue} was not replayed and stays there: ${detail}`,
    );
    this.id = id;
  }
}

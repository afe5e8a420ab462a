import { OutboxkitError } from './outboxkit-error.js';

/**
 * A method was called in a state that does not allow it: `start()` on a relay, consumer host or
 * outbox runtime that is already running or was stopped (each starts once; make a new one to
 * start again), or a call on a module that is shut down. The `code` is `invalid-state`.
 *
 * @example
 * await relay.start();
 * await relay.start(); // StateError: relay cannot start: it is running
 */
export class StateError extends OutboxkitError {
  /** The state the object was in. */
  readonly state: string;

  constructor(message: string, state: string) {
    super('invalid-state', message);
    this.state = state;
  }
}

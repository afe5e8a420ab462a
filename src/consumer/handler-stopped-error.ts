import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * The consumer host stopped while the handler still ran, and its `stopTimeoutMs` passed: the
 * transaction was rolled back, so nothing the handler did commits, and the message went back to
 * the broker without counting as an attempt. It is the reason of the handler's `signal`, and
 * what a statement the handler sends afterwards fails with.
 */
export class HandlerStoppedError extends OutboxkitError {
  readonly stopTimeoutMs: number;

  constructor(consumer: string, stopTimeoutMs: number) {
    super(
      'handler-stopped',
      `The consumer host stopped while the handler of consumer "${consumer}" still ran, past ` +
        `its stopTimeoutMs (${stopTimeoutMs} ms); its transaction was rolled back and the ` +
        'message goes back to the queue. Make the handler honour its signal, or raise stopTimeoutMs.',
    );
    this.stopTimeoutMs = stopTimeoutMs;
  }
}

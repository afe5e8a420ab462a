import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * Thrown by a handler when retrying cannot help (the order no longer exists, the input breaks a
 * business rule): the transaction rolls back and the message goes to the dead-letter queue at
 * once, with this error in its headers.
 *
 * @example
 * if (!customer) throw new PermanentError(`customer ${id} does not exist`);
 */
export class PermanentError extends OutboxkitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('permanent-failure', message, options);
  }
}

/** Whether an error asks for dead-lettering without retries. */
export function isPermanentError(error: unknown): boolean {
  return (
    error instanceof PermanentError ||
    // A second copy of outboxkit in node_modules has a PermanentError class of its own.
    (error instanceof Error && (error as { code?: unknown }).code === 'permanent-failure')
  );
}

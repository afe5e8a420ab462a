/** Base class of every error outboxkit throws on purpose; `code` is stable and machine-readable. */
export class OutboxkitError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

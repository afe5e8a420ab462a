/** A JSON value: what a payload without an explicit content type must be. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };

/** A header value the relay can carry in an AMQP table. */
export type HeaderValue = string | number | boolean | null | HeaderValue[];

/** A message to publish once the caller's transaction commits. */
export interface OutboxMessage<P = unknown> {
  /** Exchange to publish to. The default exchange ('') is not accepted: name one. */
  readonly exchange: string;
  readonly routingKey: string;
  /** A JSON value, or a Buffer with `contentType`. */
  readonly payload: P;
  /** Required with a Buffer payload; `application/json` otherwise. */
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, HeaderValue>>;
  /**
   * Defaults to a new UUIDv7. Consumers dedupe by it unless they derive a business key, so it
   * follows the key's rule: no NUL, no lone surrogate (see docs/consumer.md, "Business keys").
   */
  readonly messageId?: string;
  /** Messages of one key are published in the order they were written, one at a time. */
  readonly orderingKey?: string;
  /** Milliseconds to wait after commit before publishing. */
  readonly delayMs?: number;
  readonly correlationId?: string;
  readonly causationId?: string;
}

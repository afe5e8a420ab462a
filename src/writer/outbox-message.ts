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

/**
 * A message to publish once the caller's transaction commits. A field not listed here is
 * refused (`unknown-field`). The rules are in the README's table of a message's fields.
 */
export interface OutboxMessage<P = unknown> {
  /**
   * Exchange to publish to. The default exchange (`''`, or `amq.default`) is not accepted: the
   * relay checks that an exchange exists, which RabbitMQ refuses for it; bind the queue to an
   * exchange and name that. Of the other `amq.*` names, only RabbitMQ's own (`amq.direct`,
   * `amq.fanout`, `amq.topic`, `amq.headers`, `amq.match`) are accepted: no other can ever exist.
   */
  readonly exchange: string;
  readonly routingKey: string;
  /**
   * A JSON value, sent as JSON; bytes (Buffer, Uint8Array, DataView, ArrayBuffer), sent as they
   * are, with `contentType`; or a string under a non-JSON `contentType`, sent as its UTF-8 text.
   * A value JSON would silently empty (Map, Set, typed array...) is refused.
   */
  readonly payload: P;
  /** Required with bytes; `application/json` otherwise. Not blank. */
  readonly contentType?: string | undefined;
  /**
   * A plain object, at most 56 KiB once AMQP-encoded. `x-outboxkit-*`, `x-ordering-key` and
   * `x-causation-id` are reserved (give `orderingKey`, `causationId`).
   */
  readonly headers?: Readonly<Record<string, HeaderValue>> | undefined;
  /**
   * Defaults to a new UUIDv7. Consumers dedupe by it unless they derive a business key, so it
   * follows the key's rule: not blank, no NUL, no lone surrogate (see docs/consumer.md,
   * "Business keys"). A message written later with an id already handled is dropped as a
   * duplicate, by design; `addMany` refuses one id twice for one exchange.
   */
  readonly messageId?: string | undefined;
  /** Messages of one key are published in the order they were written, one at a time. */
  readonly orderingKey?: string | undefined;
  /**
   * Milliseconds to wait, counted from the add, before publishing (never before the commit); at
   * most 366 days.
   */
  readonly delayMs?: number | undefined;
  readonly correlationId?: string | undefined;
  readonly causationId?: string | undefined;
}

import type { Message, Options } from 'amqplib';
import { CAUSATION_ID_HEADER, ORDERING_KEY_HEADER } from './message-headers.js';

/** The columns of an outbox row that become the published message's properties and headers. */
export interface PublishedRow {
  readonly message_id: string;
  readonly content_type: string;
  readonly headers: Readonly<Record<string, unknown>> | null;
  readonly ordering_key: string | null;
  readonly correlation_id: string | null;
  readonly causation_id: string | null;
  /** When the row was written, in whole seconds since the epoch. */
  readonly created_at_s: number;
}

/**
 * The properties the relay publishes a row with: persistent, the row's message id, its write
 * time (whole seconds) as `timestamp`, its content type and correlation id, and its headers
 * with the ordering key and causation id added. `mandatory` is the publisher's concern.
 */
export function publishProperties(row: PublishedRow): Options.Publish {
  const headers: Record<string, unknown> = { ...(row.headers ?? {}) };
  if (row.ordering_key !== null) headers[ORDERING_KEY_HEADER] = row.ordering_key;
  if (row.causation_id !== null) headers[CAUSATION_ID_HEADER] = row.causation_id;
  return {
    persistent: true,
    messageId: row.message_id,
    timestamp: row.created_at_s,
    contentType: row.content_type,
    headers,
    ...(row.correlation_id !== null && { correlationId: row.correlation_id }),
  };
}

/**
 * The properties a copy of a delivered message keeps when it is published again (a retry or a
 * dead-letter replay), with `headers` in place of the original's. `userId` is left out (the
 * broker checks it against the publishing user) and so is `expiration` (a copy should not vanish
 * on a timer the original may have used up, nor race a delay queue's TTL).
 */
export function copyProperties(
  message: Message,
  headers: Record<string, unknown>,
): Options.Publish {
  const p = message.properties;
  const options: Options.Publish = { headers };
  if (p.messageId !== undefined) options.messageId = p.messageId;
  if (p.contentType !== undefined) options.contentType = p.contentType;
  if (p.contentEncoding !== undefined) options.contentEncoding = p.contentEncoding;
  if (p.correlationId !== undefined) options.correlationId = p.correlationId;
  if (p.timestamp !== undefined) options.timestamp = p.timestamp;
  if (p.type !== undefined) options.type = p.type;
  if (p.appId !== undefined) options.appId = p.appId;
  if (p.replyTo !== undefined) options.replyTo = p.replyTo;
  if (p.priority !== undefined) options.priority = p.priority;
  return options;
}

import type { Message, Options } from 'amqplib';

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

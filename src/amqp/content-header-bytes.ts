import type { Options } from 'amqplib';

/** What a frame adds around its payload: type, channel and size before it, an end octet after. */
export const FRAME_OVERHEAD_BYTES = 8;

/**
 * amqplib encodes a message's headers in a buffer of this size, and refuses a publish whose
 * headers take more ("exceeds the 65536 byte encoding buffer"), whatever the broker's frame_max.
 */
export const AMQPLIB_TABLE_BYTES = 65_536;

/** Class id, weight, body size and property flags, before the properties themselves. */
const CONTENT_HEADER_FIXED_BYTES = 14;

const SHORT_STRING_PROPERTIES = [
  'contentType',
  'contentEncoding',
  'correlationId',
  'replyTo',
  'expiration',
  'messageId',
  'type',
  'userId',
  'appId',
] as const;

/** Bytes of a value in an AMQP field table (its type octet included); numbers at their largest. */
function fieldBytes(value: unknown): number {
  if (typeof value === 'string') return 1 + 4 + Buffer.byteLength(value);
  if (Buffer.isBuffer(value)) return 1 + 4 + value.length;
  if (typeof value === 'boolean') return 1 + 1;
  if (value === null || value === undefined) return 1;
  if (Array.isArray(value)) {
    let bytes = 1 + 4;
    for (const v of value) bytes += fieldBytes(v);
    return bytes;
  }
  if (typeof value === 'object' && !(value instanceof Date)) {
    return 1 + fieldTableBytes(value as Record<string, unknown>);
  }
  // Numbers, bigints and dates: 8 bytes at most.
  return 1 + 8;
}

/** Bytes of one entry of a field table: its name and its value. */
export function fieldEntryBytes(name: string, value: unknown): number {
  return value === undefined ? 0 : 1 + Buffer.byteLength(name) + fieldBytes(value);
}

/** Bytes of an AMQP field table (headers): at most, numbers counted at 8 bytes. */
export function fieldTableBytes(table: Readonly<Record<string, unknown>>): number {
  let bytes = 4;
  // `for...in`, as amqplib's encoder: a key on the prototype is sent too (reencodable-headers.ts).
  for (const name in table) {
    bytes += fieldEntryBytes(name, table[name]);
  }
  return bytes;
}

/**
 * At most the size of a publish's content header frame, less `FRAME_OVERHEAD_BYTES`: what the
 * broker compares with its `frame_max`. One over it makes the broker close the whole connection
 * (501 FRAME_ERROR), which amqplib does not check before sending.
 */
export function contentHeaderBytes(properties: Options.Publish): number {
  let bytes = CONTENT_HEADER_FIXED_BYTES;
  for (const name of SHORT_STRING_PROPERTIES) {
    const value = properties[name];
    if (value !== undefined && value !== null) bytes += 1 + Buffer.byteLength(String(value));
  }
  if (properties.headers !== undefined) bytes += fieldTableBytes(properties.headers);
  if (properties.persistent !== undefined || properties.deliveryMode !== undefined) bytes += 1;
  if (properties.priority !== undefined) bytes += 1;
  if (properties.timestamp !== undefined) bytes += 8;
  return bytes;
}

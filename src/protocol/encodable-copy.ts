import type { Options } from 'amqplib';
import {
  contentHeaderBytes,
  fieldEntryBytes,
  fieldTableBytes,
} from '../amqp/content-header-bytes.js';
import { reencodableHeaders } from '../amqp/reencodable-headers.js';
import { DROPPED_HEADERS_HEADER, OUTBOXKIT_HEADERS } from './dead-letter-headers.js';

/** How large a copy's content header may be on the channel it goes out on. */
export interface CopyLimits {
  /** The most bytes of its content header (`contentHeaderBytes`): the broker's frame_max. */
  readonly maxContentHeaderBytes: number;
  /** The most bytes of its headers (`fieldTableBytes`): amqplib's encoding buffer. */
  readonly maxHeadersBytes: number;
}

/**
 * The largest Number amqplib sends as the `timestamp` property: it writes it through `BigInt`
 * as an unsigned 64-bit integer, and the decoder gives 2^64 for anything from 2^64 - 1024.
 */
const MAX_TIMESTAMP_PROPERTY = 2 ** 64 - 2048;

/**
 * Headers a copy keeps whatever their size: without them it would lose its attempt count (and
 * be retried for ever), or what it is.
 */
const NEVER_DROPPED: ReadonlySet<string> = new Set([
  OUTBOXKIT_HEADERS.retries,
  OUTBOXKIT_HEADERS.attempts,
  OUTBOXKIT_HEADERS.reason,
  OUTBOXKIT_HEADERS.error,
  DROPPED_HEADERS_HEADER,
]);

/** Names `x-outboxkit-dropped-headers` lists at most; one last entry counts the others. */
const MAX_LISTED_NAMES = 32;

/** The cut error's ellipsis, in UTF-8 bytes. */
const ELLIPSIS_BYTES = 3;

/**
 * `properties` of a copy of a delivered message (a retry, a dead letter, a replay) made such
 * that amqplib can encode them and the broker takes them. A copy that cannot be sent is not
 * taken, and its original goes back to its queue, and fails to be copied again, for ever.
 *
 * - Header values that amqplib decodes but cannot encode again go as the same AMQP types where
 *   amqplib can (`reencodableHeaders`).
 * - A `timestamp` the decoder rounded to 2^64 goes as the largest one amqplib can send.
 * - Over the broker's frame or amqplib's 64 KiB of headers, the copy's error text is cut when
 *   that makes room (the error is ours, the headers the publisher's). Else the original's
 *   largest headers are left out until the copy fits, and named in
 *   `x-outboxkit-dropped-headers`; then the error is cut if still needed.
 */
export function encodableCopy(properties: Options.Publish, limits: CopyLimits): Options.Publish {
  let out = properties;
  const { headers, timestamp } = properties;
  if (typeof timestamp === 'number' && timestamp > MAX_TIMESTAMP_PROPERTY) {
    out = { ...out, timestamp: MAX_TIMESTAMP_PROPERTY };
  }
  if (headers === undefined) return out;
  const encodable = reencodableHeaders(headers);
  if (encodable !== headers) out = { ...out, headers: encodable };
  return fitToFrame(out, limits);
}

function listed(names: readonly string[]): string[] {
  if (names.length <= MAX_LISTED_NAMES) return [...names];
  return [...names.slice(0, MAX_LISTED_NAMES), `…and ${names.length - MAX_LISTED_NAMES} more`];
}

function fitToFrame(properties: Options.Publish, limits: CopyLimits): Options.Publish {
  const headers = properties.headers!;
  let content = contentHeaderBytes(properties);
  let table = fieldTableBytes(headers);
  const overBy = (extra = 0) =>
    Math.max(
      content + extra - limits.maxContentHeaderBytes,
      table + extra - limits.maxHeadersBytes,
    );
  if (overBy() <= 0) return properties;
  const error = headers[OUTBOXKIT_HEADERS.error];
  const errorBytes = typeof error === 'string' ? Buffer.byteLength(error) : 0;
  if (overBy() <= errorBytes - ELLIPSIS_BYTES) return cutError(properties, overBy());

  const kept: Record<string, unknown> = { ...headers };
  const earlier = kept[DROPPED_HEADERS_HEADER];
  const dropped = Array.isArray(earlier) ? earlier.filter((n) => typeof n === 'string') : [];
  const earlierBytes = fieldEntryBytes(DROPPED_HEADERS_HEADER, earlier);
  content -= earlierBytes;
  table -= earlierBytes;
  delete kept[DROPPED_HEADERS_HEADER];
  const largestFirst = Object.keys(kept)
    .filter((name) => !NEVER_DROPPED.has(name))
    .map((name) => ({ name, bytes: fieldEntryBytes(name, kept[name]) }))
    .sort((a, b) => b.bytes - a.bytes);
  let recordBytes = dropped.length > 0 ? fieldEntryBytes(DROPPED_HEADERS_HEADER, dropped) : 0;
  for (const { name, bytes } of largestFirst) {
    if (overBy(recordBytes) <= 0) break;
    delete kept[name];
    content -= bytes;
    table -= bytes;
    dropped.push(name);
    recordBytes = fieldEntryBytes(DROPPED_HEADERS_HEADER, listed(dropped));
  }
  if (dropped.length > 0) kept[DROPPED_HEADERS_HEADER] = listed(dropped);
  const fitted = { ...properties, headers: kept };
  const over = overBy(recordBytes);
  return over > 0 ? cutError(fitted, over) : fitted;
}

/**
 * `properties` with the error text `over` bytes shorter, ellipsis included: the original came
 * through a frame of the broker's size, and the error added to it must not push the copy over.
 */
function cutError(properties: Options.Publish, over: number): Options.Publish {
  const error = properties.headers?.[OUTBOXKIT_HEADERS.error];
  if (typeof error !== 'string') return properties;
  // A cut inside a character leaves a U+FFFD, dropped.
  const keep = Math.max(0, Buffer.byteLength(error) - over - ELLIPSIS_BYTES);
  const cut = Buffer.from(error)
    .subarray(0, keep)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return {
    ...properties,
    headers: { ...properties.headers, [OUTBOXKIT_HEADERS.error]: `${cut}…` },
  };
}

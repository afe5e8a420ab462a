import { InvalidMessageError } from '../errors/invalid-message-error.js';
import { isJsonMediaType } from '../protocol/json-media-type.js';
import { mediaType } from '../protocol/media-type.js';
import { STORABLE_TEXT_RULE, unstorableText } from '../util/storable-text.js';

/** The bytes of a row's payload and the content type they are published with. */
export interface EncodedPayload {
  readonly payload: Buffer;
  readonly contentType: string;
}

const DEFAULT_CONTENT_TYPE = 'application/json';
const CONTENT_TYPE_BYTES = 255;
/**
 * `type/subtype` of RFC 9110's tokens, then any parameters. A consumer matches a message by its
 * media type, so a value of another shape would be dead-lettered by every consumer.
 */
const MEDIA_TYPE = /^\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*(;.*)?$/s;

/**
 * Objects `JSON.stringify` turns into `{}` (or, for typed arrays, into an object of indexes)
 * without an error: a Map's entries, a Set's values, a Uint8Array's bytes would arrive lost.
 */
const LOSSY_TAGS = new Set([
  '[object Map]',
  '[object Set]',
  '[object WeakMap]',
  '[object WeakSet]',
  '[object WeakRef]',
  '[object ArrayBuffer]',
  '[object SharedArrayBuffer]',
  '[object Promise]',
  '[object RegExp]',
  '[object Error]',
]);

/** The raw bytes of a binary payload, or undefined when `value` is not one. */
function bytesOf(value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value)) return value;
  const tag = Object.prototype.toString.call(value);
  // Copies: the row is written after `add` returns to the event loop.
  if (tag === '[object Uint8Array]') return Buffer.from(value as Uint8Array);
  if (tag === '[object DataView]' || tag === '[object ArrayBuffer]') {
    const view = ArrayBuffer.isView(value)
      ? new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
      : new Uint8Array(value as ArrayBuffer);
    return Buffer.from(view);
  }
  return undefined;
}

/**
 * What JSON would make of a value that it cannot keep, or undefined: NaN and the infinities
 * arrive as null, a function or a symbol is left out.
 */
function lostValue(value: unknown): string | undefined {
  if (typeof value === 'number') {
    return Number.isFinite(value)
      ? undefined
      : `the number ${value}, which JSON would turn into null`;
  }
  if (typeof value === 'function' || typeof value === 'symbol') {
    return `a ${typeof value}, which JSON would leave out`;
  }
  return undefined;
}

/**
 * What JSON would make of a value given its holder, or undefined: an invalid Date's toJSON()
 * gives null, and an array's `undefined` becomes null (an object's is left out, as it should).
 */
function changedInPlace(holder: unknown, key: string, value: unknown): string | undefined {
  const original = (holder as Record<string, unknown>)[key];
  if (original instanceof Date && Number.isNaN(original.getTime())) {
    return 'an invalid Date, which JSON would turn into null';
  }
  if (value === undefined && Array.isArray(holder)) {
    return 'undefined in an array, which JSON would turn into null';
  }
  return undefined;
}

/** What a value `JSON.stringify` would silently empty is, or undefined for any other value. */
function lossyKind(value: object): string | undefined {
  const proto = Object.getPrototypeOf(value);
  // The common case, object literals and arrays, without a tag lookup.
  if (proto === Object.prototype || proto === Array.prototype || proto === null) return undefined;
  if (ArrayBuffer.isView(value)) return Object.prototype.toString.call(value).slice(8, -1);
  const tag = Object.prototype.toString.call(value);
  if (LOSSY_TAGS.has(tag) || value instanceof Error) return tag.slice(8, -1);
  return undefined;
}

/** What JSON makes of a value of `kind`. */
function lossyForm(kind: string): string {
  if (kind === 'Buffer') return '{ "type": "Buffer", "data": [...] }';
  return kind.endsWith('Array') ? 'an object of indexes' : '{}';
}

/** How to send a value of `kind` without loss. */
function conversionHint(kind: string): string {
  if (kind === 'Map') return 'convert it (Object.fromEntries(map), or [...map] for its entries)';
  if (kind === 'Set') return 'convert it ([...set])';
  if (kind.endsWith('Array') || kind.endsWith('Buffer') || kind === 'DataView') {
    return 'convert it (Array.from(array)), or send the payload as bytes (a Uint8Array, DataView or ArrayBuffer of the whole payload) with a `contentType`';
  }
  return 'convert it to plain data (an object, array, string or number), or give it a toJSON()';
}

function checkContentType(value: unknown, index: number): string {
  if (
    typeof value !== 'string' ||
    value.trim() === '' ||
    Buffer.byteLength(value) > CONTENT_TYPE_BYTES ||
    unstorableText(value) !== undefined
  ) {
    throw new InvalidMessageError(
      'missing-content-type',
      `\`contentType\` must be a media type such as "application/octet-stream" (1 to ${CONTENT_TYPE_BYTES} bytes, not blank, ${STORABLE_TEXT_RULE}), got ${JSON.stringify(value)}`,
      index,
    );
  }
  if (!MEDIA_TYPE.test(value)) {
    throw new InvalidMessageError(
      'invalid-content-type',
      `\`contentType\` must be a media type, \`type/subtype\` with optional \`; parameters\` (such as "application/json" or "text/plain; charset=utf-8"), got ${JSON.stringify(value)}`,
      index,
    );
  }
  return value;
}

/** A symbol key of an object that `JSON.stringify` would leave out with its value, if any. */
function enumerableSymbol(value: object): symbol | undefined {
  const symbols = Object.getOwnPropertySymbols(value);
  if (symbols.length === 0) return undefined;
  return symbols.find((s) => Object.prototype.propertyIsEnumerable.call(value, s));
}

/** Where the replacer is: `is` for the payload itself, `holds at key "k"` within it. */
function placeOf(holder: unknown, key: string, payload: unknown): string {
  // The first call's holder is `{ '': payload }`; Object.is, as NaN is not === itself.
  const top = key === '' && Object.is((holder as Record<string, unknown>)[''], payload);
  return top ? 'is' : `holds at key ${JSON.stringify(key)}`;
}

function toJson(payload: unknown, index: number): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload, function check(this: unknown, key: string, value: unknown) {
      const changed = lostValue(value) ?? changedInPlace(this, key, value);
      if (changed !== undefined) {
        throw new InvalidMessageError(
          'payload-not-serializable',
          `payload ${placeOf(this, key, payload)} ${changed}: send plain data`,
          index,
        );
      }
      if (value !== null && typeof value === 'object') {
        // A Buffer's toJSON() ran before this and gave `{ type, data }`, which looks like data.
        const kind = Buffer.isBuffer((this as Record<string, unknown>)[key])
          ? 'Buffer'
          : lossyKind(value);
        if (kind !== undefined) {
          throw new InvalidMessageError(
            'payload-not-serializable',
            // "a Uint8Array", "an Error".
            `payload ${placeOf(this, key, payload)} ${/^[AEIO]/.test(kind) ? 'an' : 'a'} ${kind}, which JSON would turn into ${lossyForm(kind)}: ${conversionHint(kind)}`,
            index,
          );
        }
        const symbol = enumerableSymbol(value);
        if (symbol !== undefined) {
          throw new InvalidMessageError(
            'payload-not-serializable',
            `payload ${placeOf(this, key, payload)} an object with a symbol key (${String(symbol)}), which JSON would leave out with its value: give it a string key`,
            index,
          );
        }
      }
      return value;
    });
  } catch (error) {
    if (error instanceof InvalidMessageError) throw error;
    throw new InvalidMessageError(
      'payload-not-serializable',
      `payload cannot be serialized to JSON: ${(error as Error).message}`,
      index,
      error,
    );
  }
  if (json === undefined) {
    throw new InvalidMessageError(
      'payload-not-serializable',
      `payload of type ${typeof payload} has no JSON form`,
      index,
    );
  }
  return json;
}

/**
 * The payload's bytes. Bytes (a Buffer, Uint8Array, DataView or ArrayBuffer) are sent as given
 * and need a `contentType`. A string with a content type that is not JSON is sent as its UTF-8
 * text (`text/plain`, `text/csv`...), so the consumer's bytes are the string. Anything else is
 * JSON-encoded, a string under a JSON content type included; a value JSON would silently empty
 * (a Map, a Set, a typed array...) is refused rather than sent as `{}`.
 */
export function encodePayload(
  payload: unknown,
  givenContentType: unknown,
  index: number,
  maxMessageBytes: number,
): EncodedPayload {
  let bytes = bytesOf(payload);
  let contentType: string;
  if (bytes !== undefined) {
    if (givenContentType === undefined) {
      throw new InvalidMessageError(
        'missing-content-type',
        'a binary payload (Buffer, Uint8Array, DataView, ArrayBuffer) needs `contentType` (for example "application/octet-stream")',
        index,
      );
    }
    contentType = checkContentType(givenContentType, index);
  } else {
    contentType =
      givenContentType === undefined
        ? DEFAULT_CONTENT_TYPE
        : checkContentType(givenContentType, index);
    if (typeof payload === 'string' && !isJsonMediaType(mediaType(contentType))) {
      if (!(payload as unknown as { isWellFormed(): boolean }).isWellFormed()) {
        throw new InvalidMessageError(
          'payload-not-serializable',
          'a text payload must be well-formed Unicode: a lone surrogate would be sent as U+FFFD',
          index,
        );
      }
      bytes = Buffer.from(payload, 'utf8');
    } else {
      bytes = Buffer.from(toJson(payload, index));
    }
  }
  if (bytes.length > maxMessageBytes) {
    throw new InvalidMessageError(
      'payload-too-large',
      `payload is ${bytes.length} bytes, over the limit of ${maxMessageBytes} (option maxMessageBytes)`,
      index,
    );
  }
  return { payload: bytes, contentType };
}

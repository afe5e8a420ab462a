import { amqpEncodableNumber } from './encodable-number.js';

/*
 * Headers as amqplib decodes them (`message.properties.headers`), made ready for its encoder:
 * a copy of a delivered message (a retry, a dead letter, a replay) must send them again, and
 * amqplib's decoder gives some values its encoder refuses (node_modules/amqplib/lib/codec.js).
 *
 * - A timestamp decodes as `{ '!': 'timestamp', value: seconds }` and a decimal as
 *   `{ '!': 'decimal', value: { places, digits } }`: the encoder takes both back as the same
 *   types, except a timestamp at 2^64 - 1024 or over, which the decoder rounds to 2^64 (a Number)
 *   and the encoder then finds out of range.
 * - A nested table with a key `!` decodes as a plain object with an own `!`, which the encoder
 *   takes for a type name ("Unknown type to encode: ..."). The encoder walks a table's keys with
 *   `for...in` and checks only an own `!` for a type: with the `!` on the prototype it sends the
 *   same table again.
 * - A double (or float) with a fraction at 2^50 or more in magnitude, or below -2^63, or NaN, or
 *   -Infinity, decodes as a Number that the encoder sends as a 64-bit integer, and fails.
 *   Tagged as a double, it goes out as one.
 */

/** What the decoder gives for a timestamp of 2^64 - 1024 or more; the encoder refuses it. */
const TIMESTAMP_ROUNDED_OVER = 2 ** 64;
/** The largest AMQP timestamp; a string, which amqplib's encoder reads through `BigInt`. */
const MAX_TIMESTAMP = '18446744073709551615';

function hasOnlyKeys(value: object, a: string, b: string): boolean {
  const keys = Object.keys(value);
  return keys.length === 2 && Object.hasOwn(value, a) && Object.hasOwn(value, b);
}

/**
 * A typed value as amqplib decodes one, made encodable; undefined when `value` is not one (a
 * table of the publisher's that has a key `!`). Only timestamps and decimals decode so; a table
 * of exactly `{ '!': 'timestamp', value: <whole number> }` cannot be told from a timestamp.
 */
function decodedTypedValue(value: Record<string, unknown>): unknown {
  if (!hasOnlyKeys(value, '!', 'value')) return undefined;
  const v = value['value'];
  if (value['!'] === 'timestamp' && typeof v === 'number' && Number.isInteger(v) && v >= 0) {
    return v >= TIMESTAMP_ROUNDED_OVER ? { '!': 'timestamp', value: MAX_TIMESTAMP } : value;
  }
  if (
    value['!'] === 'decimal' &&
    typeof v === 'object' &&
    v !== null &&
    hasOnlyKeys(v, 'places', 'digits')
  ) {
    const { places, digits } = v as Record<string, unknown>;
    const ok =
      Number.isInteger(places) &&
      (places as number) >= 0 &&
      (places as number) < 256 &&
      Number.isInteger(digits) &&
      (digits as number) >= 0 &&
      (digits as number) < 2 ** 32;
    if (ok) return value;
  }
  return undefined;
}

/** `table`'s values made encodable; `table` itself when none needed it. */
function reencodableTable(table: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  // `for...in`, as amqplib's encoder walks a table: a key on the prototype is sent too.
  for (const key in table) {
    const value = table[key];
    if (value === undefined) continue;
    const copy = reencodable(value);
    if (copy === value) continue;
    out ??= { ...table };
    out[key] = copy;
  }
  return out ?? table;
}

/**
 * `value` as amqplib's encoder takes it and sends it as the AMQP type it was decoded from, where
 * amqplib can (see above); `value` itself when it is fine as it is. Not a value's type that AMQP
 * has (a bigint, a function: not from the wire, a handler's own) goes as its text.
 */
export function reencodable(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return amqpEncodableNumber(value) ? value : { '!': 'double', value };
    case 'object':
      break;
    default:
      return String(value);
  }
  if (value === null || Buffer.isBuffer(value)) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (const [i, v] of value.entries()) {
      // In an array, amqplib encodes undefined as an unknown type; null is AMQP's void.
      const copy = v === undefined ? null : reencodable(v);
      if (copy === v) continue;
      out ??= [...value];
      out[i] = copy;
    }
    return out ?? value;
  }
  const table = value as Record<string, unknown>;
  if (!Object.hasOwn(table, '!')) return reencodableTable(table);
  const typed = decodedTypedValue(table);
  if (typed !== undefined) return typed;
  // A table of the publisher's with a key `!`: its `!` goes on the prototype, where the encoder
  // sends it as a key like any other.
  const { '!': bang, ...rest } = table;
  return Object.assign(Object.create({ '!': reencodable(bang) }), reencodableTable(rest));
}

/**
 * Decoded headers made ready for amqplib's encoder (see above); `headers` itself when they are
 * fine as they are, the usual case.
 */
export function reencodableHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  return reencodableTable(headers);
}

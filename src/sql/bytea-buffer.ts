import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * A bytea column's value as a Buffer, whatever the pool's type parser for bytea made of it. pg
 * gives a Buffer; an application's parser may leave the server's text: `\x` and hex digits, or,
 * with `bytea_output = escape`, the bytes with backslash escapes. Read as anything else, the
 * relay took every payload for one it cannot send, and parked it.
 */
export function byteaBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.length);
  if (typeof value !== 'string') {
    throw new OutboxkitError(
      'unreadable-payload',
      `a payload (bytea) came back from the pool as ${typeof value}, not bytes or text: check the bytea type parser of the pool or of pg's global registry`,
    );
  }
  if (value.startsWith('\\x')) return Buffer.from(value.slice(2), 'hex');
  return unescapeBytea(value);
}

/** bytea's escape format: `\\` is a backslash, `\ooo` an octal byte, anything else itself. */
function unescapeBytea(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code !== 0x5c) {
      bytes.push(code);
    } else if (text[i + 1] === '\\') {
      bytes.push(0x5c);
      i += 1;
    } else {
      bytes.push(Number.parseInt(text.slice(i + 1, i + 4), 8));
      i += 3;
    }
  }
  return Buffer.from(bytes);
}

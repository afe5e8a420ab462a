import { unstorableText } from '../util/storable-text.js';

/**
 * The most UTF-8 bytes a business key may have. The key is stored in `processed_messages`,
 * whose primary key `(consumer, business_key)` is a btree: an index row cannot exceed about
 * 2700 bytes (a third of an 8 KB page), and Postgres refuses the insert beyond it. A consumer
 * name is at most 255 bytes, so 255 + 1024 bytes, with the row's headers, always fit, with
 * room to spare; and keys are compared on every claim, so they are better kept short.
 */
export const MAX_BUSINESS_KEY_BYTES = 1024;

/**
 * What makes `key` unusable as a business key, as a phrase ("contains NUL ..."), or undefined
 * when it is fine: text Postgres cannot store as given (a lone surrogate would be stored as
 * U+FFFD, so that `'x\uD800'` and `'x\uD801'` would be one key and the second message acked as
 * a duplicate without its effects), or longer than `MAX_BUSINESS_KEY_BYTES`. Checked on the
 * consumer, before any transaction; the writer refuses such text in a message id, the default
 * key, by the same rule.
 */
export function businessKeyProblem(key: string): string | undefined {
  const text = unstorableText(key);
  if (text !== undefined) return text;
  const bytes = Buffer.byteLength(key);
  if (bytes > MAX_BUSINESS_KEY_BYTES) {
    return `is ${bytes} bytes, longer than the limit ${MAX_BUSINESS_KEY_BYTES} (UTF-8 bytes)`;
  }
  return undefined;
}

/** The start of a key, quoted and escaped (NUL and lone surrogates show as \u escapes). */
export function quoteKey(key: string, maxChars = 40): string {
  return key.length > maxChars
    ? `${JSON.stringify(key.slice(0, maxChars))}...`
    : JSON.stringify(key);
}

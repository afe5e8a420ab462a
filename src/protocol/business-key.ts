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
 * when it is fine. Postgres text cannot hold U+0000 (the claim would fail on every attempt), and
 * stores a lone surrogate as U+FFFD, so that `'x\uD800'` and `'x\uD801'` would be one key and
 * the second message would be acked as a duplicate without its effects. Checked on the
 * consumer, before any transaction, and on the writer for the message id, the default key.
 */
export function businessKeyProblem(key: string): string | undefined {
  if (key.includes('\u0000')) {
    return 'contains NUL (U+0000), which Postgres text cannot store';
  }
  if (!(key as unknown as WellFormedCheck).isWellFormed()) {
    return (
      'is not well-formed Unicode (a lone surrogate), which Postgres would store as U+FFFD, ' +
      'the same as other such keys'
    );
  }
  const bytes = Buffer.byteLength(key);
  if (bytes > MAX_BUSINESS_KEY_BYTES) {
    return `is ${bytes} bytes, longer than the limit ${MAX_BUSINESS_KEY_BYTES} (UTF-8 bytes)`;
  }
  return undefined;
}

/** `String.prototype.isWellFormed` (Node 20+), not in the ES2023 lib the build targets. */
interface WellFormedCheck {
  isWellFormed(): boolean;
}

/** The start of a key, quoted and escaped (NUL and lone surrogates show as \u escapes). */
export function quoteKey(key: string, maxChars = 40): string {
  return key.length > maxChars
    ? `${JSON.stringify(key.slice(0, maxChars))}...`
    : JSON.stringify(key);
}

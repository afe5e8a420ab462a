/** How many causes of an error `thrownText` follows. */
const MAX_CAUSES = 3;

/**
 * What was thrown, as text, for a dead letter's record: an Error's message with its causes
 * (`outer (caused by TypeError: inner)`), anything else as `valueText` gives it. Never throws.
 */
export function thrownText(error: unknown): string {
  if (!(error instanceof Error)) return valueText(error);
  let text = valueText(error.message);
  const seen = new Set<unknown>([error]);
  let cause: unknown = error.cause;
  for (let depth = 0; depth < MAX_CAUSES && cause !== undefined && !seen.has(cause); depth += 1) {
    seen.add(cause);
    text +=
      cause instanceof Error
        ? ` (caused by ${valueText(cause.name)}: ${valueText(cause.message)})`
        : ` (caused by ${valueText(cause)})`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return text;
}

/**
 * Any value as text, never throwing: a handler may throw an object without a prototype, or one
 * whose `toString` throws, and the consumer must still record and route the failure. A plain
 * object shows its fields (`{"code":"E42"}`), not `[object Object]`.
 */
export function valueText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null) {
    const json = attempt(() => JSON.stringify(value));
    if (json !== undefined && json !== '{}') return json;
    return attempt(() => String(value)) ?? Object.prototype.toString.call(value);
  }
  return attempt(() => String(value)) ?? typeof value;
}

function attempt(text: () => string | undefined): string | undefined {
  try {
    return text();
  } catch {
    return undefined;
  }
}

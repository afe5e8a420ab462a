/**
 * Whether a media type (lowercase, without parameters) is JSON: `application/json` or a
 * `+json` suffix. The writer JSON-encodes payloads of these types and sends any other type's
 * bytes as given; the consumer parses these and hands the others' bytes to the handler.
 */
export function isJsonMediaType(type: string): boolean {
  return type === 'application/json' || type.endsWith('+json');
}

/** `Application/JSON; charset=utf-8` -> `application/json`. */
export function mediaType(contentType: string): string {
  return contentType.split(';', 1)[0]!.trim().toLowerCase();
}

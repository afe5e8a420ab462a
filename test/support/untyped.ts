/**
 * A value as a plain-JavaScript caller would pass it, past the compiler: for tests of the
 * checks that refuse what the types already forbid.
 */
export const untyped = <T>(value: unknown): T => value as T;

import assert from 'node:assert/strict';
import { ConfigurationError } from '../../src/errors/configuration-error.js';

/**
 * What a plain-JavaScript caller can hand over: the compiler sees none of it.
 */
// biome-ignore lint/suspicious/noExplicitAny: the point is to pass what the types forbid
export const js = (value: unknown): any => value;

/** For `assert.throws`: a ConfigurationError naming `option`, whose message matches `detail`. */
export const refused = (option: string, detail?: RegExp) => (error: unknown) => {
  assert.ok(error instanceof ConfigurationError, String(error));
  assert.equal(error.option, option);
  if (detail) assert.match(error.message, detail);
  return true;
};

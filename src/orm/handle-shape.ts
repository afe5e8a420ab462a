import { ConfigurationError } from '../errors/configuration-error.js';
import { NotInTransactionError } from '../errors/not-in-transaction-error.js';
import { describeValue } from '../util/describe-value.js';

/** The first of `methods` that `value` lacks, or '' when `value` is no object at all. */
function missingMethod(value: unknown, methods: readonly string[]): string | undefined {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return '';
  return methods.find((m) => typeof (value as Record<string, unknown>)[m] !== 'function');
}

function what(value: unknown, missing: string): string {
  return missing === '' ? describeValue(value) : `an object without \`${missing}()\``;
}

/**
 * Refuses, for the writer, what cannot be the ORM's transaction handle at all (undefined, a
 * string, an object without the methods the adapter calls) with the adapter's fix, before a read
 * of those methods would throw a bare TypeError.
 */
export function requireTransactionHandle(
  handle: unknown,
  methods: readonly string[],
  fix: string,
): void {
  const missing = missingMethod(handle, methods);
  if (missing !== undefined) {
    throw new NotInTransactionError(`got ${what(handle, missing)}; ${fix}`);
  }
}

/**
 * Refuses, for a consumer host's `transactions`, what an ORM adapter's entry point cannot open
 * transactions with: `expected` names what to pass.
 */
export function requireOrmArgument(
  adapter: string,
  value: unknown,
  methods: readonly string[],
  expected: string,
): void {
  const missing = missingMethod(value, methods);
  if (missing !== undefined) {
    throw new ConfigurationError(
      'transactions',
      `${adapter} takes ${expected}; got ${what(value, missing)}`,
    );
  }
}

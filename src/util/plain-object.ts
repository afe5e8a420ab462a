/**
 * Whether `value` is an object literal (or `Object.create(null)`): not an array, a Map, a class
 * instance or a boxed primitive. Checked by the prototype chain's length, not by identity with
 * `Object.prototype`, so an object from another realm (a `vm` context, Jest) passes too.
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  if (Object.prototype.toString.call(value) !== '[object Object]') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

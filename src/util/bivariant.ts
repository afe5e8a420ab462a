/**
 * A function type checked like a method (bivariantly in its parameters), so that an optional
 * callback of a definition typed for one payload still fits where any payload is taken, as a
 * method would, while the field also takes an explicit `undefined` (which a method declared
 * with `?` does not, under `exactOptionalPropertyTypes`).
 */
// biome-ignore lint/suspicious/noExplicitAny: matches every function type
export type Bivariant<F extends (...args: any[]) => unknown> = {
  check(...args: Parameters<F>): ReturnType<F>;
}['check'];

/**
 * `T` with every optional field filled in: present and not `undefined`. `Required` is not enough
 * for options typed `?: X | undefined`: under `exactOptionalPropertyTypes` it keeps the
 * `undefined`.
 */
export type DefaultsFilled<T> = { readonly [K in keyof T]-?: Exclude<T[K], undefined> };

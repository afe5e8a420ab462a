/**
 * `T`, but not a place TypeScript infers `T` from (as `NoInfer` of TypeScript 5.4, which older
 * compilers lack): the host's handle type comes from its `transactions` alone, and each consumer
 * is checked against it instead of widening it.
 */
export type NotInferred<T> = [T][T extends unknown ? 0 : never];

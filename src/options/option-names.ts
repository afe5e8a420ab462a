/**
 * The names of an options interface, spelled once at runtime so that docs/options.md can be
 * checked against them. The type check makes the list exact: a name the interface lacks, or one
 * of its names left out, fails to compile.
 *
 * @example
 * export const RELAY_OPTION_NAMES = optionNames<RelayOptions>()(['pool', 'databaseUrl', ...]);
 */
export function optionNames<T>(): <const N extends readonly (keyof T & string)[]>(
  names: N &
    ([Exclude<keyof T, N[number]>] extends [never]
      ? unknown
      : { readonly missing: Exclude<keyof T, N[number]> }),
) => readonly (keyof T & string)[] {
  return (names) => Object.freeze([...names]);
}

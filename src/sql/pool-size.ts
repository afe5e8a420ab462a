/** A pool's most connections, when it says: only a pg `Pool` does (`options.max`). */
export function poolMax(pool: unknown): number | undefined {
  const max = (pool as { options?: { max?: unknown } } | undefined)?.options?.max;
  return typeof max === 'number' ? max : undefined;
}

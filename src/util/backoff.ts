/** Exponential backoff: how long to wait before attempt `attempt + 1`. */
export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor?: number | undefined;
  /** Fraction of the delay drawn at random, so retries of many rows or processes spread out. */
  readonly jitter?: number | undefined;
}

export function backoffDelay(policy: BackoffPolicy, attempt: number, random = Math.random): number {
  const exp = policy.initialMs * (policy.factor ?? 2) ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.maxMs, exp);
  const jitter = policy.jitter ?? 0.2;
  return Math.round(capped * (1 - jitter + 2 * jitter * random()));
}

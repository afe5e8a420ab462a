/**
 * The known name (a flag, an option, a command) closest to an unknown one, for "did you mean":
 * within two edits, one that the typed name is the start of, or one of the same stem (`migrations`
 * for `migrate`). Undefined when nothing is close enough to be a fair guess.
 */
export function closestName(typed: string, known: readonly string[]): string | undefined {
  const name = typed.replace(/^-+/, '').split('=')[0]!;
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of known) {
    const distance =
      candidate.startsWith(name) && name.length >= 3
        ? 1
        : sameStem(name, candidate) || shortened(name, candidate)
          ? 2
          : editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const limit = name.length <= 4 ? 1 : 2;
  return bestDistance <= limit ? best : undefined;
}

/**
 * `typed` is `known` with up to three letters left out, the first kept (`orderKey` for
 * `orderingKey`, `maxAtempts` for `maxAttempts`): five letters or more, in order.
 */
function shortened(typed: string, known: string): boolean {
  if (typed.length < 5 || typed[0] !== known[0]) return false;
  const missing = known.length - typed.length;
  if (missing < 1 || missing > 3) return false;
  let at = 0;
  for (const letter of known) if (letter === typed[at]) at += 1;
  return at === typed.length;
}

/**
 * Both start with the same five letters or more, and differ only in their last few: the
 * shorter's last one, and at most four beyond the shared start (`migrations` for `migrate`,
 * not `migrations-table`).
 */
function sameStem(a: string, b: string): boolean {
  let shared = 0;
  while (shared < a.length && shared < b.length && a[shared] === b[shared]) shared += 1;
  return (
    shared >= 5 &&
    shared >= Math.min(a.length, b.length) - 1 &&
    Math.max(a.length, b.length) - shared <= 4
  );
}

/** Levenshtein distance, with a swap of two neighbours counted as one edit. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j += 1) d[0]![j] = j;
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The soak's fault schedule, drawn from a seed: the same seed and length give the same faults,
 * in the same order, with the same pauses between them and the same durations. Pure, so a test
 * can draw it twice and compare.
 */

/** Every fault the soak injects. */
export const FAULT_KINDS = [
  'relay-sigkill',
  'relay-sigterm',
  'consumer-sigkill',
  'close-all-connections',
  'broker-kill-9',
  'broker-stop-start-app',
  'postgres-restart-fast',
  'postgres-restart-immediate',
  'terminate-backends',
  'memory-alarm',
  'proxy-pause',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults that last a while before they are healed; the others are one blow. */
const HELD: ReadonlySet<FaultKind> = new Set([
  'broker-stop-start-app',
  'memory-alarm',
  'proxy-pause',
]);

export interface ScheduledFault {
  /** Position in the schedule, from 1. */
  readonly n: number;
  /** Pause after the previous fault was healed (after the start, for the first). */
  readonly gapMs: number;
  /**
   * Offset from the start were every fault instant: a fault takes time (a broker boots in
   * seconds), so the real offsets come later; the order, the pauses and the holds do not move.
   */
  readonly atMs: number;
  readonly kind: FaultKind;
  /** Which relay (0 or 1) or consumer (0 ordered, 1 plain) it hits, where it hits one. */
  readonly target: number;
  /** How long a held fault lasts before it is healed; 0 for a blow. */
  readonly holdMs: number;
}

export interface ScheduleOptions {
  /** Shortest and longest pause between one fault's healing and the next fault. */
  readonly gapMs?: readonly [number, number];
  /** Shortest and longest duration of a held fault. */
  readonly holdMs?: readonly [number, number];
}

/** mulberry32: a 32-bit PRNG, small and good enough to draw a schedule. Returns [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A whole number in [low, high]. */
function between(random: () => number, low: number, high: number): number {
  return low + Math.floor(random() * (high - low + 1));
}

/**
 * The faults of a run of `seconds`: as many as fit were every fault instant, more than a run
 * injects. Kinds are drawn as shuffled rounds of every kind, so a short run still sees most of
 * them and a long one sees each about equally often.
 */
export function drawSchedule(
  seed: number,
  seconds: number,
  options: ScheduleOptions = {},
): ScheduledFault[] {
  const [gapLow, gapHigh] = options.gapMs ?? [1500, 4000];
  const [holdLow, holdHigh] = options.holdMs ?? [1000, 5000];
  const random = mulberry32(seed);
  const faults: ScheduledFault[] = [];
  let at = 0;
  let round: FaultKind[] = [];
  for (;;) {
    const gapMs = between(random, gapLow, gapHigh);
    if (round.length === 0) round = shuffled(FAULT_KINDS, random);
    const kind = round.pop()!;
    const target = between(random, 0, 1);
    const holdMs = HELD.has(kind) ? between(random, holdLow, holdHigh) : 0;
    at += gapMs;
    if (at >= seconds * 1000) return faults;
    faults.push({ n: faults.length + 1, gapMs, atMs: at, kind, target, holdMs });
    at += holdMs;
  }
}

/** Fisher-Yates with the given generator. */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** One line per fault, for the log at the start of a run. */
export function describeFault(fault: ScheduledFault): string {
  const who = fault.kind.startsWith('relay-')
    ? ` relay${fault.target}`
    : fault.kind.startsWith('consumer-')
      ? ` ${fault.target === 0 ? 'ordered' : 'plain'} consumer`
      : '';
  const hold = fault.holdMs > 0 ? ` for ${(fault.holdMs / 1000).toFixed(1)} s` : '';
  return `#${fault.n} ${(fault.gapMs / 1000).toFixed(1)} s after the last: ${fault.kind}${who}${hold}`;
}

/** Checks that two draws of one seed agree and that another seed differs; throws if not. */
export function checkScheduleIsReproducible(seed: number, seconds: number): void {
  const a = JSON.stringify(drawSchedule(seed, seconds));
  const b = JSON.stringify(drawSchedule(seed, seconds));
  if (a !== b) throw new Error(`two draws of seed ${seed} gave different schedules`);
  if (seconds >= 30 && JSON.stringify(drawSchedule((seed + 1) >>> 0, seconds)) === a) {
    throw new Error(`seeds ${seed} and ${seed + 1} gave the same schedule`);
  }
}

/**
 * What a test runner's fake timers do to the globals (Jest's `useFakeTimers`, Vitest's
 * `vi.useFakeTimers`) while a test holds them and never advances the clock: `setTimeout`,
 * `setInterval` and `setImmediate` never fire, `performance.now()` and `Date.now()` stand still.
 * The `node:timers` module and `node:perf_hooks`' `performance` are left alone, as those runners
 * leave them (a fake `performance` object takes the global's place). Returns what puts the real ones back.
 */
export function freezeGlobalTimers(): () => void {
  const global = globalThis as unknown as Record<string, unknown>;
  const names = [
    'setTimeout',
    'setInterval',
    'setImmediate',
    'clearTimeout',
    'clearInterval',
    'clearImmediate',
  ] as const;
  const saved = new Map(names.map((name) => [name, global[name]]));
  const frozenAt = performance.now();
  const frozenDate = Date.now();
  // The runners put an object of their own in the global's place, not a method on Node's.
  const realPerformance = Object.getOwnPropertyDescriptor(globalThis, 'performance');
  const dateNow = Date.now;
  let nextId = 1;
  const fake = new Set<number>();
  for (const name of names) {
    global[name] = name.startsWith('clear')
      ? (handle: unknown) => {
          // A real timer made before the freeze is still cleared, as the runners do.
          if (typeof handle === 'number' && fake.delete(handle)) return;
          (saved.get(name) as (handle: unknown) => void)(handle);
        }
      : () => {
          const id = nextId;
          nextId += 1;
          fake.add(id);
          return id;
        };
  }
  Object.defineProperty(globalThis, 'performance', {
    configurable: true,
    value: { now: () => frozenAt, timeOrigin: performance.timeOrigin },
  });
  Date.now = () => frozenDate;
  return () => {
    for (const [name, real] of saved) global[name] = real;
    if (realPerformance) Object.defineProperty(globalThis, 'performance', realPerformance);
    Date.now = dateNow;
  };
}

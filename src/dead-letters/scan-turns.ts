import { monotonicMs } from '../util/monotonic-clock.js';
import { settleWithin } from '../util/with-timeout.js';
import { DeadLetterQueueBusyError } from './dead-letter-queue-busy-error.js';

/** The last scan in line for each queue of this process, by `scanTurnKey`. */
const lines = new Map<string, Promise<void>>();

/** One queue on one broker: scans of it by any `DeadLetterQueue` of this process take turns. */
export function scanTurnKey(urls: readonly string[], queue: string): string {
  return `${urls.join(' ')}\n${queue}`;
}

/**
 * Waits until the scans of `key` that came before in this process are done, and returns the
 * function that ends this one's turn. Within a process, scans queue up here rather than all
 * polling the broker for its lock, and go in the order they came. Waiting past `deadline`
 * throws a `DeadLetterQueueBusyError`; the turn is then passed on as soon as it comes.
 */
export async function takeScanTurn(
  key: string,
  queue: string,
  startedAt: number,
  deadline: number,
): Promise<() => void> {
  const before = lines.get(key) ?? Promise.resolve();
  let end!: () => void;
  const mine = new Promise<void>((resolve) => {
    end = resolve;
  });
  const line = before.then(() => mine);
  lines.set(key, line);
  void line.then(() => {
    if (lines.get(key) === line) lines.delete(key);
  });
  const turn = await settleWithin(
    before.then(() => 'turn' as const),
    Math.max(0, deadline - monotonicMs()),
  );
  if (turn === undefined) {
    void before.then(end);
    throw new DeadLetterQueueBusyError(queue, monotonicMs() - startedAt);
  }
  return end;
}

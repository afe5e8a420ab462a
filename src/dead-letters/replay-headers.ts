import { OUTBOXKIT_HEADERS } from '../consumer/dead-letter-headers.js';

/** Set on a replayed copy: when it was replayed, for whoever looks at it later. */
export const REPLAYED_AT_HEADER = 'x-outboxkit-replayed-at';

/** Headers of the broker's own dead-lettering; they describe hops that no longer matter. */
const BROKER_DEATH_HEADERS = [
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
];

/** Where a replayed dead letter goes. */
export type ReplayTarget =
  /** Only the consumer that gave up on it, through the default exchange. */
  | 'queue'
  /** The exchange and routing key it was first published with: every bound queue gets it. */
  | 'exchange';

/**
 * The headers of a replayed copy: the dead-letter record and any attempt counter are dropped so
 * the consumer starts with attempt 1, as for a new message. The message id and every header of
 * the publisher's own (ordering key, causation id...) stay, so the business key is the same and
 * the replay still dedupes. Sent to the queue, the copy keeps the original exchange and routing
 * key headers: the consumer reads them for `ctx.exchange` and `ctx.routingKey`, since the copy
 * itself arrives through the default exchange.
 */
export function replayHeaders(
  headers: Readonly<Record<string, unknown>>,
  target: ReplayTarget,
  now = new Date(),
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...headers };
  for (const name of Object.values(OUTBOXKIT_HEADERS)) {
    const keep =
      target === 'queue' &&
      (name === OUTBOXKIT_HEADERS.originalExchange ||
        name === OUTBOXKIT_HEADERS.originalRoutingKey);
    if (!keep) delete out[name];
  }
  for (const name of BROKER_DEATH_HEADERS) delete out[name];
  out[REPLAYED_AT_HEADER] = now.toISOString();
  return out;
}

import type { ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { isLedgerPayload, type LedgerPayload, writeLedgerEffect } from './fault-scenario.js';

/**
 * A consumer of the soak's ledger: the child process runs it, the soak computes its queue names
 * from it.
 */
export function soakConsumerDefinition(
  consumer: string,
  exchange: string,
  ordered: boolean,
  ledgerSchema: string,
  queueType: 'classic' | 'quorum',
): ConsumerDefinition<LedgerPayload> {
  return {
    name: consumer,
    exchange,
    routingKeys: ['ledger.#'],
    queueType,
    ordered,
    concurrency: 4,
    // Faults come every few seconds for minutes: a message must not run out of attempts
    // because two of them hit it in a row. A dead letter fails the soak.
    retry: { maxAttempts: 30, backoff: { initialMs: 100, maxMs: 1000 } },
    timeoutMs: 10_000,
    validate: (payload: unknown) => {
      if (!isLedgerPayload(payload)) throw new Error('payload is not a ledger message');
      return payload;
    },
    handler: (payload, context) => writeLedgerEffect(ledgerSchema, payload, context),
  };
}

import type { ConfirmChannel, Message } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
import { CAUSATION_ID_HEADER, ORDERING_KEY_HEADER } from '../writer/outbox-message.js';
import type { OutboxRow } from './outbox-row.js';
import { ACKED, type PublishOutcome, RELEASED } from './publish-outcome.js';
import type { RelayStats } from './relay-stats.js';

/** A row to publish, unless the relay already knows its outcome. */
export interface PublishRequest {
  readonly row: OutboxRow;
  readonly outcome?: PublishOutcome;
}

/**
 * Publishes batches on one confirm channel and turns the broker's answers into one outcome per
 * row. A `basic.return` arrives before the ack of the same message, so a returned message is
 * known to be unroutable by the time its (positive) confirm comes in.
 */
export class ConfirmPublisher {
  readonly #channel: ConfirmChannel;
  readonly #stats: Pick<RelayStats, 'publishSeconds'>;
  readonly #returned = new Map<string, string>();
  #closedReason: string | undefined;

  /** `stats.publishSeconds` receives, per message, the time from publish to the broker's answer. */
  constructor(channel: ConfirmChannel, stats: Pick<RelayStats, 'publishSeconds'>) {
    this.#channel = channel;
    this.#stats = stats;
    channel.on('return', (message: Message) => {
      const id = message.properties.messageId as string | undefined;
      const fields = message.fields as unknown as { replyCode?: number; replyText?: string };
      if (id !== undefined) {
        this.#returned.set(id, `${fields.replyCode ?? ''} ${fields.replyText ?? ''}`.trim());
      }
    });
    channel.on('error', (error: Error) => {
      this.#closedReason = `channel error: ${error.message}`;
    });
    // Ahead of amqplib's own 'close' listener, which fails the pending confirms: their callbacks
    // must already see the channel closed (no broker answer to time, and the reason to record).
    channel.prependListener('close', () => {
      this.#closedReason ??= 'channel closed';
    });
  }

  get isOpen(): boolean {
    return this.#closedReason === undefined;
  }

  /**
   * Publishes every request without a preset outcome and waits for all confirms, for at most
   * `timeoutMs`. Rows still unsettled then are transient failures; when `stop` aborts first,
   * they are released untouched.
   */
  publishBatch(
    requests: readonly PublishRequest[],
    timeoutMs: number,
    stop?: AbortSignal,
  ): Promise<PublishOutcome[]> {
    const outcomes: Array<PublishOutcome | undefined> = requests.map((r) => r.outcome);
    let pending = outcomes.filter((o) => o === undefined).length;
    if (pending === 0) return Promise.resolve(outcomes as PublishOutcome[]);

    return new Promise((resolve) => {
      let finished = false;
      const finish = (fill: PublishOutcome) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        stop?.removeEventListener('abort', onStop);
        resolve(outcomes.map((o) => o ?? fill));
      };
      const onStop = () => finish(RELEASED);
      const timer = setTimeout(() => {
        finish({ kind: 'transient', reason: `no confirm within ${timeoutMs} ms` });
      }, timeoutMs);
      stop?.addEventListener('abort', onStop, { once: true });

      const settle = (index: number, outcome: PublishOutcome) => {
        if (finished || outcomes[index] !== undefined) return;
        outcomes[index] = outcome;
        pending -= 1;
        if (pending === 0) finish(RELEASED);
      };

      requests.forEach((request, index) => {
        if (request.outcome !== undefined || finished) return;
        const { row } = request;
        const started = performance.now();
        try {
          this.#channel.publish(
            row.exchange,
            row.routing_key,
            row.payload,
            publishOptions(row),
            (error) => {
              // A channel closing fails its pending confirms: no answer of the broker to time.
              if (!error || this.#closedReason === undefined) {
                this.#stats.publishSeconds.observe((performance.now() - started) / 1000);
              }
              if (error) {
                const reason =
                  this.#closedReason ?? (error instanceof Error ? error.message : 'nack');
                settle(index, { kind: 'transient', reason: `not confirmed: ${reason}` });
                return;
              }
              const returned = this.#returned.get(row.message_id);
              if (returned !== undefined) {
                this.#returned.delete(row.message_id);
                settle(index, { kind: 'permanent', reason: `unroutable: ${returned}` });
              } else {
                settle(index, ACKED);
              }
            },
          );
        } catch (error) {
          // amqplib throws synchronously once the channel is closed.
          settle(index, {
            kind: 'transient',
            reason: `publish failed: ${(error as Error).message}`,
          });
        }
      });
    });
  }

  async close(): Promise<void> {
    if (!this.isOpen) return;
    this.#closedReason = 'closed by the relay';
    await closeChannel(this.#channel);
  }
}

function publishOptions(row: OutboxRow) {
  const headers: Record<string, unknown> = { ...(row.headers ?? {}) };
  if (row.ordering_key !== null) headers[ORDERING_KEY_HEADER] = row.ordering_key;
  if (row.causation_id !== null) headers[CAUSATION_ID_HEADER] = row.causation_id;
  return {
    persistent: true,
    mandatory: true,
    messageId: row.message_id,
    timestamp: row.created_at_s,
    contentType: row.content_type,
    headers,
    ...(row.correlation_id !== null && { correlationId: row.correlation_id }),
  };
}

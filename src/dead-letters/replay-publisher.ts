import type { ChannelModel } from 'amqplib';
import { describeConfirmResult } from '../amqp/confirmed-publisher.js';
import { ConfirmedPublisherSlot } from '../amqp/confirmed-publisher-slot.js';
import { exchangeExistsOn } from '../amqp/exchange-exists.js';
import { encodableCopy } from '../protocol/encodable-copy.js';
import type { replayProperties } from './queued-dead-letter.js';

/**
 * Publishes replayed copies one at a time and resolves once the broker confirmed each and did
 * not return it. An exchange is checked (on a channel of its own) before the first publish to
 * it, since publishing to a missing one would close the confirm channel. Rejects with the reason
 * a copy was not taken, which the replay reports for that dead letter.
 */
export class ReplayPublisher {
  readonly #model: ChannelModel;
  readonly #timeoutMs: number;
  readonly #exchanges = new Set<string>();
  readonly #publisher = new ConfirmedPublisherSlot();

  constructor(model: ChannelModel, timeoutMs: number) {
    this.#model = model;
    this.#timeoutMs = timeoutMs;
  }

  async publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: ReturnType<typeof replayProperties>,
  ): Promise<void> {
    if (exchange !== '' && !this.#exchanges.has(exchange)) {
      if (!(await exchangeExistsOn(this.#model, exchange))) {
        throw new Error(`exchange ${JSON.stringify(exchange)} does not exist`);
      }
      this.#exchanges.add(exchange);
    }
    const publisher = await this.#publisher.open(this.#model);
    const result = await publisher.publish(
      exchange,
      routingKey,
      content,
      encodableCopy(options, publisher),
      this.#timeoutMs,
    );
    if (result.kind === 'confirmed') return;
    // A channel that timed out or closed is not used again: its late answers must not count.
    // Only this one: the slot may hold a newer channel by now, with publishes of its own.
    if (result.kind === 'timeout' || !publisher.isOpen) await this.#publisher.drop(publisher);
    throw new Error(
      result.kind === 'returned'
        ? 'unroutable: nothing is bound to receive it'
        : describeConfirmResult(result),
    );
  }

  async close(): Promise<void> {
    await this.#publisher.close();
  }
}

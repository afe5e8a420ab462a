import { EventEmitter } from 'node:events';
import type { ConfirmChannel, Message, Options } from 'amqplib';

interface Sent {
  readonly exchange: string;
  readonly routingKey: string;
  readonly options: Options.Publish;
  readonly callback: (error: unknown) => void;
}

/**
 * A stand-in for amqplib's confirm channel that answers only when the test says so, for the
 * frame orders a real broker sends too rarely to test by chance (a return, then one combined
 * ack covering it and the publishes before it). Pure logic only: everything else is tested
 * against the real broker.
 */
export class ScriptedConfirmChannel extends EventEmitter {
  readonly sent: Sent[] = [];
  #acked = 0;

  publish(
    exchange: string,
    routingKey: string,
    _content: Buffer,
    options: Options.Publish,
    callback: (error: unknown) => void,
  ): boolean {
    this.sent.push({ exchange, routingKey, options, callback });
    return true;
  }

  /** The broker returns publish `index` (0-based) as unroutable. */
  returnMessage(index: number): void {
    const sent = this.sent[index]!;
    const message = {
      content: Buffer.alloc(0),
      fields: {
        replyCode: 312,
        replyText: 'NO_ROUTE',
        exchange: sent.exchange,
        routingKey: sent.routingKey,
      },
      properties: { ...sent.options, headers: sent.options.headers ?? {} },
    } as unknown as Message;
    this.emit('return', message);
  }

  /** One `basic.ack` with `multiple`: every publish up to `index` (0-based), in order. */
  ackMultiple(index: number): void {
    while (this.#acked <= index) {
      this.sent[this.#acked]!.callback(null);
      this.#acked += 1;
    }
  }

  async close(): Promise<void> {}

  asConfirmChannel(): ConfirmChannel {
    return this as unknown as ConfirmChannel;
  }
}

import type { Channel } from 'amqplib';
import type { AmqpConnection } from '../amqp/amqp-connection.js';
import { closeChannel } from '../amqp/close-within.js';

/** How long an exchange seen to exist is trusted before it is checked again. */
const TRUST_MS = 60_000;

/**
 * Knows which exchanges exist. Publishing to a missing exchange closes the channel and fails
 * every unconfirmed message on it, so the relay checks an exchange (on a channel of its own,
 * which a 404 may close) before its first publish, and parks the rows of a missing one.
 */
export class ExchangeRegistry {
  readonly #connection: AmqpConnection;
  readonly #seen = new Map<string, number>();
  #channel: Channel | undefined;

  constructor(connection: AmqpConnection) {
    this.#connection = connection;
  }

  /** Returns the exchanges among `names` that do not exist. Throws when the broker cannot say. */
  async missing(names: Iterable<string>, signal?: AbortSignal): Promise<Set<string>> {
    const missing = new Set<string>();
    const now = Date.now();
    for (const name of new Set(names)) {
      const seenAt = this.#seen.get(name);
      if (seenAt !== undefined && now - seenAt < TRUST_MS) continue;
      if (await this.#exists(name, signal)) this.#seen.set(name, now);
      else missing.add(name);
    }
    return missing;
  }

  /** Forgets what it knew, after a channel error that a vanished exchange may have caused. */
  forget(): void {
    this.#seen.clear();
  }

  async #exists(name: string, signal?: AbortSignal): Promise<boolean> {
    if (!this.#channel) {
      const channel = await this.#connection.channel(signal);
      if (!channel) throw new Error('not connected to RabbitMQ');
      channel.once('close', () => {
        if (this.#channel === channel) this.#channel = undefined;
      });
      this.#channel = channel;
    }
    try {
      await this.#channel.checkExchange(name);
      return true;
    } catch (error) {
      this.#channel = undefined;
      if ((error as { code?: number }).code === 404) return false;
      throw error;
    }
  }

  async close(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    await closeChannel(channel);
  }
}

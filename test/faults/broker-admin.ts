import type { Channel, ChannelModel, Message } from 'amqplib';
import * as amqp from 'amqplib';

/** Longest a single look at the broker may take; a hung broker must not hang the checker. */
const CALL_TIMEOUT_MS = 3000;

/**
 * The suite's own view of a broker: queue depths, draining, deleting. It reconnects on demand,
 * since the faults it watches restart and kill the broker under it, and bounds every call. Given
 * the nodes of a cluster, it moves to the next node when a connect fails or a connection is lost.
 */
export class BrokerAdmin {
  readonly #urls: readonly string[];
  #next = 0;
  #model: Promise<ChannelModel> | undefined;

  constructor(url: string | readonly string[]) {
    this.#urls = typeof url === 'string' ? [url] : [...url];
  }

  #connection(): Promise<ChannelModel> {
    if (!this.#model) {
      const url = this.#urls[this.#next % this.#urls.length]!;
      const moveOn = () => {
        this.#next += 1;
      };
      const opening = amqp.connect(url, { timeout: CALL_TIMEOUT_MS }).then((model) => {
        model.on('error', () => {});
        model.on('close', () => {
          if (this.#model === opening) {
            this.#model = undefined;
            moveOn();
          }
        });
        return model;
      });
      opening.catch(() => {
        if (this.#model === opening) {
          this.#model = undefined;
          moveOn();
        }
      });
      this.#model = opening;
    }
    return this.#model;
  }

  /** Runs `fn` on a fresh channel; a call that hangs drops the connection and fails. */
  async withChannel<T>(fn: (channel: Channel) => Promise<T>): Promise<T> {
    const modelPromise = this.#connection();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (this.#model === modelPromise) this.#model = undefined;
        void modelPromise.then((m) => m.close()).catch(() => {});
        reject(new Error(`broker did not answer within ${CALL_TIMEOUT_MS} ms`));
      }, CALL_TIMEOUT_MS);
    });
    const work = (async () => {
      const model = await modelPromise;
      const channel = await model.createChannel();
      channel.on('error', () => {});
      try {
        return await fn(channel);
      } finally {
        await channel.close().catch(() => {});
      }
    })();
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
      work.catch(() => {});
    }
  }

  /** Ready messages in `queue`, or 0 when it does not exist. */
  async depth(queue: string): Promise<number> {
    return this.withChannel(async (channel) => {
      try {
        return (await channel.checkQueue(queue)).messageCount;
      } catch (error) {
        if ((error as { code?: number }).code === 404) return 0;
        throw error;
      }
    });
  }

  /** Takes every message now in `queue`, in queue order. */
  async drain(queue: string): Promise<Message[]> {
    const out: Message[] = [];
    for (;;) {
      const batch = await this.withChannel(async (channel) => {
        const got: Message[] = [];
        for (let i = 0; i < 200; i += 1) {
          const message = await channel.get(queue, { noAck: true });
          if (message === false) break;
          got.push(message);
        }
        return got;
      });
      out.push(...batch);
      if (batch.length < 200) return out;
    }
  }

  async deleteQueues(names: readonly string[]): Promise<void> {
    for (const name of names) {
      await this.withChannel((c) => c.deleteQueue(name)).catch(() => {});
    }
  }

  async deleteExchange(name: string): Promise<void> {
    await this.withChannel((c) => c.deleteExchange(name)).catch(() => {});
  }

  async close(): Promise<void> {
    const model = this.#model;
    this.#model = undefined;
    await model?.then((m) => m.close()).catch(() => {});
  }
}

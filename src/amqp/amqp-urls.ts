import { ConfigurationError } from '../errors/configuration-error.js';
import { redactUrl } from '../util/logger.js';

/** One RabbitMQ URL, or several nodes of a cluster to fail over between. */
export type AmqpUrls = string | readonly string[];

/** Checks `amqpUrl` options: a non-empty URL or a non-empty list of them. */
export function amqpUrlList(value: unknown, option = 'amqpUrl'): readonly string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (
    !Array.isArray(list) ||
    list.length === 0 ||
    !list.every((url) => typeof url === 'string' && url.length > 0)
  ) {
    throw new ConfigurationError(
      option,
      'must be an AMQP URL such as amqp://localhost, or a non-empty list of them',
    );
  }
  for (const url of list as string[]) {
    // amqplib would refuse it at every connect, and the relay and consumers retry connects for
    // ever: a URL no wait can mend is refused here, as the CLI does.
    const parsed = URL.canParse(url) ? new URL(url) : undefined;
    if (parsed?.protocol !== 'amqp:' && parsed?.protocol !== 'amqps:') {
      throw new ConfigurationError(
        option,
        `must start with amqp:// or amqps://, got ${parsed ? redactUrl(url) : 'something that is not a URL'}`,
      );
    }
  }
  return Object.freeze([...list]);
}

/**
 * Which of several broker URLs to try: the same one while it works, the next one after a
 * failed connect or a lost connection, round and round.
 */
export class UrlRotation {
  readonly #urls: readonly string[];
  #index = 0;

  constructor(urls: readonly string[]) {
    this.#urls = urls;
  }

  get current(): string {
    return this.#urls[this.#index]!;
  }

  advance(): void {
    this.#index = (this.#index + 1) % this.#urls.length;
  }
}

import { ConfigurationError } from '../errors/configuration-error.js';
import { heartbeatOption, MAX_HEARTBEAT_SECONDS } from '../options/heartbeat-option.js';
import { redactUrl } from '../util/logger.js';
import { isSchemeUrl, refusedUrlText } from '../util/refused-url.js';

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
    if ((parsed?.protocol !== 'amqp:' && parsed?.protocol !== 'amqps:') || !isSchemeUrl(url)) {
      throw new ConfigurationError(
        option,
        `must start with amqp:// or amqps://, got ${parsed ? refusedUrlText(url) : notAUrl(url)}`,
      );
    }
    const problem = tuningProblem(parsed.searchParams);
    if (problem !== undefined)
      throw new ConfigurationError(option, `${problem}: ${redactUrl(url)}`);
  }
  return Object.freeze([...list]);
}

/** What an unparsable URL gets wrong, where it can be told: a port out of range is common. */
function notAUrl(url: string): string {
  const port = /^[a-z]+:\/\/[^/?#]*:(\d+)(?:[/?#]|$)/i.exec(url)?.[1];
  return port !== undefined && Number(port) > MAX_PORT
    ? `a URL whose port ${port} is above ${MAX_PORT}`
    : 'something that is not a URL';
}

const MAX_PORT = 65_535;
/** AMQP's smallest frame: a `frameMax` below it is refused by the broker at every connect. */
const MIN_FRAME_MAX = 4096;

/** The range of a connection setting in a URL's query, as the broker takes it. */
interface TuningRange {
  readonly min: number;
  readonly max: number;
  /** 0 is "no limit" to amqplib and the broker, below `min` though it is. */
  readonly zeroMeansNone?: boolean | undefined;
  /** Why 0 is refused, said apart from the range. */
  readonly zeroRefused?: string | undefined;
}

const TUNING_RANGES: Readonly<Record<string, TuningRange>> = {
  heartbeat: {
    min: 1,
    max: MAX_HEARTBEAT_SECONDS,
    zeroRefused:
      'turns heartbeats off, so a dead link goes unnoticed: leave it out and set `heartbeatSeconds`',
  },
  channelMax: { min: 0, max: 65_535 },
  frameMax: { min: MIN_FRAME_MAX, max: 0xffff_ffff, zeroMeansNone: true },
};

/**
 * What is wrong with the connection settings amqplib reads from the URL's query, if anything.
 * amqplib takes `parseInt` of them, so `frameMax=abc` reaches the broker as NaN and every
 * connect fails, retried for ever. `heartbeat=0` turns heartbeats off, and a dead link would
 * then hold unconfirmed messages until `publishTimeoutMs`.
 */
function tuningProblem(query: URLSearchParams): string | undefined {
  for (const [name, range] of Object.entries(TUNING_RANGES)) {
    const text = query.get(name);
    if (text === null) continue;
    const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (value === 0 && range.zeroMeansNone) continue;
    if (value === 0 && range.zeroRefused) return `its ${name}=0 ${range.zeroRefused}`;
    if (!(value >= range.min && value <= range.max)) {
      return `its ${name} must be a whole number from ${range.min} to ${range.max}, got ${JSON.stringify(text)}`;
    }
  }
  return undefined;
}

/**
 * The longest heartbeat the connections ask for, in seconds: a URL's `heartbeat` parameter,
 * which amqplib prefers to the option, else `heartbeatSeconds` (checked here, default 10). A
 * `heartbeatSeconds` given beside a URL that asks for another is refused: one of the two would
 * be ignored without a word.
 * @param urls checked by `amqpUrlList`, so a `heartbeat` parameter is a whole number.
 * @param given `heartbeatSeconds` as given (undefined when left out).
 */
export function heartbeatFor(urls: readonly string[], given: unknown): number {
  const option = heartbeatOption(given);
  let longest = 0;
  for (const url of urls) {
    const text = new URL(url).searchParams.get('heartbeat');
    const seconds = text === null ? option : Number(text);
    if (given !== undefined && seconds !== option) {
      throw new ConfigurationError(
        'heartbeatSeconds',
        `is ${option} but \`amqpUrl\` asks for heartbeat=${seconds}, which amqplib would use: give it in one place`,
      );
    }
    longest = Math.max(longest, seconds);
  }
  return longest;
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

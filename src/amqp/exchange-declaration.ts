import type { Channel } from 'amqplib';
import { ConfigurationError } from '../errors/configuration-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { optionNames } from '../options/option-names.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { STORABLE_TEXT_RULE, unstorableText } from '../util/storable-text.js';
import { declareRefusal } from './declare-refusal.js';
import { reservedExchangeProblem } from './predefined-exchanges.js';
import { SHORT_STRING_BYTES } from './short-string.js';

/** An exchange that messages are published to, as outboxkit declares it. */
export interface ExchangeDeclaration {
  readonly name: string;
  /** Default `topic`. */
  readonly type?: 'topic' | 'direct' | 'fanout' | 'headers' | undefined;
  /** Survives a broker restart. Default true. */
  readonly durable?: boolean | undefined;
  /**
   * Where RabbitMQ sends what no binding routes (the `alternate-exchange` argument). Without
   * one, the relay gets unroutable messages back and parks them.
   */
  readonly alternateExchange?: string | undefined;
}

const EXCHANGE_DECLARATION_NAMES = optionNames<ExchangeDeclaration>()([
  'name',
  'type',
  'durable',
  'alternateExchange',
]);

/**
 * Refuses an amq.* exchange name other than RabbitMQ's predefined ones (`PREDEFINED_EXCHANGES`),
 * which RabbitMQ refuses to let clients declare (403); declaring a predefined one with its own
 * type finds it and changes nothing. Otherwise the 403 comes at start, and the retries around
 * it report an unreachable broker.
 */
export function refuseReservedExchange(option: string, name: string): void {
  const problem = reservedExchangeProblem(name);
  if (problem !== undefined) throw new ConfigurationError(option, problem);
}

/** Checks declarations given by a user, naming `option` in the error. */
export function exchangeDeclarations(
  value: unknown,
  option = 'exchanges',
): readonly ExchangeDeclaration[] {
  if (!Array.isArray(value)) throw new ConfigurationError(option, 'must be an array');
  return Object.freeze(value.map((d, i) => exchangeDeclaration(d, `${option}[${i}]`)));
}

/** Checks one declaration, naming `option` (`exchanges[2]`) in the error. */
export function exchangeDeclaration(d: ExchangeDeclaration, option: string): ExchangeDeclaration {
  if (d === null || typeof d !== 'object' || typeof d.name !== 'string' || d.name === '') {
    throw new ConfigurationError(
      `${option}`,
      'must be { name, type?, alternateExchange? } with a non-empty name',
    );
  }
  if (Buffer.byteLength(d.name) > SHORT_STRING_BYTES) {
    throw new ConfigurationError(
      `${option}.name`,
      `must be at most ${SHORT_STRING_BYTES} bytes (an AMQP short string), got ${Buffer.byteLength(d.name)}`,
    );
  }
  // The writer refuses such a name: nothing could be published to the exchange.
  const unstorable = unstorableText(d.name);
  if (unstorable !== undefined) {
    throw new ConfigurationError(`${option}.name`, `${unstorable}; got ${JSON.stringify(d.name)}`);
  }
  refuseReservedExchange(`${option}.name`, d.name);
  rejectUnknownOptions(d, EXCHANGE_DECLARATION_NAMES, {
    owner: 'an exchange declaration',
    prefix: `${option}.`,
  });
  if (d.type !== undefined && !['topic', 'direct', 'fanout', 'headers'].includes(d.type)) {
    throw new ConfigurationError(
      `${option}.type`,
      `must be topic, direct, fanout or headers, got ${String(d.type)}`,
    );
  }
  // Otherwise the broker gets `durable: 'no'` as true, and the mistake reads as "exists with
  // other settings".
  booleanOption(`${option}.durable`, d.durable, true);
  const alternate: unknown = d.alternateExchange;
  if (
    alternate !== undefined &&
    (typeof alternate !== 'string' ||
      alternate === '' ||
      Buffer.byteLength(alternate) > SHORT_STRING_BYTES ||
      unstorableText(alternate) !== undefined)
  ) {
    throw new ConfigurationError(
      `${option}.alternateExchange`,
      `must be the name of an exchange (1 to ${SHORT_STRING_BYTES} bytes, ${STORABLE_TEXT_RULE}), got ${JSON.stringify(alternate)}`,
    );
  }
  return Object.freeze({ ...d });
}

/**
 * Declares exchanges on `channel`: the one implementation behind `declareExchanges`, the
 * relay's `exchanges` option, the Nest module and the consumers. Declaring an exchange that
 * exists with the same settings is a no-op; a refused one closes the channel and becomes what
 * `declareRefusal` says: a `TopologyConflictError` for other settings (406), a `StartupError`
 * for a limit or a user without configure permission.
 *
 * A declaration without `alternateExchange` accepts an exchange that has one: consumers and the
 * Nest module bind to exchanges that `declareExchanges` may have given one, as the README does.
 * RabbitMQ compares the type and durability before the alternate exchange, so a 406 about the
 * alternate exchange alone means the exchange is otherwise as declared. That 406 closes the
 * channel too: `reopen` gives the channel to go on with, and the channel to use afterwards is
 * returned.
 */
export async function assertExchanges(
  channel: Channel,
  declarations: Iterable<ExchangeDeclaration>,
  reopen: () => Promise<Channel>,
): Promise<Channel> {
  let current = channel;
  for (const d of declarations) {
    try {
      await current.assertExchange(d.name, d.type ?? 'topic', {
        durable: d.durable ?? true,
        ...(d.alternateExchange !== undefined && { alternateExchange: d.alternateExchange }),
      });
    } catch (error) {
      if (d.alternateExchange === undefined && isOtherAlternateExchange(error)) {
        current = await reopen();
        continue;
      }
      throw declareRefusal('exchange', d.name, error) ?? error;
    }
  }
  return current;
}

/** Whether a 406 on an exchange declaration is about its alternate exchange only. */
function isOtherAlternateExchange(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return message.includes("inequivalent arg 'alternate-exchange'");
}

import type { Pool } from 'pg';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { amqpUrlList } from '../amqp/amqp-urls.js';
import {
  type ExchangeDeclaration,
  exchangeDeclaration,
  refuseReservedExchange,
} from '../amqp/exchange-declaration.js';
import { EXCHANGE_TYPES, type ExchangeType } from '../consumer/consumer-definition.js';
import { CONSUMER_HOST_OPTION_NAMES, type ConsumerHostOptions } from '../consumer/consumer-host.js';
import type { ConsumerTransactions } from '../consumer/consumer-transactions.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { pgPool, postgresUrl } from '../options/database-handle.js';
import { RENAMED_OPTIONS, rejectRenamedOptions } from '../options/renamed-options.js';
import type { TlsOptions } from '../options/tls-options.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import type { PrometheusRegistry } from '../prometheus/register-prometheus-metrics.js';
import { RELAY_OPTION_NAMES, type RelayOptions } from '../relay/relay-options.js';
import { databaseTlsConfig } from '../sql/database-tls.js';
import type { KyselyInstance } from '../sql/kysely-shape.js';
import { outboxTables } from '../sql/outbox-tables.js';
import type { OutboxLogger } from '../util/logger.js';
import {
  type AmbientTransaction,
  MODULE_OPTION_NAMES,
  type OutboxConsumerSettings,
  type OutboxModuleExchange,
  type OutboxModuleOptions,
  type OutboxRelaySettings,
} from './outbox-module-options.js';

/** The module's options checked, with defaults filled in and the logger adapted. */
export interface ResolvedModuleOptions {
  readonly db: KyselyInstance | undefined;
  readonly databaseUrl: string | undefined;
  /** Checked: valid, and only with `databaseUrl`. */
  readonly databaseTls: TlsOptions | undefined;
  readonly pool: Pool | undefined;
  readonly poolSize: number;
  readonly amqpUrl: readonly string[];
  /** Checked: valid, and every URL `amqps://`. */
  readonly amqpTls: TlsOptions | undefined;
  readonly schema: string;
  readonly prefix: string;
  /** Declared exchanges by prefixed name, their alternate exchanges prefixed too. */
  readonly exchanges: ReadonlyMap<string, ExchangeDeclaration>;
  readonly relay: OutboxRelaySettings | false;
  readonly consumers: OutboxConsumerSettings | false;
  readonly transactions: ConsumerTransactions<unknown> | undefined;
  readonly ambientTransaction: AmbientTransaction | undefined;
  readonly migrate: boolean;
  readonly enhancers: boolean;
  readonly maxMessageBytes: number | undefined;
  readonly notifyIntervalMs: number | false | undefined;
  readonly preparedStatements: boolean;
  readonly logger: OutboxLogger;
  readonly prometheusRegistry: PrometheusRegistry | undefined;
}

/**
 * Checks the module's options before anything connects, so a mistake fails the application's
 * start with a message naming the option.
 */
export function resolveModuleOptions(
  options: OutboxModuleOptions,
  logger: OutboxLogger,
): ResolvedModuleOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigurationError('OutboxModule', 'options must be an object');
  }
  rejectRenamedOptions(options, RENAMED_OPTIONS.module);
  rejectUnknownModuleOptions(options);
  const { db, databaseUrl, pool } = options;
  if (db !== undefined && (db === null || typeof db.transaction !== 'function')) {
    throw new ConfigurationError('db', 'must be a Kysely instance');
  }
  // The relay's rules: a handle that cannot connect fails here, not in the background.
  if (databaseUrl !== undefined) postgresUrl('databaseUrl', databaseUrl);
  if (pool !== undefined) pgPool('pool', pool);
  if (!db && !databaseUrl && !pool) {
    throw new ConfigurationError(
      'db',
      'give the Kysely instance (`db`), or `databaseUrl` or `pool` to connect with',
    );
  }
  const { transactions, ambientTransaction } = options;
  if (
    transactions !== undefined &&
    (transactions === null || typeof transactions.run !== 'function')
  ) {
    throw new ConfigurationError(
      'transactions',
      'must be the consumer transactions of an ORM adapter, such as typeormConsumerTransactions(dataSource)',
    );
  }
  if (ambientTransaction !== undefined && typeof ambientTransaction !== 'function') {
    throw new ConfigurationError(
      'ambientTransaction',
      'must be a function that returns the transaction to join',
    );
  }
  const amqpUrl = amqpUrlList(options.amqpUrl);
  amqpTlsFor(amqpUrl, options.amqpTls);
  if (options.databaseTls !== undefined && !databaseUrl) {
    throw new ConfigurationError(
      'databaseTls',
      'applies to the pools made from `databaseUrl`: set `ssl` on your own `pool` or `db` instead',
    );
  }
  databaseTlsConfig(databaseUrl, options.databaseTls);
  const relay = settings(options.relay, 'relay');
  const consumers = settings(options.consumers, 'consumers');
  if (relay && !databaseUrl && !pool) {
    throw new ConfigurationError(
      'relay',
      'the relay needs connections of its own: give `databaseUrl` (or a `pool`), or set `relay: false` and run `outboxkit relay` elsewhere',
    );
  }
  if (options.migrate && !databaseUrl && !pool) {
    throw new ConfigurationError('migrate', 'needs `databaseUrl` or `pool`');
  }
  const poolSize = options.poolSize ?? 10;
  if (!Number.isSafeInteger(poolSize) || poolSize < 2) {
    throw new ConfigurationError('poolSize', 'must be an integer of at least 2');
  }
  const prefix = options.prefix ?? '';
  if (typeof prefix !== 'string') throw new ConfigurationError('prefix', 'must be a string');
  // Otherwise the first handler's exchange or queue would be blamed for the module's prefix.
  if (prefix.startsWith('amq.')) {
    throw new ConfigurationError(
      'prefix',
      `must not start with "amq.", got ${JSON.stringify(prefix)}: RabbitMQ keeps amq.* exchange and queue names for itself, and the prefix starts every name of the module's topology`,
    );
  }
  const registry = options.prometheusRegistry;
  if (
    registry !== undefined &&
    (registry === null ||
      typeof registry.registerMetric !== 'function' ||
      typeof registry.removeSingleMetric !== 'function')
  ) {
    throw new ConfigurationError('prometheusRegistry', 'must be a prom-client Registry');
  }
  return Object.freeze({
    db,
    databaseUrl,
    databaseTls: options.databaseTls,
    pool,
    poolSize,
    amqpUrl,
    amqpTls: options.amqpTls,
    schema: outboxTables(options.schema).schemaName,
    prefix,
    exchanges: exchangeMap(options.exchanges ?? [], prefix),
    relay,
    consumers,
    transactions,
    ambientTransaction,
    migrate: booleanOption('migrate', options.migrate, false),
    enhancers: booleanOption('enhancers', options.enhancers, false),
    maxMessageBytes: options.maxMessageBytes,
    notifyIntervalMs: options.notifyIntervalMs,
    preparedStatements: booleanOption('preparedStatements', options.preparedStatements, false),
    logger,
    prometheusRegistry: options.prometheusRegistry,
  });
}

/** Options of the relay and the consumer host that the module sets from its own. */
const SET_BY_MODULE = {
  relay: ['pool', 'databaseUrl', 'databaseTls', 'amqpUrl', 'amqpTls', 'schema', 'logger'],
  consumers: ['db', 'amqpUrl', 'amqpTls', 'schema', 'logger', 'consumers', 'transactions'],
} as const satisfies {
  relay: readonly Exclude<keyof RelayOptions, keyof OutboxRelaySettings>[];
  consumers: readonly Exclude<keyof ConsumerHostOptions, keyof OutboxConsumerSettings>[];
};

/**
 * `relay` or `consumers`: `{}` for `true`, or the settings after refusing a name the module
 * sets itself (the module's value would silently win) and any unknown name, before anything
 * connects.
 */
function settings<T extends object>(
  value: boolean | T | undefined,
  option: 'relay' | 'consumers',
): T | false {
  if (value === undefined || value === true) return {} as T;
  if (value === false) return false;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigurationError(option, 'must be true, false or an object of settings');
  }
  const own: readonly string[] = SET_BY_MODULE[option];
  for (const name of own) {
    if ((value as Record<string, unknown>)[name] !== undefined) {
      throw new ConfigurationError(
        `${option}.${name}`,
        "is set by OutboxModule itself, from its own options (or its handlers): set the module's instead",
      );
    }
  }
  rejectUnknownOptions(value, nestedNames(option), {
    owner: `OutboxModule's ${option}`,
    prefix: `${option}.`,
  });
  return value;
}

/** The settings `relay` or `consumers` takes: the core's, less those the module sets. */
function nestedNames(option: 'relay' | 'consumers'): readonly string[] {
  const own: readonly string[] = SET_BY_MODULE[option];
  const names: readonly string[] =
    option === 'relay' ? RELAY_OPTION_NAMES : CONSUMER_HOST_OPTION_NAMES;
  return names.filter((n) => !own.includes(n));
}

function exchangeMap(
  declarations: readonly OutboxModuleExchange[],
  prefix: string,
): Map<string, ExchangeDeclaration> {
  if (!Array.isArray(declarations)) {
    throw new ConfigurationError('exchanges', 'must be an array');
  }
  const map = new Map<string, ExchangeDeclaration>();
  for (const [i, d] of declarations.entries()) {
    if (d === null || (typeof d !== 'string' && typeof d !== 'object')) {
      throw new ConfigurationError(
        `exchanges[${i}]`,
        `must be an exchange name, a declaration { name, type?, durable?, alternateExchange? } or a message definition; got ${String(d)}`,
      );
    }
    // A declaration is checked as the relay checks its own (fields, amq.* names).
    const declared: ExchangeDeclaration =
      typeof d === 'string'
        ? { name: d }
        : 'routingKey' in d
          ? { name: d.exchange, ...(d.exchangeType && { type: d.exchangeType }) }
          : exchangeDeclaration(d, `exchanges[${i}]`);
    const { name, alternateExchange } = declared;
    const type = declared.type ?? 'topic';
    if (typeof name !== 'string' || name.length === 0 || !isExchangeType(type)) {
      throw new ConfigurationError(
        'exchanges',
        `each entry must name an exchange of type ${EXCHANGE_TYPES.join(', ')}; got ${JSON.stringify(d)}`,
      );
    }
    refuseReservedExchange(`exchanges[${i}]`, `${prefix}${name}`);
    addExchange(
      map,
      {
        ...declared,
        name: `${prefix}${name}`,
        type,
        ...(alternateExchange !== undefined && {
          alternateExchange: `${prefix}${alternateExchange}`,
        }),
      },
      'exchanges',
    );
  }
  return map;
}

function isExchangeType(type: string): type is ExchangeType {
  return (EXCHANGE_TYPES as readonly string[]).includes(type);
}

/**
 * Records an exchange to declare. The same exchange named twice must agree on its type, and on
 * its durability and alternate exchange where both name them; what only one names is kept.
 */
export function addExchange(
  map: Map<string, ExchangeDeclaration>,
  declaration: ExchangeDeclaration,
  option: string,
): void {
  const { name } = declaration;
  const known = map.get(name);
  if (known === undefined) {
    map.set(name, declaration);
    return;
  }
  for (const field of ['type', 'durable', 'alternateExchange'] as const) {
    const before = known[field] ?? (field === 'type' ? 'topic' : undefined);
    const now = declaration[field] ?? (field === 'type' ? 'topic' : undefined);
    if (before !== undefined && now !== undefined && before !== now) {
      throw new ConfigurationError(
        option,
        `exchange "${name}" is declared with ${field} ${String(before)} elsewhere and ${String(now)} here`,
      );
    }
  }
  map.set(name, {
    ...known,
    ...(declaration.durable !== undefined && { durable: declaration.durable }),
    ...(declaration.alternateExchange !== undefined && {
      alternateExchange: declaration.alternateExchange,
    }),
  });
}

/**
 * Refuses a name that is no module option. `forRoot` is checked by the compiler, but what a
 * `forRootAsync` factory returns is not (no excess-property check on a returned object), and a
 * misspelt `prefix` would run every handler without one. A name without a value is let through:
 * it loses no setting.
 */
function rejectUnknownModuleOptions(options: object): void {
  for (const [extra, why] of [
    ['isGlobal', "Nest fixes the module's scope before any factory runs"],
    [
      'dashboard',
      "the dashboard's routes are mounted when the module is imported, before any factory runs",
    ],
  ] as const) {
    if (
      Object.hasOwn(options, extra) &&
      (options as Record<string, unknown>)[extra] !== undefined
    ) {
      throw new ConfigurationError(
        extra,
        `goes next to \`useFactory\` in forRootAsync, not into the options it returns: ${why}`,
      );
    }
  }
  const asyncWay = ['useFactory', 'useClass', 'useExisting'].find((way) =>
    Object.hasOwn(options, way),
  );
  if (asyncWay) {
    throw new ConfigurationError(
      asyncWay,
      `belongs to OutboxModule.forRootAsync({ imports, inject, ${asyncWay} }); forRoot takes the options themselves`,
    );
  }
  rejectUnknownOptions(options, MODULE_OPTION_NAMES, {
    owner: 'OutboxModule',
    nested: {
      relay: nestedNames('relay'),
      consumers: nestedNames('consumers'),
    },
  });
}

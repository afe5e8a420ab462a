import { ConfigurationError } from '../errors/configuration-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { messages } from './error-messages.js';
import type { MessageDefinition, PayloadOf } from './message-definition.js';
import {
  HANDLER_OPTION_NAMES,
  OutboxHandlerDiscoverable,
  type OutboxHandlerMethod,
  type OutboxHandlerOptions,
} from './outbox-handler.metadata.js';

/** The first parameter of a handler method: the payload type it accepts. */
type AcceptedPayload<T> = T extends (payload: infer A, ...rest: never[]) => unknown ? A : never;

/**
 * Fails compilation, naming the payload type, when the method cannot take every payload the
 * handled messages may carry. (A method's parameters are compared both ways by TypeScript;
 * this check is one way: the message's payload must fit the parameter.)
 */
type PayloadCheck<T, P> = [P] extends [AcceptedPayload<T>]
  ? unknown
  : { readonly 'the handler does not accept the payload type of the message': P };

/**
 * Makes a provider method a message handler. The method receives the typed payload and a
 * context with the transaction (`context.trx`) and the message's metadata; its effects must go
 * through `context.trx`, which also records the message as processed. The method is found at
 * bootstrap through Nest's `DiscoveryService`, on any singleton provider or controller.
 *
 * Throwing rolls back and retries after a delay; throwing a `PermanentError` dead-letters the
 * message at once. A handler of several definitions (an array, one exchange) gets the union of
 * their payloads; `context.routingKey` tells which arrived.
 *
 * @example
 * ```ts
 * @Injectable()
 * export class InventoryHandler {
 *   @OutboxHandler(OrderPlaced, { name: 'inventory.order-placed', businessKey: (o) => o.orderId })
 *   async reserve(order: OrderPlaced, { trx }: ConsumeContext) {
 *     await trx.insertInto('reservations').values({ orderId: order.orderId }).execute();
 *   }
 * }
 * ```
 */
export function OutboxHandler<const M extends MessageDefinition | readonly MessageDefinition[]>(
  message: M,
  options: OutboxHandlerOptions<PayloadOf<M>>,
): <T extends OutboxHandlerMethod>(
  target: object,
  key: string | symbol,
  descriptor: TypedPropertyDescriptor<T> & PayloadCheck<T, PayloadOf<M>>,
) => void {
  const list: readonly MessageDefinition[] = Array.isArray(message)
    ? (message as readonly MessageDefinition[])
    : [message as MessageDefinition];
  return (target, key, descriptor) => {
    const where = `@OutboxHandler on ${describeMethod(target, key)}`;
    const fail = (detail: string): never => {
      throw new ConfigurationError(where, detail);
    };
    if (typeof descriptor?.value !== 'function') fail(messages.notAMethod());
    if (list.length === 0 || !list.every((m) => m && typeof m.exchange === 'string')) {
      fail(messages.noMessages());
    }
    const exchanges = [...new Set(list.map((m) => m.exchange))];
    if (exchanges.length > 1) fail(messages.mixedExchanges(exchanges));
    if (new Set(list.map((m) => m.exchangeType ?? 'topic')).size > 1) {
      fail(messages.mixedExchangeTypes(exchanges[0]!));
    }
    if (typeof options?.name !== 'string' || options.name.length === 0) fail(messages.noName());
    // The handler's consumer takes only the names it knows: a misspelt one would be dropped.
    rejectUnknownOptions(options, HANDLER_OPTION_NAMES, { owner: where });
    if (
      options.queue !== undefined &&
      (typeof options.queue !== 'string' || options.queue === '')
    ) {
      fail(messages.badQueue());
    }
    // At decoration, like the rest: `ordered: 'yes'` read as true would pass the check below.
    booleanOption(`${where}: ordered`, options.ordered, false);
    if (options.partitions !== undefined) {
      const { partitions } = options;
      if (typeof partitions !== 'number' || !Number.isSafeInteger(partitions) || partitions <= 0) {
        fail(messages.badPartitions(partitions));
      }
      if (options.ordered !== true) fail(messages.partitionsWithoutOrder());
    }
    if (Reflect.hasOwnMetadata(OutboxHandlerDiscoverable.KEY, descriptor.value as object)) {
      fail(messages.twice());
    }
    OutboxHandlerDiscoverable({
      messages: list,
      options: options as OutboxHandlerOptions,
    })(target, key, descriptor);
  };
}

function describeMethod(target: object, key: string | symbol): string {
  const owner = typeof target === 'function' ? target.name : target.constructor?.name;
  return `${owner ?? '<anonymous>'}.${String(key)}`;
}

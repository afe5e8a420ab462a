import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * The broker already has a queue or exchange of this name with other settings (type,
 * arguments), so it refused to declare the consumer's topology.
 */
export class TopologyConflictError extends OutboxkitError {
  readonly kind: 'queue' | 'exchange';
  /** Name of the queue or exchange. */
  readonly entity: string;

  constructor(kind: 'queue' | 'exchange', entity: string, cause: unknown) {
    const reply = cause instanceof Error ? cause.message : String(cause);
    // Exchanges are declared by declareExchanges, the relay and the Nest module too.
    const declaredBy =
      kind === 'queue'
        ? 'the consumer definition'
        : "the declaration (a consumer's exchange type, or the exchanges given to " +
          'declareExchanges, the relay or the Nest module)';
    const which =
      kind === 'queue' ? (QUEUE_ARGUMENT_OPTIONS.find(([arg]) => arg.test(reply))?.[1] ?? '') : '';
    // The one conflict with a way out that keeps the exchange: a policy applies to what exists.
    const alternate =
      kind === 'exchange' && /alternate-exchange/.test(reply)
        ? ' An exchange that exists without an alternate exchange can get one by policy instead, ' +
          `leaving \`alternateExchange\` out of the declaration: rabbitmqctl set_policy ${policyName(entity)} ` +
          `'^${escapeRegExp(entity)}$' '{"alternate-exchange":"<name>"}' --apply-to exchanges.`
        : '';
    super(
      'topology-conflict',
      `RabbitMQ refused to declare ${kind} "${entity}": it exists with other settings (${reply}). ` +
        `Make ${declaredBy}${which} match the existing ${kind}, or delete the ${kind} (after ` +
        `moving its messages) so outboxkit can declare it again.${alternate}`,
      { cause },
    );
    this.kind = kind;
    this.entity = entity;
  }
}

/** The queue arguments a definition sets through an option of its own, and how to say which. */
const QUEUE_ARGUMENT_OPTIONS: ReadonlyArray<readonly [RegExp, string]> = [
  [/x-queue-type/, ' (its `queueType`)'],
  [/x-single-active-consumer/, ' (its `ordered`, which makes the queue single-active-consumer)'],
];

function policyName(exchange: string): string {
  return `${exchange.replace(/[^\w.-]/g, '_')}-ae`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

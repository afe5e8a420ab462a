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
    // The one queue argument a definition sets by name.
    const which = kind === 'queue' && /x-queue-type/.test(reply) ? ' (its `queueType`)' : '';
    super(
      'topology-conflict',
      `RabbitMQ refused to declare ${kind} "${entity}": it exists with other settings (${reply}). ` +
        `Make ${declaredBy}${which} match the existing ${kind}, or delete the ${kind} (after ` +
        'moving its messages) so outboxkit can declare it again.',
      { cause },
    );
    this.kind = kind;
    this.entity = entity;
  }
}

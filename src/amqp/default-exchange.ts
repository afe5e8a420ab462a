/**
 * The names of RabbitMQ's default exchange, which routes a message to the queue its routing key
 * names: `''` over AMQP 0-9-1 (where @nestjs/microservices' ClientProxy sends), and
 * `amq.default`, as the management UI and HTTP API show it (over AMQP 0-9-1 RabbitMQ knows no
 * exchange of that name: a publish to it closes the channel, 404).
 */
export function isDefaultExchange(name: string): boolean {
  return name === '' || name === 'amq.default';
}

/**
 * Why no message may go to the default exchange, and what to do instead. The relay checks that
 * an exchange exists before it publishes there (a publish to a missing one closes the channel
 * and fails the whole batch), and RabbitMQ refuses that check on the default exchange (403).
 */
export function defaultExchangeProblem(name: string): string {
  const which =
    name === ''
      ? `"" is RabbitMQ's default exchange`
      : `"${name}" is the management UI's name of RabbitMQ's default exchange ("")`;
  return `${which}, which outboxkit does not publish to: the relay checks that an exchange exists before it publishes to it, and RabbitMQ refuses that check on the default exchange (403). Declare an exchange and bind the queue to it with the routing key (or bind the queue to amq.direct), and name that exchange`;
}

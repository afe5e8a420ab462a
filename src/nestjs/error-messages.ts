/**
 * What the Nest adapter tells a developer when a handler or the module is set up wrongly, in
 * one place so the wording stays consistent. Each message says what to change.
 */
export const messages = {
  noMessages: () => 'takes a message definition, or a non-empty array of them (defineMessage)',
  mixedExchanges: (exchanges: readonly string[]) =>
    `handles messages of several exchanges (${exchanges.join(', ')}); a queue is bound to one ` +
    'exchange: give each exchange a handler of its own',
  mixedExchangeTypes: (exchange: string) =>
    `handles messages that declare exchange "${exchange}" with different types; make the ` +
    'definitions agree',
  noName: () =>
    "needs `name`: the handler's identity in the processed-messages table, and its queue " +
    'unless `queue` is given (before 0.2, `queue` was the required option)',
  badQueue: () => '`queue` must be a non-empty queue name when given; leave it out to use `name`',
  badPartitions: (value: unknown) =>
    `\`partitions\` must be a positive integer, got ${String(value)}; leave it out for one queue`,
  partitionsWithoutOrder: () =>
    '`partitions` keep the order of each ordering key across queues and need `ordered: true`; ' +
    'an unordered handler scales with `concurrency` and more instances on its one queue',
  notAMethod: () => 'decorates a method; it was put on something else',
  twice: () =>
    'is applied twice to one method; one method is one handler: write a method per queue',
  scoped: (where: string, scope = 'request-scoped or transient') =>
    `${where} is ${scope}; handlers must live on singleton providers, since messages arrive ` +
    'outside any request (the handler gets its transaction in the context)',
  duplicateName: (name: string, first: string, second: string) =>
    `handlers ${first} and ${second} share the consumer name "${name}", which keys their queue ` +
    'and their processed messages; give one of them another `name`',
  registeredTwice: (name: string, where: string) =>
    `handler ${where} (consumer "${name}") is registered twice: its class is in the providers ` +
    'of two modules, and each made an instance of it; list it in the providers of one module ' +
    'and export it from there to the others',
  lazyModule: () =>
    'is in a module loaded after bootstrap (LazyModuleLoader), where Nest runs no lifecycle ' +
    'hook: its relay and consumers would never start. Import OutboxModule.forRoot in a module ' +
    'loaded at start (isGlobal: true), and only handlers and OutboxService users in lazy ones',
  lazyHandler: (where: string) =>
    `@OutboxHandler on ${where} is in a module loaded after bootstrap (LazyModuleLoader): ` +
    'handlers are found at bootstrap only, so it receives no messages; import its module in ' +
    'a module loaded at start',
} as const;

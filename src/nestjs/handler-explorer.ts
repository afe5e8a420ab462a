import { Inject, Injectable, Scope } from '@nestjs/common';
import { DiscoveryService, ExternalContextCreator, MetadataScanner } from '@nestjs/core';
import type { ConsumeContext, ConsumerDefinition } from '../consumer/consumer-definition.js';
import { checkPayload, type PayloadValidator } from '../consumer/payload-validator.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { messages } from './error-messages.js';
import { HandlerMetadataAccessor } from './handler-metadata-accessor.js';
import type { MessageDefinition } from './message-definition.js';
import { OUTBOX_CONTEXT_TYPE } from './outbox-execution-context.js';
import type { OutboxHandlerMetadata } from './outbox-handler.metadata.js';
import type { RuntimeHandlers } from './outbox-runtime.js';

type Wrapper = ReturnType<DiscoveryService['getProviders']>[number];

/** How the explorer turns handlers into consumer definitions. */
export interface ExploreOptions {
  /** Put in front of exchange, queue and consumer names. */
  readonly prefix: string;
  /** Run Nest guards and interceptors around each handler call. */
  readonly enhancers: boolean;
}

/**
 * Walks the application's providers and controllers for `@OutboxHandler` methods and turns
 * each into a core `ConsumerDefinition` bound to its instance.
 */
@Injectable()
export class HandlerExplorer {
  readonly #discovery: DiscoveryService;
  readonly #scanner: MetadataScanner;
  readonly #accessor: HandlerMetadataAccessor;
  readonly #contextCreator: ExternalContextCreator;

  constructor(
    @Inject(DiscoveryService) discovery: DiscoveryService,
    @Inject(MetadataScanner) scanner: MetadataScanner,
    @Inject(HandlerMetadataAccessor) accessor: HandlerMetadataAccessor,
    @Inject(ExternalContextCreator) contextCreator: ExternalContextCreator,
  ) {
    this.#discovery = discovery;
    this.#scanner = scanner;
    this.#accessor = accessor;
    this.#contextCreator = contextCreator;
  }

  /**
   * Every handler of the application as a consumer definition. Throws a `ConfigurationError`
   * for a handler on a request-scoped or transient provider, or for two handlers sharing a
   * consumer name.
   */
  explore(options: ExploreOptions): RuntimeHandlers {
    const definitions: ConsumerDefinition[] = [];
    const owners = new Map<string, { where: string; type: unknown }>();
    const seen = new Set<object>();
    const wrappers = [...this.#discovery.getProviders(), ...this.#discovery.getControllers()];
    for (const wrapper of wrappers) {
      const found = this.#handlersOf(wrapper, seen);
      for (const { instance, methodName, metadata } of found) {
        const where = `${instance.constructor.name}.${methodName}`;
        const definition = this.#definition(instance, methodName, metadata, options);
        const owner = owners.get(definition.name);
        if (owner !== undefined) {
          // Two instances of one class: it is in the providers of two modules.
          const twice = owner.type === instance.constructor && owner.where === where;
          throw new ConfigurationError(
            '@OutboxHandler',
            twice
              ? messages.registeredTwice(definition.name, where)
              : messages.duplicateName(definition.name, owner.where, where),
          );
        }
        owners.set(definition.name, { where, type: instance.constructor });
        definitions.push(definition);
      }
    }
    const sources = new Map(
      [...owners].map(([name, { where }]) => [name, `@OutboxHandler on ${where}`]),
    );
    return { consumers: definitions, sources };
  }

  /**
   * Where each handler of the application is (`Class.method`), as now. A module loaded later
   * (Nest's `LazyModuleLoader`) adds its providers to what this reads, and `explore` never sees
   * them.
   */
  handlerLocations(): Set<string> {
    const seen = new Set<object>();
    const wrappers = [...this.#discovery.getProviders(), ...this.#discovery.getControllers()];
    const found = new Set<string>();
    for (const wrapper of wrappers) {
      const scoped = this.#scopedHandler(wrapper);
      if (scoped !== undefined) {
        found.add(scoped);
        continue;
      }
      for (const { instance, methodName } of this.#handlersOf(wrapper, seen)) {
        found.add(`${instance.constructor.name}.${methodName}`);
      }
    }
    return found;
  }

  /** `Class.method` of a handler on a request-scoped or transient provider, which has no instance. */
  #scopedHandler(wrapper: Wrapper): string | undefined {
    if (wrapper.isAlias || !isScoped(wrapper)) return undefined;
    const prototype = (wrapper.metatype as { prototype?: object } | null)?.prototype;
    const names = prototype ? this.#scanner.getAllMethodNames(prototype) : [];
    const handler = names.find((name) =>
      this.#accessor.handlerMetadata((prototype as Record<string, unknown>)[name]),
    );
    return handler === undefined
      ? undefined
      : `${(wrapper.metatype as { name?: string }).name}.${handler}`;
  }

  #handlersOf(
    wrapper: Wrapper,
    seen: Set<object>,
  ): { instance: object; methodName: string; metadata: OutboxHandlerMetadata }[] {
    if (wrapper.isAlias) return [];
    if (isScoped(wrapper)) {
      // No instance exists outside a request; still refuse handlers there rather than drop them.
      const where = this.#scopedHandler(wrapper);
      if (where !== undefined) {
        throw new ConfigurationError('@OutboxHandler', messages.scoped(where, scopeOf(wrapper)));
      }
      return [];
    }
    const instance: unknown = wrapper.instance;
    if (instance === null || typeof instance !== 'object' || seen.has(instance)) return [];
    // One instance may be reachable through several providers (useValue, useExisting).
    seen.add(instance);
    const found = [];
    for (const methodName of this.#scanner.getAllMethodNames(Object.getPrototypeOf(instance))) {
      const metadata = this.#accessor.handlerMetadata(
        (instance as Record<string, unknown>)[methodName],
      );
      if (metadata) found.push({ instance, methodName, metadata });
    }
    return found;
  }

  #definition(
    instance: object,
    methodName: string,
    metadata: OutboxHandlerMetadata,
    options: ExploreOptions,
  ): ConsumerDefinition {
    const { options: o, messages: list } = metadata;
    const first = list[0]!;
    const call = this.#caller(instance, methodName, options.enhancers);
    const validate = o.validate ?? validatorOf(list);
    const businessKey = o.businessKey;
    return {
      name: `${options.prefix}${o.name}`,
      exchange: `${options.prefix}${first.exchange}`,
      exchangeType: first.exchangeType ?? 'topic',
      // A fanout exchange takes no binding keys: the messages' keys would be refused.
      routingKeys:
        o.routingKeys ??
        (first.exchangeType === 'fanout' ? undefined : [...new Set(list.map((m) => m.routingKey))]),
      queue: `${options.prefix}${o.queue ?? o.name}`,
      queueType: o.queueType,
      ordered: o.ordered,
      partitions: o.partitions,
      retry: o.retry,
      prefetch: o.prefetch,
      concurrency: o.concurrency,
      batchSize: o.batchSize,
      timeoutMs: o.timeoutMs,
      isolationLevel: o.isolationLevel,
      // A definition that sends bytes or text says so: its handlers take what it sends.
      contentTypes:
        o.contentTypes ??
        (list.some((m) => m.contentType !== undefined)
          ? [...new Set(list.map((m) => m.contentType ?? 'application/json'))]
          : undefined),
      requiredHeaders: o.requiredHeaders,
      validate,
      ...(businessKey && { businessKey: (payload, info) => businessKey.call(o, payload, info) }),
      async handler(payload, context) {
        await call(payload, context);
      },
    };
  }

  /** Calls the method on its instance, through Nest's guards and interceptors when asked. */
  #caller(
    instance: object,
    methodName: string,
    enhancers: boolean,
  ): (payload: unknown, context: ConsumeContext) => Promise<unknown> {
    const method = (instance as Record<string, (...args: unknown[]) => unknown>)[methodName]!;
    if (!enhancers) return async (payload, context) => method.call(instance, payload, context);
    // No params factory: handlers take (payload, context) as they are, so pipes have nothing to
    // bind to. No filters: an error must reach the consumer, which retries or dead-letters it.
    return this.#contextCreator.create(
      instance,
      method,
      methodName,
      undefined,
      undefined,
      undefined,
      undefined,
      { guards: true, interceptors: true, filters: false },
      OUTBOX_CONTEXT_TYPE,
    );
  }
}

/**
 * The validator of the handled definitions: the one whose routing key the message was first
 * published with. A message that matches no definition, when some define a validator, cannot
 * be checked and is dead-lettered rather than handed over unchecked.
 */
function validatorOf(list: readonly MessageDefinition[]): PayloadValidator<unknown> | undefined {
  if (!list.some((m) => m.validate)) return undefined;
  if (list.length === 1) return list[0]!.validate;
  return async (payload, info) => {
    const match = list.find((m) => m.routingKey === info.routingKey);
    if (!match) {
      throw new OutboxkitError(
        'unknown-routing-key',
        `no handled message definition has routing key "${info.routingKey}", so the payload cannot be validated`,
      );
    }
    if (!match.validate) return payload;
    const checked = await checkPayload(match.validate, payload, info);
    if (!checked.ok) throw checked.problem;
    return checked.payload;
  };
}

/**
 * Whether a provider has no one instance for the application: request-scoped, or depending on
 * such a provider, or transient. A transient provider with static dependencies counts as static
 * for Nest, and its `instance` is then a placeholder no constructor ran on.
 */
function isScoped(wrapper: Wrapper): boolean {
  return wrapper.isTransient || !wrapper.isDependencyTreeStatic();
}

/** Why a provider is scoped, for the refusal: its own scope, or a dependency's. */
function scopeOf(wrapper: Wrapper): string {
  if (wrapper.isTransient) return 'transient';
  if (wrapper.scope === Scope.REQUEST) return 'request-scoped';
  const path = requestScopedDependency(wrapper, new Set([wrapper]));
  return `request-scoped through a dependency (${path ? `it injects ${path}` : 'a provider it injects, or one of theirs, is request-scoped'}; Nest makes whatever injects a request-scoped provider request-scoped too)`;
}

/**
 * `A, which is request-scoped`, or `A, which injects B, which is...`: the way to the
 * request-scoped provider that `wrapper` depends on.
 */
function requestScopedDependency(wrapper: Wrapper, seen: Set<Wrapper>): string | undefined {
  const dependencies = [
    ...(wrapper.getCtorMetadata() ?? []),
    ...(wrapper.getPropertiesMetadata() ?? []).map((p) => p.wrapper),
  ];
  for (const dependency of dependencies) {
    if (dependency === undefined || seen.has(dependency)) continue;
    seen.add(dependency);
    const name = String(dependency.name);
    if (dependency.scope === Scope.REQUEST) return `${name}, which is request-scoped`;
    if (!dependency.isDependencyTreeStatic()) {
      const deeper = requestScopedDependency(dependency, seen);
      if (deeper !== undefined) return `${name}, which injects ${deeper}`;
    }
  }
  return undefined;
}

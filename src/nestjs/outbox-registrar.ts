import {
  type BeforeApplicationShutdown,
  Inject,
  Injectable,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleDestroy,
} from '@nestjs/common';
import { DiscoveryService, LazyModuleLoader } from '@nestjs/core';
import { ConfigurationError } from '../errors/configuration-error.js';
import { StateError } from '../errors/state-error.js';
import { errorMessage } from '../util/logger.js';
import { messages } from './error-messages.js';
import { HandlerExplorer } from './handler-explorer.js';
import { OutboxRuntime } from './outbox-runtime.js';

/** Lazy loads under way: Nest runs no lifecycle hook of a module they bring. */
let lazyLoads = 0;
const load = LazyModuleLoader.prototype.load;
LazyModuleLoader.prototype.load = async function (this: LazyModuleLoader, ...args) {
  lazyLoads += 1;
  try {
    return await load.apply(this, args);
  } finally {
    lazyLoads -= 1;
  }
};

/**
 * Ties the runtime to Nest's lifecycle. Handlers are collected at bootstrap, when every
 * provider exists; the consumers and the relay stop before the application shuts down, while
 * the database modules (which close in `onApplicationShutdown`) still serve the handlers that
 * are finishing; the module's own connections close last.
 */
@Injectable()
export class OutboxRegistrar
  implements
    OnApplicationBootstrap,
    OnModuleDestroy,
    BeforeApplicationShutdown,
    OnApplicationShutdown
{
  readonly #runtime: OutboxRuntime;
  readonly #explorer: HandlerExplorer;
  readonly #lazyModules: LazyModuleLoader;
  readonly #discovery: DiscoveryService;
  /**
   * Nest began to tear the application down: `onModuleDestroy` comes before any shutdown hook,
   * so a database an application closes in its own `beforeApplicationShutdown` counts too.
   */
  #destroying = false;

  constructor(
    @Inject(OutboxRuntime) runtime: OutboxRuntime,
    @Inject(HandlerExplorer) explorer: HandlerExplorer,
    @Inject(LazyModuleLoader) lazyModules: LazyModuleLoader,
    @Inject(DiscoveryService) discovery: DiscoveryService,
  ) {
    this.#runtime = runtime;
    this.#explorer = explorer;
    this.#lazyModules = lazyModules;
    this.#discovery = discovery;
    // Made by a lazy load, it would never start: refused rather than left silent.
    if (lazyLoads > 0) {
      throw new ConfigurationError('OutboxModule.forRoot', messages.lazyModule());
    }
  }

  async onApplicationBootstrap(): Promise<void> {
    const { prefix, enhancers } = this.#runtime.options;
    this.#warnIfImportedTwice();
    this.#watchLazyModules(this.#explorer.handlerLocations());
    try {
      await this.#runtime.start(this.#explorer.explore({ prefix, enhancers }));
    } catch (error) {
      // The application began shutting down while the module started (a SIGTERM during
      // bootstrap): the shutdown cut the start short, which is no failure of the start. What
      // the start then fails with is the shutdown's doing whatever it is: a step that saw the
      // stop ('stopped'), or a statement on the database the application closes in its own
      // onApplicationShutdown ('database-closed'). Thrown, it would crash the process.
      if (this.#destroying || this.#runtime.shutdownBegun) {
        const stopped = error instanceof StateError && error.state === 'stopped';
        this.#runtime.options.logger.info(
          'the outbox module was shut down while it started',
          stopped ? {} : { error: errorMessage(error) },
        );
        return;
      }
      throw error;
    }
  }

  /**
   * Warns when another OutboxModule of this application runs on the same schema and prefix:
   * each would start its own relay and subscribe every handler again (`forRoot` imported in two
   * feature modules instead of once, global).
   */
  #warnIfImportedTwice(): void {
    const { schema, prefix, logger, consumers } = this.#runtime.options;
    const others = this.#discovery
      .getProviders()
      .map((wrapper) => wrapper.instance as unknown)
      .filter(
        (instance): instance is OutboxRuntime =>
          instance instanceof OutboxRuntime && instance !== this.#runtime,
      );
    const twins = others.filter(
      (other) => other.options.schema === schema && other.options.prefix === prefix,
    );
    if (twins.length > 0) {
      logger.warn(
        `OutboxModule is imported ${twins.length + 1} times in this application on schema "${schema}"${prefix ? ` and prefix "${prefix}"` : ''}: each starts its own relay and subscribes every handler. Import OutboxModule.forRoot once (isGlobal: true) and inject OutboxService where it is needed`,
        {},
      );
      return;
    }
    // Two outboxes (two databases or schemas): handlers are the application's, not a module's,
    // so each module with consumers would run all of them, in its own database's transactions.
    if (consumers !== false && others.some((other) => other.options.consumers !== false)) {
      logger.warn(
        `another OutboxModule of this application (schema "${schema}"${prefix ? `, prefix "${prefix}"` : ''} here) runs consumers too: each module with consumers subscribes every @OutboxHandler of the application, and runs it in its own database's transactions. Let one module run the handlers (consumers: false on the others); see docs/nestjs.md, "Two outboxes in one application"`,
        {},
      );
    }
  }

  /**
   * Logs an error for each handler that a module loaded after bootstrap brings: nothing
   * subscribes it, and Nest has no hook that would tell the module otherwise.
   */
  #watchLazyModules(known: Set<string>): void {
    const loader = this.#lazyModules;
    const load = loader.load.bind(loader);
    const { logger } = this.#runtime.options;
    loader.load = async (...args) => {
      const loaded = await load(...args);
      for (const where of this.#explorer.handlerLocations()) {
        if (known.has(where)) continue;
        known.add(where);
        logger.error(messages.lazyHandler(where), {});
      }
      return loaded;
    };
  }

  onModuleDestroy(): void {
    this.#destroying = true;
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.#runtime.stop();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.#runtime.close();
  }
}

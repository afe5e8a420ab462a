import { Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  OutboxHandlerDiscoverable,
  type OutboxHandlerMetadata,
} from './outbox-handler.metadata.js';

/** Reads what `@OutboxHandler` recorded on a method; nothing else knows the metadata key. */
@Injectable()
export class HandlerMetadataAccessor {
  readonly #reflector: Reflector;

  constructor(@Inject(Reflector) reflector: Reflector) {
    this.#reflector = reflector;
  }

  /** The handler metadata of a method, or undefined when the method is not a handler. */
  handlerMetadata(method: unknown): OutboxHandlerMetadata | undefined {
    if (typeof method !== 'function') return undefined;
    return this.#reflector.get<OutboxHandlerMetadata | undefined>(
      OutboxHandlerDiscoverable.KEY,
      method,
    );
  }
}

import type { ExecutionContext } from '@nestjs/common';
import type { ConsumeContext } from '../consumer/consumer-definition.js';

/**
 * `ExecutionContext.getType()` of a handler call, when the module runs guards and interceptors
 * around handlers (option `enhancers`). Check it in global interceptors that expect HTTP.
 */
export const OUTBOX_CONTEXT_TYPE = 'outboxkit';

/**
 * Whether a guard or interceptor runs around an outbox handler.
 *
 * @example
 * intercept(context: ExecutionContext, next: CallHandler) {
 *   if (!isOutboxContext(context)) return next.handle();
 *   const { payload, consumeContext } = outboxHandlerArguments(context);
 *   // ...
 * }
 */
export function isOutboxContext(context: ExecutionContext): boolean {
  return context.getType<string>() === OUTBOX_CONTEXT_TYPE;
}

/** The payload and the consume context a handler is called with, from its execution context. */
export function outboxHandlerArguments<P = unknown>(
  context: ExecutionContext,
): { payload: P; consumeContext: ConsumeContext } {
  return {
    payload: context.getArgByIndex<P>(0),
    consumeContext: context.getArgByIndex<ConsumeContext>(1),
  };
}

import { TopologyConflictError } from '../consumer/topology-conflict-error.js';
import type { OutboxkitError } from '../errors/outboxkit-error.js';
import { StartupError } from '../errors/startup-error.js';
import { errorMessage } from '../util/logger.js';

/**
 * The typed error for a declare the broker refused for good: a 406 is a conflict with what
 * exists, unless a vhost's or user's limit refused it ("queue limit in vhost 'v' (5) is
 * reached"), and a 403 is a user without configure permission. Neither mends by retrying.
 */
export function declareRefusal(
  kind: 'queue' | 'exchange',
  name: string,
  error: unknown,
): OutboxkitError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  const reply = errorMessage(error);
  if (code === 406 && /limit .* is reached/.test(reply)) {
    return new StartupError(
      'broker-limit-reached',
      'rabbitmq',
      `RabbitMQ refused to declare ${kind} "${name}": ${reply}. Raise the limit, or delete the queues no longer used`,
      error,
    );
  }
  if (code === 406) return new TopologyConflictError(kind, name, error);
  if (code === 403) {
    return new StartupError(
      'broker-access-refused',
      'rabbitmq',
      `RabbitMQ refused to declare ${kind} "${name}": ${reply}. Give the user configure permission on it (rabbitmqctl set_permissions), or declare it as a user who has`,
      error,
    );
  }
  return undefined;
}

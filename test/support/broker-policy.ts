import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A policy on the machine's own broker, as an operator would set one, for queues whose names
 * match `pattern` exactly. Policies cannot be set over AMQP; rabbitmqctl can.
 */
export async function setQueuePolicy(
  name: string,
  queue: string,
  definition: Record<string, unknown>,
): Promise<void> {
  const pattern = `^${queue.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
  await run('rabbitmqctl', [
    'set_policy',
    name,
    pattern,
    JSON.stringify(definition),
    '--apply-to',
    'queues',
    '--priority',
    '100',
  ]);
}

export async function clearPolicy(name: string): Promise<void> {
  await run('rabbitmqctl', ['clear_policy', name]).catch(() => {});
}

import { InvalidMessageError } from '../errors/invalid-message-error.js';
import { optionNames } from '../options/option-names.js';
import { closestName } from '../util/closest-name.js';
import type { OutboxMessage } from './outbox-message.js';

/** Every field of `OutboxMessage`. */
export const MESSAGE_FIELDS = optionNames<OutboxMessage>()([
  'exchange',
  'routingKey',
  'payload',
  'contentType',
  'headers',
  'messageId',
  'orderingKey',
  'delayMs',
  'correlationId',
  'causationId',
]);

/**
 * Refuses a field that is none of `known`, with a did-you-mean. The compiler checks an object
 * literal's fields, but not a spread, a JSON document or JavaScript: a message with `orderingkey`
 * would go out unordered, one with `dealyMs` at once. `what` names the object in the error.
 */
export function rejectUnknownFields(
  value: object,
  known: readonly string[],
  index: number,
  what = 'an outbox message',
): void {
  for (const name of Object.keys(value)) {
    if (known.includes(name)) continue;
    if ((value as Record<string, unknown>)[name] === undefined) continue;
    const guess = closestName(name, known);
    throw new InvalidMessageError(
      'unknown-field',
      `\`${name}\` is not a field of ${what}${guess ? `; did you mean \`${guess}\`?` : ''} (fields: ${known.join(', ')})`,
      index,
    );
  }
}

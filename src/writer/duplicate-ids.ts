import { InvalidMessageError } from '../errors/invalid-message-error.js';
import type { EncodedMessage } from './encode-message.js';

/**
 * Refuses two messages of one `addMany` call with the same id, exchange and routing key. Every
 * queue that gets one gets both, and consumers dedupe by the id: the second is lost. The same id
 * on two exchanges, or under two routing keys (bound to different queues), is the one event
 * sent to two places, and stays allowed (docs/protocol.md).
 */
export function rejectDuplicateIds(messages: readonly EncodedMessage[]): void {
  if (messages.length < 2) return;
  const seen = new Map<string, number>();
  for (const [index, m] of messages.entries()) {
    const key = `${m.exchange}\u0000${m.routingKey}\u0000${m.messageId}`;
    const first = seen.get(key);
    if (first !== undefined) {
      throw new InvalidMessageError(
        'duplicate-message-id',
        `\`messageId\` ${JSON.stringify(m.messageId)} is also the id of message #${first} to the same exchange "${m.exchange}" and routing key "${m.routingKey}": consumers dedupe by the id, so the second would be dropped as a duplicate; give each message its own id`,
        index,
      );
    }
    seen.set(key, index);
  }
}

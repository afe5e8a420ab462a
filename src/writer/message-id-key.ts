import { InvalidMessageError } from '../errors/invalid-message-error.js';
import { businessKeyProblem, quoteKey } from '../protocol/business-key.js';
import type { EncodedMessage } from './encode-message.js';

/**
 * Refuses a message id that consumers could not deduplicate by: it is their default business
 * key, so it follows the key's rule (`businessKeyProblem`). A lone surrogate would be stored as
 * U+FFFD, the same id as other such ids, and consumers would drop all but one as duplicates;
 * NUL cannot be stored at all. Returns the message unchanged.
 */
export function checkMessageIdAsKey(encoded: EncodedMessage, index: number): EncodedMessage {
  const problem = businessKeyProblem(encoded.messageId);
  if (problem !== undefined) {
    throw new InvalidMessageError(
      'invalid-message-id',
      `\`messageId\` ${quoteKey(encoded.messageId)}, the consumers' default business key, ${problem}`,
      index,
    );
  }
  return encoded;
}

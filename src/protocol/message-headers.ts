/**
 * Headers the relay sets on every message it publishes. The full wire format, with the message
 * properties, is described in docs/protocol.md.
 */

/** The message's ordering key, so consumers can keep per-key order too. */
export const ORDERING_KEY_HEADER = 'x-ordering-key';

/** The causation id (the correlation id has a message property of its own). */
export const CAUSATION_ID_HEADER = 'x-causation-id';

/**
 * A number unique per publish on its channel. `basic.return` carries no delivery tag, only the
 * message, and message ids may repeat in the outbox (the same event sent to two exchanges): the
 * tag is the one thing that ties a return to the publish it answers. Consumers can ignore it.
 */
export const PUBLISH_TAG_HEADER = 'x-outboxkit-publish-tag';

import type { IntegerLimit } from '../util/positive-integer.js';

/**
 * The most `maxMessageBytes` may be, for the writer and the relay alike: RabbitMQ's largest
 * default `max_message_size` (3.x; 4.x's is 16 MiB). Far above it, a row cannot even be read
 * back: pg returns a bytea as hex text, and Node holds no string of half a GiB, so a row of
 * 268 MB made the relay's process crash at each claim, for ever.
 */
export const MAX_MESSAGE_BYTES_LIMIT: IntegerLimit = Object.freeze({
  max: 128 * 1024 * 1024,
  text: '134217728 (128 MiB)',
  why: "RabbitMQ's largest default message size, and far below what the relay can read back from Postgres",
});

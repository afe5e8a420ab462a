/**
 * AMQP short strings (exchange and queue names, routing keys, property values) hold at most 255
 * bytes: a longer one cannot be encoded, and amqplib throws at the publish or declare.
 */
export const SHORT_STRING_BYTES = 255;

import type { ConsumeMessage } from 'amqplib';
import { ORDERING_KEY_HEADER } from '../protocol/message-headers.js';
import type { ConsumerChannelHandle } from './consumer-channel.js';
import type { DispatchItem } from './delivery-dispatcher.js';
import type { ParsedDelivery } from './parse-delivery.js';

/** A delivery in the consumer's hands, from its arrival until it is acked or nacked. */
export interface ReceivedDelivery extends DispatchItem {
  readonly message: ConsumeMessage;
  /** The channel it came on: it can only be acked there, while that channel is open. */
  readonly handle: ConsumerChannelHandle;
  /** Set once, on the first run: a delivery retried in place is not parsed again. */
  parsed?: ParsedDelivery;
  /** Failures of an ordered consumer's in-place retries. */
  inPlaceFailures: number;
  /**
   * Earlier failures of this message whose retry copy the broker refused: they are in no
   * header, since the copy carrying the count never got in.
   */
  refusedRetries: number;
  firstFailedAt?: Date;
}

export function receivedDelivery(
  message: ConsumeMessage,
  handle: ConsumerChannelHandle,
  ordered: boolean,
): ReceivedDelivery {
  return {
    orderingKey: ordered ? orderingKeyOf(message) : undefined,
    message,
    handle,
    inPlaceFailures: 0,
    refusedRetries: 0,
  };
}

/**
 * The attempt the next run is: the failures recorded in the message's headers (retries through
 * a delay queue), plus the ones retried in place here or whose retry copy was refused, plus one.
 */
export function attemptOf(delivery: ReceivedDelivery): number {
  return (
    (delivery.parsed?.failedAttempts ?? 0) + delivery.inPlaceFailures + delivery.refusedRetries + 1
  );
}

function orderingKeyOf(message: ConsumeMessage): string | undefined {
  const key = message.properties.headers?.[ORDERING_KEY_HEADER];
  return typeof key === 'string' && key.length > 0 ? key : undefined;
}

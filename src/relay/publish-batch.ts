import {
  type ConfirmedPublisher,
  type ConfirmResult,
  describeConfirmResult,
} from '../amqp/confirmed-publisher.js';
import { publishProperties } from '../protocol/message-properties.js';
import { publishTracer } from '../tracing/publish-span.js';
import type { OutboxRow } from './outbox-row.js';
import { ACKED, type PublishOutcome, RELEASED } from './publish-outcome.js';

/** A row to publish, unless the relay already knows its outcome. */
export interface PublishRequest {
  readonly row: OutboxRow;
  readonly outcome?: PublishOutcome;
}

/**
 * Channel close codes that a message's own content or properties cause (406 PRECONDITION_FAILED
 * for a message over the broker's `max_message_size`, 501-505 frame and syntax errors). Any
 * other close (404 exchange gone, 403 access refused, 320 connection forced, 541 internal) is the
 * broker's or the topology's state, and says nothing about the message.
 */
const MESSAGE_FAULT_CODES = new Set([406, 501, 502, 503, 505]);

/** One outcome per request, and how many sent publishes were still unanswered at the end. */
export interface BatchOutcomes {
  readonly outcomes: PublishOutcome[];
  /** Above 0 after a timeout or a stop: their answers may still come, on that channel. */
  readonly unanswered: number;
}

/**
 * Publishes every request without a preset outcome and waits for all their answers, for at most
 * `timeoutMs`. Rows still unsettled then are transient failures; when `stop` aborts first, they
 * are released untouched.
 */
export function publishBatch(
  publisher: ConfirmedPublisher,
  requests: readonly PublishRequest[],
  timeoutMs: number,
  stop?: AbortSignal,
): Promise<BatchOutcomes> {
  const outcomes: Array<PublishOutcome | undefined> = requests.map((r) => r.outcome);
  const sent = outcomes.filter((o) => o === undefined).length;
  let pending = sent;
  if (pending === 0)
    return Promise.resolve({ outcomes: outcomes as PublishOutcome[], unanswered: 0 });

  return new Promise((resolve) => {
    let finished = false;
    const finish = (fill: PublishOutcome) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
      resolve({ outcomes: outcomes.map((o) => o ?? fill), unanswered: pending });
    };
    const onStop = () => finish(RELEASED);
    const timer = setTimeout(() => {
      finish({ kind: 'transient', reason: `no confirm within ${timeoutMs} ms` });
    }, timeoutMs);
    stop?.addEventListener('abort', onStop, { once: true });

    // Undefined without `@opentelemetry/api`: then no per-message tracing work at all.
    const tracer = publishTracer();
    publisher.corked(() =>
      requests.forEach((request, index) => {
        if (request.outcome !== undefined || finished) return;
        const { row } = request;
        const properties = publishProperties(row);
        const span = tracer?.start(row, properties);
        const settle = (result: ConfirmResult) => {
          span?.end(result);
          if (finished || outcomes[index] !== undefined) return;
          outcomes[index] = rowOutcome(result, sent === 1);
          pending -= 1;
          if (pending === 0) finish(RELEASED);
        };
        // The properties were built for this publish alone: the publisher may add to them in place.
        publisher.send(row.exchange, row.routing_key, row.payload, properties, settle, true);
      }),
    );
  });
}

/** What a broker answer means for the row; `alone`: it was the only publish of its batch. */
function rowOutcome(result: ConfirmResult, alone: boolean): PublishOutcome {
  const reason = describeConfirmResult(result);
  switch (result.kind) {
    case 'confirmed':
      return ACKED;
    case 'returned':
      return { kind: 'permanent', reason };
    case 'not-sent':
      return result.encodable ? { kind: 'transient', reason } : { kind: 'permanent', reason };
    case 'channel-closed':
      // In a batch, any one message may have made the broker close the channel: the failed rows
      // are retried one at a time, where the culprit is alone when it happens again.
      // Alone in its batch and on its channel: another batch of the lane may share the channel.
      return alone &&
        result.alone !== false &&
        result.replyCode !== undefined &&
        MESSAGE_FAULT_CODES.has(result.replyCode)
        ? { kind: 'rejected', reason }
        : { kind: 'transient', reason };
    case 'nacked':
    case 'timeout':
      return { kind: 'transient', reason };
  }
}

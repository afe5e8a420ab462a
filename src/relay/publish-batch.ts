import {
  type ConfirmedPublisher,
  type ConfirmResult,
  describeConfirmResult,
} from '../amqp/confirmed-publisher.js';
import { publishProperties } from '../protocol/message-properties.js';
import { publishTracer } from '../tracing/publish-span.js';
import { HELD, holdAfterFailure, KeyRunSchedule } from './key-runs.js';
import type { OutboxRow } from './outbox-row.js';
import { ACKED, type PublishOutcome, RELEASED } from './publish-outcome.js';
import { unencodableReason } from './unencodable-row.js';

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
 * Publishes every request without a preset outcome and waits for all their answers. Rows of one
 * ordering key go one after another, each once the one before it was confirmed
 * (`KeyRunSchedule`), while the batch is younger than `timeoutMs`; everything else goes at once.
 * Publishes unanswered `timeoutMs` after the
 * last one was sent are transient failures, and rows of a key still waiting behind them are held;
 * when `stop` aborts first, publishes in flight are released and unsent rows held, all untouched.
 */
export function publishBatch(
  publisher: ConfirmedPublisher,
  requests: readonly PublishRequest[],
  timeoutMs: number,
  stop?: AbortSignal,
): Promise<BatchOutcomes> {
  const keys = requests.map((r) => r.row.ordering_key);
  const schedule = new KeyRunSchedule(keys);
  const outcomes: Array<PublishOutcome | undefined> = requests.map(() => undefined);
  const sent = requests.filter((r) => r.outcome === undefined).length;
  if (sent === 0) {
    return Promise.resolve({
      outcomes: holdAfterFailure(
        keys,
        requests.map((r) => r.outcome!),
      ),
      unanswered: 0,
    });
  }
  // Rows without an outcome yet, and publishes sent and not answered.
  let open = requests.length;
  let unanswered = 0;
  const inFlight = requests.map(() => false);

  return new Promise((resolve) => {
    let finished = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (fill: PublishOutcome) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
      // Rows never sent wait behind a row of their key that has no answer: held, untouched.
      const final = outcomes.map((o, i) => o ?? (inFlight[i] ? fill : HELD));
      resolve({ outcomes: holdAfterFailure(keys, final), unanswered });
    };
    const onStop = () => finish(RELEASED);
    // From the last publish sent: a run's later rows are sent as late as its earlier ones answer.
    const armTimer = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        finish({ kind: 'transient', reason: `no confirm within ${timeoutMs} ms` });
      }, timeoutMs);
    };
    stop?.addEventListener('abort', onStop, { once: true });

    // Undefined without `@opentelemetry/api`: then no per-message tracing work at all.
    const tracer = publishTracer();
    // A run's next row goes only within `timeoutMs` of the batch's start, so the batch ends
    // within twice that: its transaction stays open (idle) until then, and Postgres ends it at
    // the stall bound (`stallTimeoutMs`), which would send the batch's confirmed rows again.
    const startedAt = Date.now();
    const hold = (index: number) => {
      for (const held of schedule.restAfter(index)) {
        outcomes[held] = HELD;
        open -= 1;
      }
    };
    const settle = (index: number, outcome: PublishOutcome) => {
      outcomes[index] = outcome;
      open -= 1;
      const next = outcome.kind === 'acked' ? schedule.nextAfter(index) : undefined;
      if (next !== undefined && !finished && Date.now() - startedAt < timeoutMs) {
        armTimer();
        start(next);
      } else {
        // Failed, or past the batch's time for runs: the rest of the run waits for a later batch.
        hold(index);
      }
      if (open === 0) finish(RELEASED);
    };
    const start = (index: number) => {
      const request = requests[index]!;
      if (request.outcome !== undefined) {
        settle(index, request.outcome);
        return;
      }
      const { row } = request;
      const properties = publishProperties(row);
      const span = tracer?.start(row, properties);
      inFlight[index] = true;
      unanswered += 1;
      const answer = (result: ConfirmResult) => {
        span?.end(result);
        if (finished || outcomes[index] !== undefined) return;
        unanswered -= 1;
        settle(index, rowOutcome(result, sent === 1, row));
      };
      // The properties were built for this publish alone: the publisher may add to them in place.
      publisher.send(row.exchange, row.routing_key, row.payload, properties, answer, true);
    };

    armTimer();
    publisher.corked(() => {
      for (const index of schedule.first) {
        if (finished) return;
        start(index);
      }
    });
  });
}

/** What a broker answer means for the row; `alone`: it was the only publish of its batch. */
function rowOutcome(result: ConfirmResult, alone: boolean, row: OutboxRow): PublishOutcome {
  const reason = describeConfirmResult(result);
  switch (result.kind) {
    case 'confirmed':
      return ACKED;
    case 'returned':
      return { kind: 'unroutable', reason };
    case 'not-sent':
      if (!result.encodable) {
        return { kind: 'permanent', reason: unencodableReason(row, result.reason) };
      }
      // Never written, for want of an open channel: the lane opens a new one before its next claim.
      return result.channelClosed ? { kind: 'released', reason } : { kind: 'transient', reason };
    case 'channel-closed':
      // Gone with its connection after the broker had confirmed others on the channel: the
      // broker or the network failed, not this message, and the confirmed ones show that the
      // channel made progress, so a message that kills connections cannot keep a batch coming
      // back forever. Such rows go back untouched, to be claimed again at full speed once the
      // relay has reconnected; anything else counts, and goes to the retry lane.
      if (result.connectionLost && result.afterConfirms) return { kind: 'released', reason };
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

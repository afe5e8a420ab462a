import type { ConfirmChannel, Message, Options } from 'amqplib';
import { PUBLISH_TAG_HEADER } from '../protocol/message-headers.js';
import { closeChannel } from './close-within.js';
import { AMQPLIB_TABLE_BYTES, FRAME_OVERHEAD_BYTES } from './content-header-bytes.js';
import { corkUntilWritten, socketOf } from './socket-cork.js';

/** What the broker made of one publish. */
export type ConfirmResult =
  /** Acked and not returned: a queue (or an alternate exchange) has it. */
  | { readonly kind: 'confirmed' }
  /** Returned as unroutable (`mandatory`), then acked: no queue has it. */
  | { readonly kind: 'returned'; readonly replyCode: number; readonly replyText: string }
  /** Nacked: the broker could not take it (an internal error, or a queue's reject-publish). */
  | { readonly kind: 'nacked' }
  /**
   * The channel closed before the broker answered; `replyCode` when the broker closed it.
   * `alone`: this was the only publish awaiting an answer then, so the close can be its doing.
   * `connectionLost`: the channel went down with its connection (a broken socket, a missed
   * heartbeat, the broker shutting down), not closed by the broker or by outboxkit on its own.
   * `afterConfirms`: the broker had confirmed a publish on this channel before it closed.
   */
  | {
      readonly kind: 'channel-closed';
      readonly reason: string;
      readonly replyCode?: number;
      readonly alone?: boolean;
      readonly connectionLost?: true;
      readonly afterConfirms?: true;
    }
  /**
   * Never sent: (`channelClosed`) the channel or its connection was closed or closing already,
   * or (`encodable: false`) amqplib could not encode the message, which no retry changes. Either
   * way no confirm was owed for it.
   */
  | {
      readonly kind: 'not-sent';
      readonly reason: string;
      readonly encodable: boolean;
      readonly channelClosed?: true;
    }
  /** No answer within the caller's time limit (`publish` only). */
  | { readonly kind: 'timeout'; readonly reason: string };

export type ConfirmListener = (result: ConfirmResult) => void;

const CORKED_HIGH_WATER_MARK = 4 * 1024 * 1024;

/**
 * Nacks in a row, without an ack between them, after which a publisher's channel should be
 * replaced. A channel keeps its own view of a quorum queue: after the queue lost its majority and
 * elected a new leader, RabbitMQ 3.10 was seen to nack every publish on a channel opened before
 * (still 39 s after the election), while a new channel was confirmed at once. A full queue's
 * reject-publish nacks every channel alike: one new channel per this many nacks then costs little.
 */
export const NACKS_BEFORE_NEW_CHANNEL = 10;

interface Pending {
  readonly settle: ConfirmListener;
  returned?: { replyCode: number; replyText: string };
}

/**
 * Publishes on one confirm channel and turns every broker answer into exactly one
 * `ConfirmResult` per publish: combined acks (`multiple`), a return before its ack, nacks, a
 * channel that closes mid-flight, and publishes amqplib refuses. The relay, the consumer's
 * retry publisher and the dead-letter replay all publish through it.
 */
/** amqplib's own `frameMax` when the URL gives none (RabbitMQ's default too): 128 KiB. */
const DEFAULT_FRAME_MAX = 131_072;
/** The publish tag header, name and a number's value, as `contentHeaderBytes` counts them. */
const PUBLISH_TAG_ROOM_BYTES = 1 + PUBLISH_TAG_HEADER.length + 1 + 8;

export class ConfirmedPublisher {
  readonly #channel: ConfirmChannel;
  readonly #onAnswer: ((seconds: number) => void) | undefined;
  readonly #pending = new Map<number, Pending>();
  /** The tag of the one pending publish sent untagged with each message id. */
  readonly #untagged = new Map<string, number>();
  #nextTag = 1;
  #closedReason: string | undefined;
  #closedCode: number | undefined;
  /** Publishes awaiting an answer when the channel closed. */
  #pendingAtClose: number | undefined;
  #nackedInARow = 0;
  #wornOut = false;
  /** Takes no new publishes from its owner: closes once the last one in flight is answered. */
  #retired = false;
  /** The broker has answered a publish on this channel with an ack. */
  #confirmedAny = false;
  /** The channel went down with its connection: closed with no close frame nor `close()` first. */
  #connectionLost = false;

  /** `onAnswer` receives, per message, the seconds from publish to the broker's own answer. */
  constructor(channel: ConfirmChannel, onAnswer?: (seconds: number) => void) {
    this.#channel = channel;
    this.#onAnswer = onAnswer;
    channel.on('return', (message: Message) => {
      // basic.return comes before the ack of the same publish: mark it, the ack settles it.
      const tag = this.#tagOf(message);
      const pending = tag === undefined ? undefined : this.#pending.get(tag);
      if (pending) {
        const fields = message.fields as unknown as { replyCode?: number; replyText?: string };
        pending.returned = { replyCode: fields.replyCode ?? 0, replyText: fields.replyText ?? '' };
      }
    });
    channel.on('error', (error: Error & { code?: unknown }) => {
      this.#closedReason ??= `channel error: ${error.message}`;
      if (typeof error.code === 'number') this.#closedCode ??= error.code;
    });
    // Ahead of amqplib's own 'close' listener, which fails the pending confirms: their callbacks
    // must already see the channel closed (no broker answer to time, and the reason to record).
    channel.prependListener('close', () => {
      // amqplib emits 'error' on a channel only for the broker's channel.close, and `close()`
      // sets the reason first: a channel that closes with nothing before it went with its
      // connection.
      if (this.#closedReason === undefined) {
        this.#closedReason = 'channel closed';
        this.#connectionLost = true;
      }
      this.#pendingAtClose ??= this.#pending.size;
    });
  }

  /** The pending publish a return belongs to: by its tag header, or else by its message id. */
  #tagOf(message: Message): number | undefined {
    const { headers, messageId } = message.properties as {
      headers?: Record<string, unknown>;
      messageId?: unknown;
    };
    const header = headers?.[PUBLISH_TAG_HEADER];
    if (header !== undefined) return Number(header);
    return typeof messageId === 'string' ? this.#untagged.get(messageId) : undefined;
  }

  /**
   * The most bytes a publish's content header may take on this channel (`contentHeaderBytes`),
   * with room left for the publish tag this publisher may add.
   */
  get maxContentHeaderBytes(): number {
    // amqplib keeps the negotiated frame_max on the connection, untyped.
    const { connection } = this.#channel as unknown as { connection?: { frameMax?: number } };
    const frameMax = connection?.frameMax ?? DEFAULT_FRAME_MAX;
    return frameMax - FRAME_OVERHEAD_BYTES - PUBLISH_TAG_ROOM_BYTES;
  }

  /**
   * The most bytes a publish's headers may take (`fieldTableBytes`): amqplib's encoding buffer,
   * less room for the publish tag.
   */
  get maxHeadersBytes(): number {
    return AMQPLIB_TABLE_BYTES - PUBLISH_TAG_ROOM_BYTES;
  }

  get isOpen(): boolean {
    return this.#closedReason === undefined;
  }

  /** Why the channel closed, once it has. */
  get closedReason(): string | undefined {
    return this.#closedReason;
  }

  /**
   * Nacks since the last ack (a return counts as acked). At `NACKS_BEFORE_NEW_CHANNEL` or more,
   * publish on a new channel: this one may be stuck on a view of the broker that is gone.
   */
  get nackedInARow(): number {
    return this.#nackedInARow;
  }

  /**
   * The broker has nacked `NACKS_BEFORE_NEW_CHANNEL` publishes in a row on this channel: publish
   * on a new one, once what is in flight on this one has its answers. It stays set: acks of
   * publishes sent meanwhile can arrive before the caller reads it, and must not hide it.
   */
  get wornOut(): boolean {
    return this.#wornOut;
  }

  /** Publishes awaiting their answer. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Its owner gives it no new publishes (it is worn out, and replaced): the channel closes once
   * every publish in flight on it has its answer, at once if none awaits one. Closing it earlier
   * would fail publishes the broker is about to confirm. A timeout still calls for `close()`.
   */
  retire(): void {
    this.#retired = true;
    this.#closeIfRetired();
  }

  #closeIfRetired(): void {
    if (this.#retired && this.#pending.size === 0) void this.close();
  }

  /**
   * Publishes one message and calls `settle` exactly once with its result (synchronously for a
   * message that was not sent). Returns false when amqplib's write buffer is full: the message is
   * still buffered and still answered, so it must not be sent again.
   *
   * `owned`: `options` (with its `headers`) was made for this call alone and may be changed in
   * place, which spares the relay two object copies per message.
   */
  send(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    settle: ConfirmListener,
    owned = false,
  ): boolean {
    if (this.#closedReason !== undefined) {
      settle({
        kind: 'not-sent',
        reason: this.#closedReason,
        encodable: true,
        channelClosed: true,
      });
      return true;
    }
    const tag = this.#nextTag;
    this.#nextTag += 1;
    // A return is matched to its publish by the message id while no other publish in flight
    // without the tag has that id; only the others carry the tag header, which costs the broker
    // (a classic queue: about 5 % of its CPU per message, docs/benchmarks.md). A message whose
    // headers hold a tag already (a replayed copy) gets its own, so a stale one cannot mislead.
    const { messageId } = options;
    const untaggedId =
      typeof messageId === 'string' &&
      messageId !== '' &&
      !this.#untagged.has(messageId) &&
      options.headers?.[PUBLISH_TAG_HEADER] === undefined
        ? messageId
        : undefined;
    const pending: Pending = { settle };
    const publishOptions: Options.Publish = owned ? options : { ...options };
    publishOptions.mandatory = true;
    if (untaggedId !== undefined) {
      this.#untagged.set(untaggedId, tag);
    } else if (owned && options.headers) {
      options.headers[PUBLISH_TAG_HEADER] = tag;
    } else {
      publishOptions.headers = { ...options.headers, [PUBLISH_TAG_HEADER]: tag };
    }
    const started = performance.now();
    this.#pending.set(tag, pending);
    try {
      return this.#channel.publish(exchange, routingKey, content, publishOptions, (error) => {
        this.#pending.delete(tag);
        if (untaggedId !== undefined) this.#untagged.delete(untaggedId);
        // A closing channel fails its pending confirms: that is no answer of the broker.
        const closed = error && this.#closedReason !== undefined;
        if (!closed) this.#onAnswer?.((performance.now() - started) / 1000);
        if (closed) {
          settle({
            kind: 'channel-closed',
            reason: this.#closedReason!,
            ...(this.#closedCode !== undefined && { replyCode: this.#closedCode }),
            // Unknown (no 'close' seen first): the caller's own count decides, as it did before.
            alone: (this.#pendingAtClose ?? 1) === 1,
            ...(this.#connectionLost && { connectionLost: true }),
            ...(this.#confirmedAny && { afterConfirms: true }),
          });
        } else if (error) {
          this.#nackedInARow += 1;
          if (this.#nackedInARow >= NACKS_BEFORE_NEW_CHANNEL) this.#wornOut = true;
          settle({ kind: 'nacked' });
        } else if (pending.returned) {
          this.#nackedInARow = 0;
          this.#confirmedAny = true;
          settle({ kind: 'returned', ...pending.returned });
        } else {
          this.#nackedInARow = 0;
          this.#confirmedAny = true;
          settle({ kind: 'confirmed' });
        }
        this.#closeIfRetired();
      });
    } catch (error) {
      // amqplib throws before writing anything, and before it counts a confirm: once the channel
      // is closing or closed, or with a TypeError or RangeError when the message cannot be
      // encoded (a property over 255 bytes, headers over the frame buffer).
      this.#pending.delete(tag);
      if (untaggedId !== undefined) this.#untagged.delete(untaggedId);
      const reason = error instanceof Error ? error.message : String(error);
      const encodable = !(error instanceof TypeError || error instanceof RangeError);
      // amqplib's words for a channel it no longer writes to (its 'close' may not be out yet),
      // or for a connection being closed (a relay's own stop) whose channels are still open.
      const channelClosed = encodable && /^(Channel|Connection) clos(ed|ing)/.test(reason);
      settle({ kind: 'not-sent', reason, encodable, ...(channelClosed && { channelClosed }) });
      this.#closeIfRetired();
      return true;
    }
  }

  /**
   * Runs `sends` with the connection's socket corked until amqplib's writer has passed its
   * frames on (it writes on `setImmediate`): a batch then leaves in a few large writes instead of
   * one system call per message. Uses amqplib's socket (`connection.stream`) when it has one.
   */
  corked(sends: () => void): void {
    const socket = socketOf(this.#channel);
    if (!socket?._writableState) {
      sends();
      return;
    }
    // amqplib's writer stops at the socket's high-water mark (16 KiB) until 'drain', which a
    // corked socket emits only once uncorked: let a batch's frames be buffered whole.
    if (socket._writableState.highWaterMark < CORKED_HIGH_WATER_MARK) {
      socket._writableState.highWaterMark = CORKED_HIGH_WATER_MARK;
    }
    // A cork of the batch's own, not `holdWrites`: a batch sent in the turn another cork ends
    // would otherwise leave a frame a system call.
    corkUntilWritten(socket);
    sends();
  }

  /** Publishes one message and resolves with its result, or `timeout` after `timeoutMs`. */
  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    timeoutMs: number,
  ): Promise<ConfirmResult> {
    return new Promise((resolve) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        resolve({ kind: 'timeout', reason: `no publisher confirm within ${timeoutMs} ms` });
      }, timeoutMs);
      this.send(exchange, routingKey, content, options, (result) => {
        if (done) return;
        clearTimeout(timer);
        resolve(result);
      });
    });
  }

  /** Closes the channel; publishes still pending settle as `channel-closed`. */
  async close(): Promise<void> {
    if (this.#closedReason !== undefined) return;
    this.#closedReason = 'closed by outboxkit';
    await closeChannel(this.#channel);
  }
}

/** A one-line description of a result that is not `confirmed`, for logs and errors. */
export function describeConfirmResult(result: ConfirmResult): string {
  switch (result.kind) {
    case 'confirmed':
      return 'confirmed';
    case 'returned':
      return `unroutable: ${`${result.replyCode} ${result.replyText}`.trim()}`;
    case 'nacked':
      return 'nacked by the broker';
    case 'channel-closed':
      return `not confirmed: ${result.reason}`;
    case 'not-sent':
      return `not sent: ${result.reason}`;
    case 'timeout':
      return result.reason;
  }
}

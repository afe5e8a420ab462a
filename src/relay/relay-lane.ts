import type { Pool, PoolClient } from 'pg';
import type { AmqpConnection } from '../amqp/amqp-connection.js';
import { ConfirmedPublisher, NACKS_BEFORE_NEW_CHANNEL } from '../amqp/confirmed-publisher.js';
import { contentHeaderBytes } from '../amqp/content-header-bytes.js';
import { publishProperties } from '../protocol/message-properties.js';
import { checkoutClient } from '../sql/checkout-client.js';
import { relaySchemaError } from '../start/check-schema.js';
import { databaseMisconfiguration } from '../start/misconfiguration.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { backoffDelay } from '../util/backoff.js';
import { errorMessage } from '../util/logger.js';
import type { RepeatedWarning } from '../util/repeated-warning.js';
import type { WakeSignal } from '../util/wake-signal.js';
import { type ClaimCursor, CURSOR_TTL_MS, LAST_ID } from './claim-cursor.js';
import { FIRST_CLAIM_LIMIT, nextClaimLimit } from './claim-limit.js';
import { ConnectionLimitBackoff, isConnectionLimitRefusal } from './connection-limit.js';
import type { DatabaseHealth } from './database-health.js';
import type { ExchangeRegistry } from './exchange-registry.js';
import { type RunRow, unbrokenRuns } from './key-runs.js';
import { claimedRows, type OutboxRow } from './outbox-row.js';
import { parkedLogContext } from './parked-log-context.js';
import { type BatchOutcomes, type PublishRequest, publishBatch } from './publish-batch.js';
import type { PublishOutcome } from './publish-outcome.js';
import type { ResolvedRelayOptions } from './relay-options.js';
import type { RelayQueries } from './relay-queries.js';
import type { RelayStats } from './relay-stats.js';
import { stallTimeoutMs } from './stall-timeout.js';

interface Claim {
  readonly claimed: number;
  readonly idleMs: number;
  /** Payload bytes of the batch: what it holds in memory until settled. */
  readonly bytes?: number;
  /** Resolves once the batch's outcomes are committed; never rejects. */
  readonly done?: Promise<BatchEnd>;
}

interface BatchEnd {
  /** Some rows had an ordering key: their successors may be claimable now. */
  readonly ordered: boolean;
  readonly error?: unknown;
}

/**
 * After a cycle that found rows, an empty claim is retried this soon, then twice as late each
 * time, up to the poll interval: while messages keep coming, a lane finds those written without
 * a NOTIFY (the writer notifies at most once per interval) within milliseconds, and an idle
 * outbox costs a handful of extra claims.
 */
const RECHECK_AFTER_WORK_MS = 5;
/**
 * Opens a lane's claim transaction, whatever the settings of the pool it is on (the
 * application's, possibly):
 * - READ COMMITTED, not `default_transaction_isolation`: the claim, the publishes' outcomes and
 *   the COMMIT rely on it (`SKIP LOCKED` past the other lanes' rows, each statement seeing what
 *   committed before it);
 * - `idle_in_transaction_session_timeout` at the relay's own stall bound: the lane is idle in
 *   the transaction while it waits its turn to claim and for the broker's confirms, and a
 *   shorter setting ended the session after the broker had confirmed, so the batch went out
 *   again, and again (60,256 publishes for 2,000 rows at 20 ms).
 * One round trip: both in one simple query.
 */
function beginClaim(stallMs: number): string {
  return `BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = ${stallMs}`;
}

/**
 * Batches a lane keeps in flight: it claims and publishes the next while the one before waits
 * for its confirms, so the broker is not left idle during the lane's database round trips. Each
 * has its own transaction (and pooled connection); they share the lane's channel.
 */
export const BATCHES_PER_LANE = 2;

/**
 * A lane claims its next batch early only while the batch in flight holds less than this many
 * payload bytes: with large messages a lane keeps one batch in memory, as before the overlap.
 */
export const OVERLAP_MAX_BYTES = 8 * 1024 * 1024;

export interface RelayLaneContext {
  readonly options: ResolvedRelayOptions;
  readonly pool: Pool;
  readonly amqp: AmqpConnection;
  readonly exchanges: ExchangeRegistry;
  readonly queries: RelayQueries;
  /** Where the lanes' fresh claims start, shared by them. */
  readonly cursor: ClaimCursor;
  readonly wake: WakeSignal;
  readonly stats: RelayStats;
  /** What the claims last found of the database. */
  readonly database: DatabaseHealth;
  /** `outbox rows will be retried`, summed over the lanes while it repeats. */
  readonly retriedWarning: RepeatedWarning;
  /** Postgres refused a lane a connection while the relay holds others, summed likewise. */
  readonly connectionLimitWarning: RepeatedWarning;
  /** Aborts when the relay stops claiming. */
  readonly stopping: AbortSignal;
  /** Aborts when `stop()` runs out of patience: unconfirmed rows are then released. */
  readonly giveUp: AbortSignal;
  /**
   * Aborts when the lanes still wait on Postgres a while after `giveUp`: their clients' sockets
   * are destroyed, so a hung database cannot hold `stop()` for the pool's `query_timeout`.
   */
  readonly abandon: AbortSignal;
}

/**
 * One claim-publish-settle loop with its own confirm channel and up to `BATCHES_PER_LANE`
 * batches in flight, each in its own database transaction. Claimed rows stay locked (`FOR UPDATE
 * SKIP LOCKED`) until their outcomes are written, so no other batch, lane or relay takes them,
 * and a crash anywhere before COMMIT leaves them in the outbox.
 */
export class RelayLane {
  readonly #ctx: RelayLaneContext;
  readonly #retryLane: boolean;
  readonly #begin: string;
  #publisher: ConfirmedPublisher | undefined;
  /** Rows the next claim asks for (`nextClaimLimit`). */
  #claimLimit: number;

  /**
   * @param retryLane claims rows that failed before, one at a time, so that a message that
   *   makes the broker close the channel takes down only its own publish.
   */
  constructor(ctx: RelayLaneContext, retryLane: boolean) {
    this.#ctx = ctx;
    this.#retryLane = retryLane;
    this.#begin = beginClaim(stallTimeoutMs(ctx.options.publishTimeoutMs));
    this.#claimLimit = retryLane ? 1 : Math.min(ctx.options.batchSize, FIRST_CLAIM_LIMIT);
  }

  async run(): Promise<void> {
    const { stopping, options, stats } = this.#ctx;
    // The retry lane publishes one row at a time: a second batch would share its channel.
    const depth = this.#retryLane ? 1 : BATCHES_PER_LANE;
    const inFlight: Promise<BatchEnd>[] = [];
    const inFlightBytes: number[] = [];
    let failures = 0;
    const connectionLimit = new ConnectionLimitBackoff(options.reconnectBackoff);
    // Waits for the oldest batch in flight; throws its error.
    const settleOldest = async () => {
      inFlightBytes.shift();
      const end = await inFlight.shift()!;
      if (end.error !== undefined) throw end.error;
      failures = 0;
      this.#ctx.database.settled();
      // A settled ordered row may have released the next of its key, for any lane.
      if (end.ordered) this.#ctx.wake.wake();
    };
    // Empty claims since the last one that found rows; starts high so that a fresh relay on an
    // idle outbox goes straight to its poll interval.
    let emptyClaims = Number.POSITIVE_INFINITY;
    while (!stopping.aborted) {
      try {
        while (
          inFlight.length >= depth ||
          (inFlight.length > 0 && sum(inFlightBytes) >= OVERLAP_MAX_BYTES)
        ) {
          await settleOldest();
        }
        const held = this.#ctx.database.claimsHeldMs;
        if (held > 0) {
          await abortableDelay(held, stopping);
          continue;
        }
        const { idleMs, done, bytes } = await this.#claimAndPublish();
        if (done) {
          inFlight.push(done);
          inFlightBytes.push(bytes ?? 0);
          emptyClaims = 0;
          // Claim again at once: rows keep coming while messages are being written.
          continue;
        }
        if (inFlight.length > 0) {
          // Settling may release successors of ordered rows: claim again before sleeping.
          while (inFlight.length > 0) await settleOldest();
          continue;
        }
        failures = 0;
        const recheckMs = RECHECK_AFTER_WORK_MS * 2 ** Math.min(emptyClaims, 20);
        emptyClaims += 1;
        // A NOTIFY means messages are being written: re-check soon even if this lane's next
        // claim finds nothing (the notifying rows went to another lane, were delayed, or the
        // rows written after them, without a NOTIFY of their own, commit a little later).
        if (await this.#ctx.wake.wait(Math.min(idleMs, recheckMs))) emptyClaims = 0;
      } catch (error) {
        // A claim that stop() cut short was rolled back: its rows stay, and nothing failed.
        if (error === stopping.reason) break;
        // The stop dropped the lane's connection: nothing committed, and nothing to retry.
        if (this.#ctx.abandon.aborted) break;
        stats.errors += 1;
        if (isConnectionLimitRefusal(error, this.#ctx.pool)) {
          // No batch of this lane failed: its claim found no connection to run on. The batches
          // in flight go on, and the database's health is what they find.
          const delay = connectionLimit.refused();
          this.#ctx.connectionLimitWarning.add(1, {
            error: errorMessage(error),
            connections: this.#ctx.pool.totalCount,
            retryInMs: delay,
          });
          await abortableDelay(delay, stopping);
          continue;
        }
        failures += 1;
        // A failed settle held every lane's claims already (`holdClaims`); this is the lane's own.
        const news = this.#ctx.database.failed(error);
        const delay = backoffDelay(options.reconnectBackoff, failures);
        // One warning per database outage, not one per lane and retry; `/health`, the errors
        // counter and `relay.databaseProblem` say it goes on.
        (news ? options.logger.warn : options.logger.debug).call(
          options.logger,
          this.#ctx.database.problem?.kind === 'read-only'
            ? 'relay batch failed: the database is read-only (a standby, or default_transaction_read_only); backing off'
            : 'relay batch failed; backing off',
          { error: this.#describe(error), retryInMs: delay },
        );
        // The other batches settle first: the channel they share closes only after them.
        inFlightBytes.length = 0;
        await this.#drain(inFlight);
        await this.#closePublisher();
        await abortableDelay(delay, stopping);
      }
    }
    await this.#drain(inFlight);
    // Not awaited: the relay closes the connection next, which ends the channel too, and a
    // broker that hangs would hold each close for its whole bound.
    void this.#closePublisher();
  }

  /** Waits for every batch in flight; their failures are counted and logged. */
  async #drain(inFlight: Promise<BatchEnd>[]): Promise<void> {
    for (const end of await Promise.all(inFlight.splice(0))) {
      if (end.error === undefined || this.#ctx.abandon.aborted) continue;
      this.#ctx.stats.errors += 1;
      this.#ctx.options.logger.warn('relay batch failed', { error: this.#describe(end.error) });
    }
  }

  /** A batch's error as logged: a schema never migrated says what to run (a start check that found Postgres down could not). */
  #describe(error: unknown): string {
    // A privilege revoked after the start checks, say, names where the grants are.
    return errorMessage(
      relaySchemaError(error, this.#ctx.options.schema, 'first') ??
        databaseMisconfiguration(error, "the relay's database") ??
        error,
    );
  }

  /**
   * Claims a batch and publishes it. Returns once the publishes are written, with `done`
   * settling the batch (outcomes written, COMMIT) when the broker has answered.
   */
  async #claimAndPublish(): Promise<Claim> {
    const { amqp, pool, queries, options, stopping } = this.#ctx;
    const idle: Claim = { claimed: 0, idleMs: options.pollIntervalMs };
    if (!(await amqp.ready(stopping))) return idle;
    const publisher = await this.#ensurePublisher();
    if (!publisher) return idle;

    const state: { broken?: Error } = {};
    // A backend that dies while the lane waits for confirms reports on the idle client; without
    // a listener that error would crash the process. The next query fails and rolls back.
    const client = await checkoutClient(
      pool,
      (error) => {
        state.broken ??= error;
      },
      this.#ctx.abandon,
    );
    let handedOver = false;
    try {
      await client.query(this.#begin);
      // Looked at again right before the claim, after the wait for its turn: a settle may have
      // failed meanwhile, and its rows be claimable again.
      const { database } = this.#ctx;
      const claimUnlessHeld = async () =>
        database.claimsHeldMs > 0 ? undefined : this.#claim(client);
      const claimed = this.#retryLane
        ? await claimUnlessHeld()
        : await this.#ctx.cursor.inTurn(claimUnlessHeld);
      if (claimed === undefined) {
        await client.query('COMMIT');
        return { ...idle, idleMs: Math.max(1, database.claimsHeldMs) };
      }
      const { heads, rows, fromHead } = claimed;
      const ended = this.#ctx.database.claimed();
      if (ended !== undefined) {
        options.logger.info('relay reaches the database again', { after: ended.kind });
      }
      if (heads.length === 0) {
        // Sleep until the next delayed or retried row is due, if that comes before the poll.
        const next = await client.query<{ ms: string | bigint | null; now_epoch: string }>(
          queries.msUntilNextAvailable,
        );
        await client.query('COMMIT');
        // It read every row due at its now(): the next claims start there, not at the head again.
        const nowEpoch = next.rows[0]?.now_epoch;
        if (fromHead && nowEpoch !== undefined) {
          this.#ctx.cursor.claimed({ availableAtEpoch: nowEpoch, id: LAST_ID });
        }
        // An int8: a string, or a BigInt on a pool that parses it so.
        const ms = Number(next.rows[0]?.ms ?? Number.NaN);
        const untilNext = Number.isFinite(ms) ? Math.max(0, ms) : Number.POSITIVE_INFINITY;
        return { ...idle, idleMs: Math.min(options.pollIntervalMs, untilNext + 5) };
      }
      // Claimed as the stop began: rolled back untouched rather than published now, when the
      // stop's patience may be spent and no confirm would be waited for.
      if (stopping.aborted) throw stopping.reason;
      const requests = await this.#prepare(rows, publisher.maxContentHeaderBytes);
      const answers = publishBatch(publisher, requests, options.publishTimeoutMs, this.#ctx.giveUp);
      handedOver = true;
      const ordered = rows.some((r) => r.ordering_key !== null);
      const done = this.#settleBatch(client, state, publisher, rows, answers).then(
        () => ({ ordered }),
        (error: unknown) => ({ ordered, error }),
      );
      let bytes = 0;
      for (const row of rows) bytes += row.payload.length;
      if (!this.#retryLane) {
        this.#claimLimit = nextClaimLimit(
          heads.map((r) => r.payload.length),
          options.batchSize,
          options.maxBatchBytes,
        );
      }
      return { claimed: rows.length, idleMs: 0, done, bytes };
    } catch (error) {
      state.broken = error as Error;
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      // A client whose transaction failed may be in any state: drop it rather than reuse it.
      if (!handedOver) client.release(state.broken);
    }
  }

  /** The claim's heads, and the heads with the runs of their keys: the rows to publish. */
  async #claim(
    client: PoolClient,
  ): Promise<{ heads: OutboxRow[]; rows: OutboxRow[]; fromHead: boolean }> {
    const { heads, fromHead } = await this.#claimHeads(client);
    const rows =
      this.#retryLane || heads.length === 0
        ? heads
        : [...heads, ...(await this.#claimRuns(client, heads))];
    await this.#measureOversized(client, rows);
    return { heads, rows, fromHead };
  }

  /** The sizes of the payloads the claim left unread for being over the limit, for their reason. */
  async #measureOversized(client: PoolClient, rows: readonly OutboxRow[]): Promise<void> {
    const unread = rows.filter((r) => r.oversizeBytes !== undefined);
    if (unread.length === 0) return;
    const { rows: sizes } = await client.query<{ id: string; bytes: string }>(
      this.#ctx.queries.payloadBytes,
      [unread.map((r) => r.id)],
    );
    const bytes = new Map(sizes.map((s) => [s.id, Number(s.bytes)]));
    for (const row of unread) {
      (row as { oversizeBytes?: number }).oversizeBytes = bytes.get(row.id) ?? row.oversizeBytes;
    }
  }

  /**
   * The claim's heads: each key's oldest waiting row, and rows without a key; `fromHead` when
   * the claim read the outbox from its head (no cursor, not the retry lane).
   */
  async #claimHeads(client: PoolClient): Promise<{ heads: OutboxRow[]; fromHead: boolean }> {
    const { queries, cursor } = this.#ctx;
    const limit = this.#claimLimit;
    if (this.#retryLane) {
      const { rows } = await client.query<OutboxRow>(queries.claimRetry, [limit]);
      return { heads: claimedRows(rows), fromHead: false };
    }
    const at = cursor.position;
    const { rows } = at
      ? await client.query<OutboxRow>(queries.claimFreshAfter, [
          limit,
          at.availableAtEpoch,
          at.id,
          CURSOR_TTL_MS,
        ])
      : await client.query<OutboxRow>(queries.claimFresh, [limit]);
    const last = rows.at(-1);
    // A row available at '-infinity' (written by SQL) sorts first; as the cursor, it would fail
    // the next claims ("cannot convert infinity to bigint"). The next claim starts from the head.
    if (last?.available_at_epoch !== undefined && last.available_at_epoch !== '-Infinity') {
      cursor.claimed({ availableAtEpoch: last.available_at_epoch, id: last.id });
    }
    return { heads: claimedRows(rows), fromHead: !at };
  }

  /**
   * The rows that follow each keyed head of the batch, up to `keyRunSize` per key: `publishBatch`
   * sends each only once the one before it is confirmed. The batch may exceed `batchSize` by up
   * to `keyRunSize - 1` rows, so that a full batch of heads still moves its keys' runs.
   */
  async #claimRuns(client: PoolClient, heads: readonly OutboxRow[]): Promise<OutboxRow[]> {
    const { keyRunSize } = this.#ctx.options;
    const keyed = heads.filter((r) => r.ordering_key !== null);
    if (keyRunSize === 1 || keyed.length === 0) return [];
    // Never more rows than this claim's limit, which is small when messages are large.
    const limit = this.#claimLimit;
    const room = Math.min(limit, Math.max(limit - heads.length, keyRunSize - 1));
    const { rows } = await client.query<OutboxRow & RunRow>(this.#ctx.queries.claimRuns, [
      keyed.map((r) => r.ordering_key),
      keyed.map((r) => r.id),
      keyRunSize - 1,
      room,
    ]);
    return unbrokenRuns(claimedRows(rows));
  }

  /** Waits for the broker's answers, writes the outcomes and commits; releases the client. */
  async #settleBatch(
    client: PoolClient,
    state: { broken?: Error },
    publisher: ConfirmedPublisher,
    rows: readonly OutboxRow[],
    answers: Promise<BatchOutcomes>,
  ): Promise<void> {
    const { stats } = this.#ctx;
    try {
      const { outcomes, unanswered } = await answers;
      if (!publisher.isOpen) this.#ctx.exchanges.forget();
      // Publishes left unanswered (a timeout, a stop): their confirms may never come, and a late
      // one must not count for a row that is retried. A new channel starts clean.
      if (unanswered > 0) {
        // Not awaited: on a broker that hangs, the close waits out its bound, and nothing here
        // needs it done; a late answer on the old channel finds the batch finished.
        void this.#closePublisher(publisher);
      } else if (publisher.isOpen && publisher.wornOut && this.#publisher === publisher) {
        // Nothing but nacks for a while: the channel may be stuck on a quorum queue's old
        // leader. The next claims go on a new channel.
        this.#ctx.options.logger.warn('confirm channel nacks every publish; opening a new one', {
          nacks: NACKS_BEFORE_NEW_CHANNEL,
        });
        this.#publisher = undefined;
        // The lane's other batch may still await its answers on it: closing it now would fail
        // rows the broker is about to confirm. The last answer on it closes it.
        publisher.retire();
      }
      const settled = await this.#settle(client, rows, outcomes);
      await client.query('COMMIT');
      stats.published += settled.published;
      stats.parked += settled.parked;
      stats.retried += settled.retried;
      stats.infrastructureRetries += settled.infrastructureRetries;
      stats.deferred += settled.deferred;
      stats.released += settled.released;
      stats.batches += 1;
      // After the COMMIT, so that the lines' counts add up to `stats.retried`.
      if (settled.retried > 0) {
        this.#ctx.retriedWarning.add(settled.retried, { reason: settled.retryReason });
      }
    } catch (error) {
      state.broken = error as Error;
      // Before the ROLLBACK makes the published rows claimable again: another lane would publish
      // them at once, and fail likewise, round and round (see `holdClaims`).
      const { database, options } = this.#ctx;
      database.holdClaims(backoffDelay(options.reconnectBackoff, database.failures + 1));
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release(state.broken);
    }
  }

  async #ensurePublisher(): Promise<ConfirmedPublisher | undefined> {
    if (this.#publisher?.isOpen) return this.#publisher;
    const channel = await this.#ctx.amqp.confirmChannel(this.#ctx.stopping);
    const { publishSeconds } = this.#ctx.stats;
    this.#publisher = channel
      ? new ConfirmedPublisher(channel, (seconds) => publishSeconds.observe(seconds))
      : undefined;
    return this.#publisher;
  }

  /** Closes the lane's publisher, or `only` that one (which may have been replaced already). */
  async #closePublisher(only?: ConfirmedPublisher): Promise<void> {
    const publisher = only ?? this.#publisher;
    if (this.#publisher === publisher) this.#publisher = undefined;
    await publisher?.close();
  }

  /**
   * Outcomes known before publishing: too large, headers that are no JSON object or are over the
   * broker's frame (which would make it close the connection, for every lane, each time it is
   * tried), or bound for an exchange that cannot be published to (parked) or not now (put off).
   */
  async #prepare(rows: readonly OutboxRow[], maxHeaderBytes: number): Promise<PublishRequest[]> {
    const { options, exchanges, stopping } = this.#ctx;
    const unusable = await exchanges.unusable(
      rows.map((r) => r.exchange),
      stopping,
    );
    return rows.map((row) => {
      const bytes = row.oversizeBytes ?? row.payload.length;
      if (bytes > options.maxMessageBytes) {
        return {
          row,
          outcome: {
            kind: 'permanent',
            reason: `too large: ${bytes} bytes, limit ${options.maxMessageBytes}`,
          },
        };
      }
      // Without headers of its own a row's properties take under 2 KiB: every frame_max fits them.
      if (row.headers !== null) {
        // Spread into the message's headers, a string would go as {"0": "h", ...}: only SQL
        // can write one.
        const notObject = notAnObject(row.headers);
        if (notObject !== undefined) {
          return {
            row,
            outcome: {
              kind: 'permanent',
              reason: `headers must be a JSON object, got ${notObject}`,
            },
          };
        }
        const bytes = contentHeaderBytes(publishProperties(row));
        if (bytes > maxHeaderBytes) {
          return {
            row,
            outcome: {
              kind: 'permanent',
              reason: `headers too large: its properties take up to ${bytes} bytes, the broker's frame_max leaves ${maxHeaderBytes}`,
            },
          };
        }
      }
      const outcome = unusable.get(row.exchange);
      return outcome === undefined ? { row } : { row, outcome };
    });
  }

  /** Writes each row's outcome in the claim's transaction; the caller commits. */
  async #settle(
    client: PoolClient,
    rows: readonly OutboxRow[],
    outcomes: readonly PublishOutcome[],
  ): Promise<SettleCounts> {
    const { options, queries } = this.#ctx;
    let released = 0;
    /** Released for a closed channel or a lost connection, not for a stop. */
    let lostLink = 0;
    let lostLinkReason: string | undefined;
    let infrastructureRetries = 0;
    let deferred = 0;
    const acked: string[] = [];
    const parkIds: string[] = [];
    const parkReasons: string[] = [];
    const parkDestinations: string[] = [];
    const parkCounted: number[] = [];
    const retryIds: string[] = [];
    const retryErrors: string[] = [];
    const retryDelays: number[] = [];
    const retryCounted: number[] = [];
    const retryRejected: number[] = [];
    // `counted`: a failed try (it makes the row a retry, and its backoff grow); `rejected`: one
    // that also counts towards `retry.maxAttempts`.
    const retry = (
      row: OutboxRow,
      reason: string,
      delayMs: number,
      counted: boolean,
      rejected = false,
    ) => {
      retryIds.push(row.id);
      retryErrors.push(reason);
      retryDelays.push(delayMs);
      retryCounted.push(counted ? 1 : 0);
      retryRejected.push(rejected ? 1 : 0);
    };
    // `counted`: the failure that parks it is one of its tries, as a retry's would be: the parked
    // row's attempts count every try, nacks included; its reason counts the returns or rejections.
    const park = (row: OutboxRow, reason: string, counted = false) => {
      parkIds.push(row.id);
      parkReasons.push(reason);
      parkDestinations.push(`${row.exchange} ${row.routing_key}`);
      parkCounted.push(counted ? 1 : 0);
    };
    // A failure that counts: tried again until `retry.maxAttempts`, then parked as `parkedAs` says.
    const countAttempt = (
      row: OutboxRow,
      reason: string,
      parkedAs: (attempt: number) => string,
    ) => {
      // Only returns and rejections count: nacks and time-outs before them do not (they are
      // the broker's or the link's trouble, retried for as long as they last).
      const rejection = row.rejections + 1;
      if (rejection >= options.retry.maxAttempts) park(row, parkedAs(rejection), true);
      else retry(row, reason, backoffDelay(options.retry.backoff, row.attempts + 1), true, true);
    };
    rows.forEach((row, i) => {
      const outcome = outcomes[i]!;
      switch (outcome.kind) {
        case 'acked':
          acked.push(row.id);
          break;
        case 'permanent':
          park(row, outcome.reason);
          break;
        case 'unroutable':
          // The parked reason keeps its prefix, which `replay --reason unroutable` selects by.
          if (!options.retry.unroutable) park(row, outcome.reason);
          else countAttempt(row, outcome.reason, (n) => `${outcome.reason} (returned ${n} times)`);
          break;
        case 'rejected':
          countAttempt(row, outcome.reason, (n) => `rejected ${n} times: ${outcome.reason}`);
          break;
        case 'transient':
          // Not the message's fault: no number of these parks it, so a keyed row keeps its
          // successors waiting behind it rather than letting them overtake.
          infrastructureRetries += 1;
          retry(row, outcome.reason, backoffDelay(options.retry.backoff, row.attempts + 1), true);
          break;
        case 'deferred':
          deferred += 1;
          retry(row, outcome.reason, outcome.delayMs, false);
          break;
        case 'released':
          released += 1;
          if (outcome.reason !== undefined) {
            lostLink += 1;
            lostLinkReason ??= outcome.reason;
          }
          break;
        case 'held':
          // Behind a row of its key that failed in this batch: untouched, it waits for that one.
          break;
      }
    });
    if (acked.length > 0) await client.query(queries.deleteIds, [acked]);
    if (parkIds.length > 0) await client.query(queries.park, [parkIds, parkReasons, parkCounted]);
    if (retryIds.length > 0) {
      await client.query(queries.scheduleRetry, [
        retryIds,
        retryErrors,
        retryDelays,
        retryCounted,
        retryRejected,
      ]);
    }
    if (parkIds.length > 0) {
      options.logger.warn('outbox rows parked', parkedLogContext(parkReasons, parkDestinations));
    }
    if (lostLink > 0) {
      options.logger.warn('broker connection lost; unconfirmed rows go back untouched', {
        count: lostLink,
        reason: lostLinkReason,
      });
    }
    if (deferred > 0) {
      // The registry warned once per exchange, with the fix; this repeats every few seconds.
      options.logger.debug(
        'outbox rows put off: their exchange does not exist, or could not be checked',
        {
          count: deferred,
          reason: retryErrors.find((_, i) => retryCounted[i] === 0),
        },
      );
    }
    return {
      published: acked.length,
      parked: parkIds.length,
      retried: retryIds.length - deferred,
      retryReason: retryErrors.find((_, i) => retryCounted[i] === 1),
      infrastructureRetries,
      deferred,
      released,
    };
  }
}

type SettleCounts = Pick<
  RelayStats,
  'published' | 'parked' | 'retried' | 'infrastructureRetries' | 'deferred' | 'released'
> & {
  /** The first counted retry's reason, for the log. */
  readonly retryReason: string | undefined;
};

/** What JSON value `headers` is when it is not an object, as in "a JSON string", or undefined. */
function notAnObject(headers: unknown): string | undefined {
  if (Array.isArray(headers)) return 'a JSON array';
  return typeof headers === 'object' ? undefined : `a JSON ${typeof headers}`;
}

function sum(values: readonly number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

/**
 * Every metric outboxkit reports, once: its Prometheus name, type, labels and help, and the name
 * and unit it has as an OpenTelemetry instrument. `collectMetrics`, the prom-client collector,
 * the OpenTelemetry instruments, docs/observability.md and the shipped dashboard all read this
 * list, so a metric cannot be renamed in one of them only.
 */
export interface MetricDefinition {
  /** The Prometheus metric name (a histogram's family name, without `_bucket`). */
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly help: string;
  /** Label names, besides a histogram's `le`. */
  readonly labels: readonly string[];
  /** Which source reports it: the relay, the consumer host, or the outbox tables (`pool`). */
  readonly source: 'relay' | 'consumers' | 'outbox';
  /**
   * The OpenTelemetry instrument name: the Prometheus name with a dot after the component and
   * counters without `_total`, which a Prometheus exporter turns back into `name`.
   */
  readonly otelName: string;
  /** UCUM unit for OpenTelemetry: `s`, or an annotation such as `{message}`. */
  readonly unit: string;
}

function metric(
  source: MetricDefinition['source'],
  type: MetricDefinition['type'],
  name: string,
  unit: string,
  labels: readonly string[],
  help: string,
): MetricDefinition {
  // Prometheus exporters put `_total` back on counters, turn dots into underscores and drop
  // annotation units such as {message}; some append the unit's suffix (`_seconds`) unless the
  // name ends with it. So the name keeps its Prometheus suffixes, and comes back out unchanged.
  const otelName = name
    .replace(/_total$/, '')
    .replace(/^outboxkit_(relay|consumer|outbox)_/, 'outboxkit.$1.');
  return Object.freeze({
    name,
    type,
    help,
    labels: Object.freeze([...labels]),
    source,
    otelName,
    unit,
  });
}

const MESSAGE = '{message}';

/** The relay's metrics, all of this process's relay. */
export const RELAY_METRICS = Object.freeze({
  published: metric(
    'relay',
    'counter',
    'outboxkit_relay_published_total',
    MESSAGE,
    [],
    'Outbox rows confirmed by the broker and deleted.',
  ),
  retried: metric(
    'relay',
    'counter',
    'outboxkit_relay_retried_total',
    MESSAGE,
    [],
    'Outbox rows scheduled for another publish attempt.',
  ),
  infrastructureRetries: metric(
    'relay',
    'counter',
    'outboxkit_relay_infrastructure_retries_total',
    MESSAGE,
    [],
    'Of the retries, rows that failed for the broker or the network (nack, no confirm, closed channel); never parked.',
  ),
  deferred: metric(
    'relay',
    'counter',
    'outboxkit_relay_deferred_total',
    '{deferral}',
    [],
    'Times an outbox row was put off because its exchange does not exist (each time it is tried again counts); no attempt counted.',
  ),
  parked: metric(
    'relay',
    'counter',
    'outboxkit_relay_parked_total',
    MESSAGE,
    [],
    'Outbox rows this relay moved to the parked table.',
  ),
  released: metric(
    'relay',
    'counter',
    'outboxkit_relay_released_total',
    MESSAGE,
    [],
    'Outbox rows released untouched, no attempt counted: the relay stopped, or its broker connection went down under them.',
  ),
  batches: metric(
    'relay',
    'counter',
    'outboxkit_relay_batches_total',
    '{batch}',
    [],
    'Claim-publish-settle cycles run.',
  ),
  errors: metric(
    'relay',
    'counter',
    'outboxkit_relay_errors_total',
    '{error}',
    [],
    'Database or broker errors that made a lane back off.',
  ),
  connected: metric(
    'relay',
    'gauge',
    'outboxkit_relay_connected',
    '{connection}',
    [],
    '1 while the relay can publish (connected to RabbitMQ, no resource alarm), 0 while it reconnects or is blocked.',
  ),
  publishSeconds: metric(
    'relay',
    'histogram',
    'outboxkit_relay_publish_seconds',
    's',
    [],
    'Time from publishing a message to the broker confirming (or returning) it.',
  ),
});

/** The consumer host's metrics, labelled by consumer. */
export const CONSUMER_METRICS = Object.freeze({
  received: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_received_total',
    MESSAGE,
    ['consumer'],
    'Deliveries received, redeliveries included.',
  ),
  handled: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_handled_total',
    MESSAGE,
    ['consumer'],
    'Messages whose handler committed.',
  ),
  duplicates: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_duplicates_total',
    MESSAGE,
    ['consumer'],
    'Messages acked without running the handler: already processed.',
  ),
  failures: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_failures_total',
    '{attempt}',
    ['consumer'],
    'Handler attempts that failed, time-outs included.',
  ),
  timeouts: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_timeouts_total',
    '{attempt}',
    ['consumer'],
    'Handler attempts that timed out.',
  ),
  retried: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_retried_total',
    MESSAGE,
    ['consumer'],
    'Failed messages scheduled for another attempt.',
  ),
  deadLettered: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_dead_lettered_total',
    MESSAGE,
    ['consumer'],
    'Messages moved to the dead-letter queue.',
  ),
  requeued: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_requeued_total',
    MESSAGE,
    ['consumer'],
    'Deliveries handed back to the queue unhandled.',
  ),
  databaseRetries: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_database_retries_total',
    '{retry}',
    ['consumer'],
    'Retries in place of transactions Postgres was unavailable to (each retry counts, not each transaction); no attempt counted.',
  ),
  databaseRequeues: metric(
    'consumers',
    'counter',
    'outboxkit_consumer_database_requeues_total',
    MESSAGE,
    ['consumer'],
    'Deliveries handed back to the broker after databaseRetryLimitMs of database retries.',
  ),
  handlerSeconds: metric(
    'consumers',
    'histogram',
    'outboxkit_consumer_handler_seconds',
    's',
    ['consumer'],
    'Run time of handler attempts, failed and timed-out ones included.',
  ),
  waitingForDatabase: metric(
    'consumers',
    'gauge',
    'outboxkit_consumer_transactions_waiting_for_database',
    '{transaction}',
    ['consumer'],
    'Transactions now retried in place because Postgres is unavailable to them.',
  ),
  connected: metric(
    'consumers',
    'gauge',
    'outboxkit_consumer_connected',
    '{connection}',
    [],
    '1 while the consumer host is connected to RabbitMQ, 0 while it reconnects.',
  ),
  inFlight: metric(
    'consumers',
    'gauge',
    'outboxkit_consumer_in_flight_messages',
    MESSAGE,
    [],
    'Deliveries received and not yet settled, over all consumers of the host.',
  ),
});

/** The outbox tables' gauges, read with one statement per collection. */
export const OUTBOX_METRICS = Object.freeze({
  pending: metric(
    'outbox',
    'gauge',
    'outboxkit_outbox_pending_messages',
    MESSAGE,
    ['exchange'],
    'Outbox rows not yet published.',
  ),
  scheduled: metric(
    'outbox',
    'gauge',
    'outboxkit_outbox_scheduled_messages',
    MESSAGE,
    ['exchange'],
    'Pending rows delayed (delayMs) whose time has not come: counted in pending, not a backlog.',
  ),
  retrying: metric(
    'outbox',
    'gauge',
    'outboxkit_outbox_retrying_messages',
    MESSAGE,
    ['exchange'],
    'Pending rows waiting for another attempt.',
  ),
  parked: metric(
    'outbox',
    'gauge',
    'outboxkit_outbox_parked_messages',
    MESSAGE,
    ['exchange'],
    'Rows in the parked table: not published without a replay.',
  ),
  oldestPendingAge: metric(
    'outbox',
    'gauge',
    'outboxkit_outbox_oldest_pending_age_seconds',
    's',
    [],
    'Age of the oldest due outbox row; 0 when nothing is due.',
  ),
});

/** All of them, in the order `collectMetrics` reports them. */
export const OUTBOXKIT_METRICS: readonly MetricDefinition[] = Object.freeze([
  ...Object.values(RELAY_METRICS),
  ...Object.values(CONSUMER_METRICS),
  ...Object.values(OUTBOX_METRICS),
]);

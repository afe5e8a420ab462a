import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exampleConfig } from '../examples/order-flow/example-config.js';
import { orderScript } from '../examples/order-flow/load-generator.js';
import { runExample } from '../examples/order-flow/run-example.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';

const ROOT = join(fileURLToPath(import.meta.url), '../../..');

describe('nestjs: the example application', () => {
  it('runs the order flow end to end over HTTP, with the expected counts', async () => {
    const orders = 40;
    const expected = { discontinued: 0, gizmos: 0, cancelled: 0, announced: 0 };
    for (let i = 0; i < orders; i += 1) {
      const o = orderScript(i);
      if (o.sku === 'discontinued') expected.discontinued += 1;
      if (o.sku === 'gizmo') expected.gizmos += 1;
      if (o.cancel) expected.cancelled += 1;
      if (o.announce) expected.announced += 1;
    }
    // The mix must show each behaviour, or the run proves nothing about it.
    assert.ok(
      Object.values(expected).every((n) => n > 0),
      JSON.stringify(expected),
    );

    const config = exampleConfig({ DATABASE_URL, AMQP_URL });
    const s = await runExample(config, { orders, concurrency: 4, drainTimeoutMs: 30_000 });

    assert.deepEqual(
      s.checks.filter((c) => !c.ok),
      [],
    );
    const open = orders - expected.discontinued;
    assert.deepEqual(s.ledger, { placed: orders, ...expected });
    assert.equal(s.ordersInDatabase, orders);
    assert.equal(s.reservations, open);
    assert.equal(s.confirmations, open);
    assert.equal(s.releases, expected.cancelled);
    assert.equal(s.doubleEffects, 0);
    assert.equal(s.orderingViolations, 0);
    assert.equal(s.duplicates, expected.announced);
    assert.equal(s.deadLetters.inQueue, expected.discontinued);
    assert.equal(s.retries, expected.gizmos);
    // order.placed (announced ones twice), order.cancelled, and one stock.reserved per open order.
    assert.equal(s.relayed, orders + expected.announced + expected.cancelled + open);
    assert.equal(s.handled.inventory, open + expected.cancelled);
    assert.equal(s.latencyMs.count, orders);

    // One scrape of the app's own GET /metrics: outboxkit's families in the app's registry,
    // beside prom-client's default metrics, with the counts of the run.
    const relayed = s.relayed;
    assert.equal(s.metrics.published, relayed);
    assert.ok(s.metrics.families.outboxkit > 20, JSON.stringify(s.metrics.families));
    assert.ok(s.metrics.families.other > 0, JSON.stringify(s.metrics.families));
    assert.match(s.metrics.text, /^process_cpu_user_seconds_total /m);
    const series = (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(s.metrics.text)?.[1]);
    const inventory = `{consumer="${config.prefix}inventory.orders"}`;
    assert.equal(series('outboxkit_relay_publish_seconds_count'), relayed);
    assert.equal(series(`outboxkit_consumer_handled_total${inventory}`), s.handled.inventory);
    assert.equal(series(`outboxkit_consumer_duplicates_total${inventory}`), expected.announced);
    assert.equal(
      series(`outboxkit_consumer_dead_lettered_total${inventory}`),
      expected.discontinued,
    );
    assert.ok(s.metrics.shown.some((line) => line.startsWith('outboxkit_relay_published_total ')));
    // Every metric the shipped dashboard queries is in the example's scrape.
    const dashboard = readFileSync(join(ROOT, 'ops/grafana/outboxkit.json'), 'utf8');
    JSON.parse(dashboard);
    for (const m of dashboard.matchAll(/\boutboxkit_[a-z_]+/g)) {
      const family = m[0].replace(/_(bucket|sum|count)$/, '');
      assert.match(s.metrics.text, new RegExp(`^# TYPE ${family} `, 'm'), family);
    }

    // One order's trace: request → its transaction → the relay's publish → the inventory's
    // process span → its handler → (stock.reserved) publish → process → the confirmation.
    assert.deepEqual(
      s.trace.spans.map((span) => [span.depth, span.kind, span.name]),
      [
        [0, 'SERVER', 'POST /orders'],
        [1, 'INTERNAL', 'write order + outbox message'],
        [2, 'PRODUCER', `publish ${config.prefix}orders`],
        [3, 'CONSUMER', `process ${config.prefix}inventory.orders`],
        [4, 'INTERNAL', 'reserve stock'],
        [5, 'PRODUCER', `publish ${config.prefix}inventory`],
        [6, 'CONSUMER', `process ${config.prefix}orders.stock-reserved`],
        [7, 'INTERNAL', 'confirm order'],
      ],
    );
    for (let i = 1; i < s.trace.spans.length; i += 1) {
      assert.equal(s.trace.spans[i]!.parentSpanId, s.trace.spans[i - 1]!.spanId);
    }
    assert.equal(s.trace.spans[0]!.parentSpanId, undefined);
    assert.equal(s.trace.spans[0]!.attributes['order.id'], s.trace.orderId);
    assert.equal(s.trace.spans[2]!.attributes['messaging.system'], 'rabbitmq');
    assert.ok(typeof s.trace.spans[2]!.attributes['outboxkit.outbox.wait.duration'] === 'number');
  });
});

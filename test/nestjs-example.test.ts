import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exampleConfig } from '../examples/order-flow/example-config.js';
import { orderScript } from '../examples/order-flow/load-generator.js';
import { runExample } from '../examples/order-flow/run-example.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';

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
  });
});

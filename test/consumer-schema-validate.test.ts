import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { type } from 'arktype';
import * as v from 'valibot';
import { z } from 'zod';
import { type ConsumerDefinition, defineConsumer } from '../src/consumer/consumer-definition.js';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { defineMessage, type MessageDefinition } from '../src/nestjs/index.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

const Payment = z.object({
  amount: z.number().positive(),
  currency: z.string().default('EUR'),
});

const LIMITS = { brokerConsumerTimeoutMs: 30 * 60_000 };

describe('idempotent consumer: a schema as validate', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cschema');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  /** Runs one consumer on `routingKey` until `handled` and `dead` are reached. */
  async function run<P>(
    suffix: string,
    validate: NonNullable<Parameters<typeof f.definition<P>>[2]>['validate'],
    messages: ReadonlyArray<{ id: string; body: object }>,
    expected: { handled: number; dead: number },
  ) {
    const name = f.name(suffix);
    const seen: unknown[] = [];
    const def = f.definition<P>(
      suffix,
      async (payload, ctx) => {
        seen.push(payload);
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: [suffix], concurrency: 1, validate },
    );
    const host = await f.host([def]);
    for (const m of messages) await f.publish(suffix, m.body, { messageId: m.id });
    await waitFor(
      `${expected.handled} handled, ${expected.dead} dead-lettered`,
      () =>
        host.stats(name).handled === expected.handled &&
        host.stats(name).deadLettered === expected.dead,
    );
    const dead = await waitFor('the dead letters', async () => {
      const depth = await f.depth(deadLetterQueueName(name));
      return depth === expected.dead ? f.drain(deadLetterQueueName(name)) : undefined;
    });
    const header = (id: string, h: string) =>
      dead.find((m) => m.properties.messageId === id)?.properties.headers?.[h];
    return { seen, header, stats: host.stats(name) };
  }

  it('a zod schema: the handler gets its output, an invalid payload is dead-lettered with its issues', async () => {
    const { seen, header, stats } = await run(
      'zod',
      Payment,
      [
        { id: 'ok', body: { amount: 5 } },
        { id: 'negative', body: { amount: -1, currency: 'USD' } },
        { id: 'wrong', body: { amount: 'five', currency: 7 } },
      ],
      { handled: 1, dead: 2 },
    );
    // The default was filled in: the handler got the schema's output, not the raw JSON.
    assert.deepEqual(seen, [{ amount: 5, currency: 'EUR' }]);
    assert.equal(stats.failures, 0);
    for (const id of ['negative', 'wrong']) {
      assert.equal(header(id, OUTBOXKIT_HEADERS.reason), 'validation-failed');
      assert.equal(header(id, OUTBOXKIT_HEADERS.attempts), 0);
    }
    assert.match(String(header('negative', OUTBOXKIT_HEADERS.error)), /^zod schema: amount: /);
    assert.equal(header('negative', OUTBOXKIT_HEADERS.errorName), 'PayloadSchemaError');
    // Every issue, each with its path.
    assert.match(
      String(header('wrong', OUTBOXKIT_HEADERS.error)),
      /^zod schema: amount: [^;]+; currency: /,
    );
  });

  it('a valibot schema with an asynchronous check (its validate returns a promise)', async () => {
    const Known = v.pipeAsync(
      v.object({ sku: v.string() }),
      v.checkAsync(async (item) => item.sku.startsWith('SKU-'), 'unknown sku'),
    );
    const { seen, header } = await run(
      'valibot',
      Known,
      [
        { id: 'known', body: { sku: 'SKU-1' } },
        { id: 'unknown', body: { sku: 'X-2' } },
        { id: 'missing', body: {} },
      ],
      { handled: 1, dead: 2 },
    );
    assert.deepEqual(seen, [{ sku: 'SKU-1' }]);
    assert.equal(header('unknown', OUTBOXKIT_HEADERS.error), 'valibot schema: unknown sku');
    assert.match(String(header('missing', OUTBOXKIT_HEADERS.error)), /^valibot schema: sku: /);
  });

  it('an ArkType schema, which is also a function: used as a schema, never called', async () => {
    const Item = type({ sku: 'string', qty: 'number.integer = 1' });
    const { seen, header } = await run(
      'arktype',
      Item,
      [
        { id: 'ok', body: { sku: 'SKU-1' } },
        { id: 'fraction', body: { sku: 'SKU-2', qty: 2.5 } },
      ],
      { handled: 1, dead: 1 },
    );
    assert.deepEqual(seen, [{ sku: 'SKU-1', qty: 1 }]);
    assert.match(String(header('fraction', OUTBOXKIT_HEADERS.error)), /^arktype schema: qty: /);
  });

  it('takes the payload type from the schema, and refuses a validate that is neither a function nor a schema', () => {
    const def = defineConsumer({
      name: 'typed',
      exchange: 'payments',
      validate: Payment,
      async handler(payment) {
        const currency: string = payment.currency;
        // @ts-expect-error the schema's output has no `note`
        payment.note;
        assert.ok(currency);
      },
    });
    assert.equal(def.validate, Payment);
    // ArkType's schema is also a function returning the payload or its errors: the payload
    // type is the schema's output, without the errors.
    const Item = type({ sku: 'string', qty: 'number.integer = 1' });
    const item = defineConsumer({
      name: 'typed-item',
      exchange: 'items',
      validate: Item,
      businessKey: (i) => i.sku,
      async handler(i) {
        const qty: number = i.qty;
        assert.ok(qty);
      },
    });
    const exact: ConsumerDefinition<{ sku: string; qty: number }> = item;
    assert.ok(exact);
    const ItemCounted = defineMessage({
      exchange: 'items',
      routingKey: 'item.counted',
      validate: Item,
      orderingKey: (i) => i.sku,
    });
    // The writer takes the schema's input: `qty` has a default, so it may be left out.
    const message: MessageDefinition<
      { sku: string; qty: number },
      { sku: string; qty?: number | undefined }
    > = ItemCounted;
    assert.equal(message.validate, Item);
    assert.equal(resolveConsumer(def, LIMITS).definition.validate, Payment);

    for (const validate of [{ parse: (p: unknown) => p }, 'Payment', { '~standard': {} }]) {
      assert.throws(
        () =>
          resolveConsumer(
            {
              name: 'typed',
              exchange: 'payments',
              validate: validate as never,
              handler: async () => {},
            },
            LIMITS,
          ),
        (error: unknown) => {
          assert.ok(error instanceof ConfigurationError, String(error));
          assert.equal(error.option, 'consumers[typed].validate');
          assert.match(error.message, /must be a function or a Standard Schema/);
          return true;
        },
      );
    }
  });
});

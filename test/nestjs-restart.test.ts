import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Inject, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { sql } from 'kysely';
import {
  type ConsumeContext,
  defineMessage,
  OutboxHandler,
  OutboxModule,
  type OutboxModuleOptions,
  OutboxService,
} from '../src/nestjs/index.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { waitFor, within } from './support/wait-for.js';

const EFFECTS = Symbol('effects table');
/** Lets a test hold one handler call open. */
const GATE = Symbol('gate');

interface Gate {
  /** Message numbers whose handler waits for `open`. */
  readonly held: Set<number>;
  readonly entered: Promise<void>;
  enter(): void;
  readonly open: Promise<void>;
}

function gate(held: number[] = []): Gate & { release(): void } {
  let enter!: () => void;
  let release!: () => void;
  const entered = new Promise<void>((resolve) => {
    enter = resolve;
  });
  const open = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { held: new Set(held), entered, enter, open, release };
}

interface Item {
  n: number;
}
const Item = defineMessage<Item>({ exchange: 'items', routingKey: 'item' });

/** One effect row per handler commit, in a table without a unique constraint. */
@Injectable()
class ItemHandler {
  constructor(
    @Inject(EFFECTS) private readonly effects: string,
    @Inject(GATE) private readonly gate: Gate,
  ) {}

  @OutboxHandler(Item, {
    name: 'restart.items',
    queueType: 'classic',
    concurrency: 2,
    businessKey: (item) => `${item.n}`,
  })
  async handle(item: Item, ctx: ConsumeContext): Promise<void> {
    if (this.gate.held.has(item.n)) {
      this.gate.enter();
      await this.gate.open;
    }
    // A little work inside the transaction, so a close finds handlers running.
    await sql`SELECT pg_sleep(0.003)`.execute(ctx.trx);
    await ctx.trx
      .insertInto(this.effects)
      .values({ n: item.n, message_id: ctx.messageId, redelivered: ctx.redelivered })
      .execute();
  }
}

describe('nestjs: closing and starting the application again', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('nrestart');
    await f.t.pool.query(`CREATE TABLE "${f.t.schema}".effects (
      id bigserial PRIMARY KEY, n int NOT NULL, message_id text, redelivered boolean NOT NULL)`);
  });
  after(() => f.close());

  const counts = async () => {
    const [row] = await f.query<{ total: number; distinct: number }>(
      `SELECT count(*)::int AS total, count(DISTINCT n)::int AS distinct FROM "${f.t.schema}".effects`,
    );
    return row!;
  };

  async function worker(held: Gate, options: Partial<OutboxModuleOptions> = {}) {
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRoot(f.options(options))],
      providers: [
        ItemHandler,
        { provide: EFFECTS, useValue: `${f.t.schema}.effects` },
        { provide: GATE, useValue: held },
      ],
    }).compile();
    return f.init(moduleRef);
  }

  it('mid-stream: loses nothing and handles nothing twice', async () => {
    const total = 150;
    // The messages come from an API-only instance that keeps writing across the restart.
    const api = await f.init(
      await Test.createTestingModule({
        imports: [OutboxModule.forRoot(f.options({ relay: false, consumers: false }))],
      }).compile(),
    );
    const writer = api.get(OutboxService);
    const first = await worker(gate());
    let written = 0;
    const writing = (async () => {
      while (written < total) {
        const batch = Array.from({ length: 3 }, (_, i) => ({ n: written + i }));
        await f.t.db.transaction().execute((trx) => writer.addMany(trx, Item, batch));
        written += batch.length;
      }
    })();

    await waitFor('some handled', async () => (await counts()).total >= 30);
    await f.closeApp(first);
    const atClose = (await counts()).total;
    await writing;
    // At rest every message is in exactly one place: handled, in the outbox, or in the queue.
    const inOutbox = await f.t.count('outbox');
    const inQueue = (await f.depth(f.name('restart.items'))) ?? 0;
    assert.ok(atClose < total, 'the close interrupted the stream');
    assert.ok(inOutbox + inQueue > 0, 'messages were waiting when the first worker stopped');
    assert.equal((await counts()).total + inOutbox + inQueue, total);

    const second = await worker(gate());
    await waitFor('all handled', async () => (await counts()).total >= total);
    await waitFor('outbox empty', async () => (await f.t.count('outbox')) === 0);
    const end = await counts();
    assert.deepEqual(end, { total, distinct: total });
    const stats = (app: typeof first) =>
      app.get(OutboxService).consumerHost!.stats(f.name('restart.items'));
    assert.ok(stats(second).handled > 0, 'the second worker took over');
    assert.equal(stats(first).handled + stats(second).handled, total);
    await f.closeApp(second);
    await f.closeApp(api);
  });

  it('a handler still running at the stop deadline is rolled back; its redelivery is handled once', async () => {
    const n = 10_000;
    const held = gate([n]);
    const first = await worker(held, {
      consumers: { ...(f.options().consumers as object), stopTimeoutMs: 100 },
    });
    const outbox = first.get(OutboxService);
    await f.t.db.transaction().execute((trx) => outbox.add(trx, Item, { n }));
    await within('the held handler entered', held.entered);
    // The host gives up after 100 ms: it rolls the handler's transaction back, and the
    // unacked delivery goes back with the channel.
    await within('the first application closed', f.closeApp(first));
    await waitFor('requeued', async () => (await f.depth(f.name('restart.items'))) === 1);
    // Only now does the handler go on: its statements are refused, nothing of it commits.
    held.release();
    const effectOf = async () =>
      f.query<{ redelivered: boolean }>(
        `SELECT redelivered FROM "${f.t.schema}".effects WHERE n = $1`,
        [n],
      );

    const second = await within('the second application started', worker(gate()));
    const host = second.get(OutboxService).consumerHost!;
    await waitFor(
      'the redelivery handled',
      () => host.stats(f.name('restart.items')).handled === 1,
    );
    assert.equal(host.stats(f.name('restart.items')).redelivered, 1);
    assert.equal(host.stats(f.name('restart.items')).duplicates, 0);
    assert.deepEqual(await effectOf(), [{ redelivered: true }]);
    await within('the second application closed', f.closeApp(second));
  });
});

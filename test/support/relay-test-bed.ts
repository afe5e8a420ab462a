import { after, afterEach, before } from 'node:test';
import type { OutboxRelay } from '../../src/relay/outbox-relay.js';
import type { RelayOptions } from '../../src/relay/relay-options.js';
import { testRelay } from './relay-fixture.js';
import { TestBroker } from './test-broker.js';
import { type TestDatabase, testDatabase } from './test-database.js';

/** What a relay test works with: its schema, its broker, and a way to start relays on them. */
export interface RelayTestBed {
  readonly t: TestDatabase;
  readonly broker: TestBroker;
  /** Starts a relay (`testRelay`'s quick settings); it is stopped after the test. */
  start(options?: Partial<RelayOptions>): Promise<OutboxRelay>;
}

/**
 * Registers the hooks of a relay test suite in the calling `describe`: a test schema named after
 * `name` and a broker opened before its tests, the relays each test started stopped and the
 * outbox emptied after it, both closed after the last.
 */
export function relayTestBed(name: string): RelayTestBed {
  let t: TestDatabase | undefined;
  let broker: TestBroker | undefined;
  let relays: OutboxRelay[] = [];
  before(async () => {
    t = await testDatabase(name);
    broker = await TestBroker.open();
  });
  afterEach(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    relays = [];
    const schema = bed.t.schema;
    await bed.t.pool.query(`TRUNCATE "${schema}".outbox, "${schema}".outbox_parked`);
  });
  after(async () => {
    await broker?.close();
    await t?.close();
  });
  const bed: RelayTestBed = {
    get t() {
      if (!t) throw new Error('the relay test bed is used before its before() hook ran');
      return t;
    },
    get broker() {
      if (!broker) throw new Error('the relay test bed is used before its before() hook ran');
      return broker;
    },
    async start(options = {}) {
      const relay = testRelay(bed.t, options);
      relays.push(relay);
      await relay.start();
      return relay;
    },
  };
  return bed;
}

/**
 * Benchmark 8's producer stage: `producers` connections, each committing business transactions
 * (an order row and one 1 KiB outbox message) as fast as it can until `count` are committed.
 * Records each message's commit time; sends them when asked, after the measured window.
 */
import { OutboxWriter } from '../../src/writer/outbox-writer.js';
import { newPool } from './bench-services.js';
import {
  E2E_APPLICATION_NAME,
  failStage,
  type ParentMessage,
  sendToParent,
  stageSettings,
  wallClockMs,
} from './e2e-protocol.js';

const { schema, exchange, count, producers, base, preparedStatements } = stageSettings();
const pool = newPool(producers, `${E2E_APPLICATION_NAME}-producer`);
const writer = new OutboxWriter({ schema, preparedStatements });
const committed = new Float64Array(count);
const pad = 'x'.repeat(1000);
const insertOrder = `INSERT INTO "${schema}".orders (n) VALUES ($1)`;
let startedAt = 0;

async function produce(): Promise<void> {
  startedAt = wallClockMs();
  let next = 0;
  await Promise.all(
    Array.from({ length: producers }, async () => {
      const client = await pool.connect();
      try {
        while (next < count) {
          const i = next;
          next += 1;
          const n = base + i;
          await client.query('BEGIN');
          await client.query(insertOrder, [n]);
          await writer.add(client, { exchange, routingKey: 'order.placed', payload: { n, pad } });
          await client.query('COMMIT');
          committed[i] = wallClockMs();
        }
      } finally {
        client.release();
      }
    }),
  );
}

process.on('message', (m: ParentMessage) => {
  if (m.type === 'go') {
    produce().then(() => sendToParent({ type: 'done' }), failStage);
  } else if (m.type === 'send-times') {
    sendToParent({ type: 'times', startedAt, times: Array.from(committed) });
  } else if (m.type === 'stop') {
    pool.end().then(() => process.exit(0), failStage);
  }
});

try {
  // Open every connection before the measured window.
  const clients = await Promise.all(Array.from({ length: producers }, () => pool.connect()));
  for (const client of clients) client.release();
  sendToParent({ type: 'ready' });
} catch (error) {
  failStage(error);
}

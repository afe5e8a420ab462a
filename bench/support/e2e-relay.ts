/** Benchmark 8's relay stage: one OutboxRelay at its defaults, on a pool of its own. */
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import { silentLogger } from '../../src/util/logger.js';
import { AMQP_URL, newPool, sleep } from './bench-services.js';
import { failStage, type ParentMessage, sendToParent, stageSettings } from './e2e-protocol.js';

const { schema } = stageSettings();
const pool = newPool(8);
const relay = new OutboxRelay({ pool, amqpUrl: AMQP_URL, schema, logger: silentLogger });

process.on('message', (m: ParentMessage) => {
  if (m.type === 'stop') {
    relay
      .stop()
      .then(() => pool.end())
      .then(() => process.exit(0), failStage);
  }
});

try {
  await relay.start();
  while (!relay.isConnected) await sleep(5);
  sendToParent({ type: 'ready' });
} catch (error) {
  failStage(error);
}

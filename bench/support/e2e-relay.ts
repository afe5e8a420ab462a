/**
 * Benchmark 8's relay stage: one OutboxRelay at its defaults, its pool too (the size it needs
 * for its lanes); the URL names the connections so the parent can find their backends.
 */
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import { silentLogger } from '../../src/util/logger.js';
import { AMQP_URL, DATABASE_URL, sleep } from './bench-services.js';
import {
  E2E_APPLICATION_NAME,
  failStage,
  type ParentMessage,
  sendToParent,
  stageSettings,
} from './e2e-protocol.js';

const { schema } = stageSettings();
const databaseUrl = new URL(DATABASE_URL);
// The URL's parameters win over the relay's own application_name.
databaseUrl.searchParams.set('application_name', `${E2E_APPLICATION_NAME}-relay`);
const relay = new OutboxRelay({
  databaseUrl: databaseUrl.href,
  amqpUrl: AMQP_URL,
  schema,
  logger: silentLogger,
});

process.on('message', (m: ParentMessage) => {
  if (m.type === 'stop') relay.stop().then(() => process.exit(0), failStage);
});

try {
  await relay.start();
  while (!relay.isConnected) await sleep(5);
  sendToParent({ type: 'ready' });
} catch (error) {
  failStage(error);
}

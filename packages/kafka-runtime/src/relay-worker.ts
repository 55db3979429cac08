/**
 * The body of a relay thread (relay-thread.ts): an `OutboxRelay` on a pool, a Kafka client and a
 * codec of its own, built from the plain settings its parent passed. It reports its metrics to the
 * parent, waits for the parent at each hook point, and ends when the parent says stop.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Codec, createRegistry, topicNames } from '@shoal/contracts';
import { createPool } from '@shoal/db';
import { createLogger } from '@shoal/observability';
import { Kafka, logLevel } from 'kafkajs';
import { OutboxRelay, type RelayHook } from './relay.js';
import type { FromRelayThread, RelayThreadSettings, ToRelayThread } from './relay-thread.js';

if (isMainThread || !parentPort) throw new Error('relay-worker.ts runs only as a relay thread');
const port = parentPort;
const settings = workerData as RelayThreadSettings;
const send = (message: FromRelayThread) => port.postMessage(message);

const pool = createPool(settings.databaseUrl, {
  applicationName: `${settings.name}-relay`,
  max: 2,
  schema: settings.schema,
});
const registry = createRegistry(settings.registry.url, settings.registry.auth);
const waiting = new Map<number, () => void>();
let hooks = 0;
const relay = new OutboxRelay({
  pool,
  kafka: new Kafka({ ...settings.kafka, logLevel: logLevel.WARN }),
  codec: new Codec(registry, topicNames(settings.topicNamespace)),
  logger: createLogger(settings.name, settings.logLevel),
  ...(settings.batchSize === undefined ? {} : { batchSize: settings.batchSize }),
  ...(settings.pollMs === undefined ? {} : { pollMs: settings.pollMs }),
  // the parent runs the hook (a kill test's SIGKILL) and answers; the round goes on after that
  ...(settings.hooked && {
    hook: (point: RelayHook) =>
      new Promise<void>((resolve) => {
        const id = ++hooks;
        waiting.set(id, resolve);
        send({ type: 'hook', point, id });
      }),
  }),
  metrics: {
    backlog: (events) => send({ type: 'metric', metric: 'backlog', events }),
    published: (topic, events) => send({ type: 'metric', metric: 'published', topic, events }),
    failed: (topic, errorClass) => send({ type: 'metric', metric: 'failed', topic, errorClass }),
  },
});

port.on('message', (message: ToRelayThread) => {
  if (message.type === 'notify') relay.notify();
  else if (message.type === 'hooked') {
    waiting.get(message.id)?.();
    waiting.delete(message.id);
  } else
    void relay
      .stop()
      .then(() => pool.end())
      // kafkajs may keep timers alive after disconnect: the thread ends here, not the process
      .finally(() => process.exit(0));
});

// a start that fails (the broker unreachable) throws here: the parent hears it as the thread's error
await relay.start();
send({ type: 'started' });

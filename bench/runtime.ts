/**
 * bench/runtime: messages/s through the consumer runtime (the counter service: decode, ledger,
 * batched lookup, one upsert per batch, outbox, offsets — exactly-once on) with a deployed service's
 * defaults (batches of 2,000, 3 partitions at once) and with batches of 1, 100 and 1000 one partition
 * at a time, its relay in a thread of its own as `runService` runs it (and the defaults once more with
 * the relay on the consumer's thread, for comparison), beside the in-run ceiling over the same topic (./ceiling.ts: consume, decode/validate, one
 * batched upsert per batch) and a plain kafkajs eachBatch loop that only counts (the former ceiling).
 *
 *   npm run bench:runtime -- [--messages 50000] [--batch1-messages 3000]
 */
import { formatTable, parseCli } from '@shoal/config/cli';
import { SERVICE_DEFAULTS } from '@shoal/kafka-runtime';
import { isolatedDatabase, isolatedTopics, kafka, uniqueName } from '@shoal/testing';
import os from 'node:os';
import {
  codecFor,
  counterRelayThread,
  encodeAll,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  startCounter,
  totalCount,
  unpublished,
  waitFor,
} from '../packages/kafka-runtime/test/support.js';
import { ceiling } from './ceiling.js';

const usage = `Usage: npm run bench:runtime -- [--messages N] [--batch1-messages M]

Publishes N occurrences (default 50000) to a 6-partition topic, then measures messages/s for the
ceiling (a plain kafkajs consumer that decodes/validates each message and writes one batched upsert
per batch), a plain consume loop that only counts, and the runtime's counter service with a deployed
service's defaults (batches of 2,000, 3 partitions at once) and with batches of 100 and 1000 over all
N, and of 1 over the first M (default 3000; one transaction per message is slow), one partition at a
time; the relay runs in a thread of its own, as in a deployed service, and the defaults run once more
with it on the consumer's thread. msg/s counts messages applied; "published msg/s" counts until the
outbox is drained too.
Needs the local stack (npm run stack -- up).
`;

const { values } = parseCli(usage, {
  messages: { type: 'string' },
  'batch1-messages': { type: 'string' },
});
const total = Number(values.messages ?? 50_000);
const batch1Messages = Math.min(total, Number(values['batch1-messages'] ?? 3000));

const ns = await isolatedTopics({ partitions: { occurrences: 6 } });
const codec = codecFor(ns.topics);
process.stderr.write(`publishing ${total} occurrences…\n`);
const occurrences = Array.from({ length: total }, (_, i) =>
  occurrence(i, { projects: 5, fingerprints: 200, seed: 'bench' }),
);
for (let i = 0; i < total; i += 10_000) {
  const slice = occurrences.slice(i, i + 10_000);
  await produceRaw(ns.topics.occurrences, await encodeAll(codec, slice));
}

async function plainLoop(): Promise<number> {
  const consumer = kafka().consumer({ groupId: uniqueName('plain-'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic: ns.topics.occurrences, fromBeginning: true });
  let seen = 0;
  let started = 0;
  await new Promise<void>((resolve) => {
    void consumer.run({
      eachBatch: async ({ batch }) => {
        if (!started) started = Date.now();
        seen += batch.messages.length;
        if (seen >= total) resolve();
      },
    });
  });
  const seconds = (Date.now() - started) / 1000;
  await consumer.disconnect();
  return total / seconds;
}

/** `thread`: the relay in a thread of its own, as `runService` runs it; else on the consumer's. */
async function runtime(
  batchSize: number,
  concurrency: number,
  messages: number,
  thread: boolean,
): Promise<{ applied: number; published: number }> {
  const db = await isolatedDatabase(counterDatabase);
  await liveProjects(db.pool, [1, 2, 3, 4, 5]);
  const consumer = await startCounter(ns, db.pool, {
    maxBatchSize: batchSize,
    concurrency,
    consumerConfig: { maxWaitTimeInMs: 100 },
    ...(thread && { relay: counterRelayThread(ns, db.url) }),
  });
  // steady state, as for the plain loop: from the first committed batch (group join excluded)
  await waitFor('the first batch', async () => (await totalCount(db.pool)) > 0, 60_000);
  const started = Date.now();
  const before = await totalCount(db.pool);
  await waitFor(
    `${messages} applied`,
    async () => (await totalCount(db.pool)) >= messages,
    30 * 60_000,
  );
  const seconds = (Date.now() - started) / 1000;
  messages -= before;
  await waitFor('outbox drained', async () => (await unpublished(db.pool)) === 0, 10 * 60_000);
  const drained = (Date.now() - started) / 1000;
  await consumer.stop();
  await db.drop();
  return { applied: messages / seconds, published: messages / drained };
}

const top = await ceiling(ns.topics.occurrences, codec, total);
const plain = await plainLoop();
const rows: Record<string, string>[] = [
  {
    run: 'ceiling: consume + decode/validate + one upsert per batch',
    messages: String(total),
    'msg/s': top.toFixed(0),
    'of ceiling': '100%',
    'published msg/s': '',
  },
  {
    run: 'plain kafkajs loop, no decode, no write',
    messages: String(total),
    'msg/s': plain.toFixed(0),
    'of ceiling': `${((100 * plain) / top).toFixed(1)}%`,
    'published msg/s': '',
  },
];
for (const [batch, concurrency, messages, thread] of [
  [SERVICE_DEFAULTS.maxBatchSize, SERVICE_DEFAULTS.partitionConcurrency, total, true],
  [SERVICE_DEFAULTS.maxBatchSize, SERVICE_DEFAULTS.partitionConcurrency, total, false],
  [1000, 1, total, true],
  [100, 1, total, true],
  [1, 1, batch1Messages, true],
] as const) {
  const run = `runtime, batch ${batch}, ${concurrency} partition${concurrency > 1 ? 's' : ''} at once${thread ? '' : ", relay on the consumer's thread"}`;
  process.stderr.write(`${run}…\n`);
  const { applied, published } = await runtime(batch, concurrency, messages, thread);
  rows.push({
    run,
    messages: String(messages),
    'msg/s': applied.toFixed(0),
    'of ceiling': `${((100 * applied) / top).toFixed(1)}%`,
    'published msg/s': published.toFixed(0),
  });
}
await ns.drop();
process.stdout.write(
  `${formatTable(rows)}\n\ntarget (issue 13): the runtime with the ledger on at >= 50 % of the ceiling\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}; Kafka, registry and PostgreSQL on the same machine\n`,
);
process.exit(0);

/**
 * bench/replay: dead letters/s through `shoal dlq replay --yes`'s code path (packages/cli/src/dlq/replay.ts:
 * read `<topic>.dlq` in chunks, parse and check each record's headers, look up earlier replays and
 * discards, and produce in acknowledged batches with a checkpoint per batch in PostgreSQL while the
 * next chunks are read), beside the in-run
 * ceiling: a plain kafkajs loop that consumes the same dead-letter topic and produces each batch,
 * unchanged, to another topic with the same producer settings (idempotent, acks all).
 *
 *   npm run bench:replay -- [--messages 200000]
 */
import { dlqTopic } from '@shoal/contracts';
import { formatTable, parseCli } from '@shoal/config/cli';
import { DLQ_HEADER, HEADER } from '@shoal/kafka-runtime';
import { isolatedDatabase, isolatedTopics, kafka, uniqueName } from '@shoal/testing';
import os from 'node:os';
import { openReplay } from '../packages/cli/src/dlq/replay.js';
import { codecFor, encodeAll, occurrence } from '../packages/kafka-runtime/test/support.js';

const usage = `Usage: npm run bench:replay -- [--messages N]

Publishes N dead-lettered occurrences (default 200000: registry-framed values, the runtime's
shoal.dlq.* headers, 3 reasons) to <occurrences>.dlq, then measures records/s for a plain kafkajs
copy loop (consume the DLQ, produce each batch to another topic) and for shoal dlq replay's code
path (openReplay, streamed as with --yes, --rate unbounded) to the occurrences topic.
Needs the local stack (npm run stack -- up).
`;

const { values } = parseCli(usage, { messages: { type: 'string' } });
const total = Number(values.messages ?? 200_000);

const ns = await isolatedTopics({ partitions: { occurrences: 6 } });
const scratch = await isolatedTopics({ partitions: { occurrences: 6 } });
const db = await isolatedDatabase({ migrate: false });
const source = ns.topics.occurrences;
const dlq = dlqTopic(source);
const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');

process.stderr.write(`publishing ${total} dead letters to ${dlq}…\n`);
{
  const codec = codecFor(ns.topics);
  const reasons = ['stale_reference', 'schema_invalid', 'processing_error'];
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  for (let i = 0; i < total; i += 500) {
    const slice = Array.from({ length: Math.min(500, total - i) }, (_, j) =>
      occurrence(i + j, { projects: 5, fingerprints: 200, seed: 'replay' }),
    );
    const raws = await encodeAll(codec, slice);
    await producer.send({
      topic: dlq,
      acks: -1,
      messages: raws.map((r, j) => ({
        ...r,
        headers: {
          [HEADER.messageId]: `occurrence:${slice[j]!.id}`,
          [DLQ_HEADER.originalTopic]: source,
          [DLQ_HEADER.originalPartition]: String((i + j) % 6),
          [DLQ_HEADER.originalOffset]: String(i + j),
          [DLQ_HEADER.consumerGroup]: 'grouping',
          [DLQ_HEADER.reason]: reasons[(i + j) % 3]!,
          [DLQ_HEADER.attemptCount]: '1',
          [DLQ_HEADER.firstFailedAt]: new Date().toISOString(),
        },
      })),
    });
  }
  await producer.disconnect();
}

/** Consumes the DLQ from the start and produces each batch to the scratch topic. */
async function copyLoop(): Promise<number> {
  const producer = kafka().producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const consumer = kafka().consumer({ groupId: uniqueName('copy-'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic: dlq, fromBeginning: true });
  const started = Date.now();
  let copied = 0;
  await new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        await producer.send({
          topic: scratch.topics.occurrences,
          acks: -1,
          messages: batch.messages.map((m) => ({
            key: m.key,
            value: m.value,
            headers: m.headers,
          })),
        });
        copied += batch.messages.length;
        if (copied >= total) resolve();
      },
    });
  });
  const rate = total / ((Date.now() - started) / 1000);
  await consumer.disconnect();
  await producer.disconnect();
  return rate;
}

async function replay() {
  const connections = {
    databaseUrl: db.url,
    brokers,
    registryUrl: process.env.SCHEMA_REGISTRY_URL ?? 'http://127.0.0.1:8081/apis/ccompat/v7',
  };
  const started = Date.now();
  let first = 0;
  const run = await openReplay({ topic: source, dlqTopic: dlq, filters: {} }, connections);
  const done = await run.replay({
    actor: 'bench',
    rate: Number.MAX_VALUE,
    filters: {},
    progress: (n) => (first ||= n > 0 ? Date.now() : 0),
  });
  const finished = Date.now();
  if (done.replayed !== total) throw new Error(`replayed ${done.replayed} of ${total}`);
  return {
    rate: total / ((finished - started) / 1000),
    firstSeconds: (first - started) / 1000,
    seconds: (finished - started) / 1000,
  };
}

process.stderr.write('copy loop…\n');
const ceiling = await copyLoop();
process.stderr.write('shoal dlq replay…\n');
const measured = await replay();
process.stdout.write(
  `${formatTable([
    {
      run: 'plain kafkajs copy loop (consume DLQ, produce batch)',
      records: String(total),
      'msg/s': ceiling.toFixed(0),
      'of ceiling': '100%',
    },
    {
      run: `shoal dlq replay --yes (streamed: first checkpoint after ${measured.firstSeconds.toFixed(1)} s, all in ${measured.seconds.toFixed(1)} s)`,
      records: String(total),
      'msg/s': measured.rate.toFixed(0),
      'of ceiling': `${((100 * measured.rate) / ceiling).toFixed(1)}%`,
    },
  ])}\n`,
);
process.stdout.write(
  `target >= 20000 msg/s: ${measured.rate >= 20_000 ? 'met' : 'NOT met'}; ${os.cpus().length} cores, load ${os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}\n`,
);
await Promise.all([ns.drop(), scratch.drop(), db.drop()]);

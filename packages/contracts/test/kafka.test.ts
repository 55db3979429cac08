import {
  connections,
  isolatedTopics,
  kafka,
  uniqueName,
  withAdmin,
  type IsolatedTopics,
} from '@shoal/testing';
import type { KafkaMessage } from 'kafkajs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  Codec,
  createRegistry,
  createTopics,
  occurrenceKey,
  type Occurrence,
} from '../src/index.js';
import { example } from './examples.js';

let ns: IsolatedTopics;
beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 2 } });
});
afterAll(() => ns.drop());

async function consume(topic: string, count: number): Promise<KafkaMessage[]> {
  const consumer = kafka().consumer({ groupId: uniqueName('g-') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const received: KafkaMessage[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`only ${received.length} of ${count} messages arrived`)),
      30_000,
    );
    void consumer.run({
      eachMessage: async ({ message }) => {
        received.push(message);
        if (received.length === count) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return received;
}

it('round-trips framed and plain-JSON occurrences producer → Kafka → consumer through the registry', async () => {
  const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
  const shoal = example('occurrence.shoal-extended.json') as Occurrence;
  const sentry = example('occurrence.sentry-monitor-failure.json') as Occurrence;
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  await producer.send({
    topic: ns.topics.occurrences,
    acks: -1,
    messages: [
      { key: occurrenceKey(shoal), value: await codec.encode('occurrences', shoal) },
      // as Sentry's producers send it: plain JSON, no schema frame
      { key: occurrenceKey(sentry), value: Buffer.from(JSON.stringify(sentry)) },
    ],
  });
  await producer.disconnect();

  const messages = await consume(ns.topics.occurrences, 2);
  const decoded = await Promise.all(messages.map((m) => codec.decode('occurrences', m.value)));
  expect(decoded).toHaveLength(2);
  expect(decoded).toEqual(expect.arrayContaining([shoal, sentry]));
  expect(messages.map((m) => m.key!.toString()).sort()).toEqual([
    '1:cccccccccccccccccccccccccccccccc',
    `7:${shoal.fingerprint[0]}`,
  ]);
});

it('createTopics returns once every partition is served, not only listed with a leader: a 200-partition topic answers for its offsets at once', async () => {
  const topics = [uniqueName('ready-'), uniqueName('ready-')];
  try {
    await withAdmin(async (admin) => {
      const created = await createTopics(
        admin,
        topics.map((topic) => ({ topic, partitions: 200, dlq: false })),
      );
      expect(created.map((t) => [t.state, t.actualPartitions])).toEqual([
        ['created', 200],
        ['created', 200],
      ]);
      // the broker lists a new partition's leader before that leader serves it: asked in that
      // window, this answers NOT_LEADER_OR_FOLLOWER
      for (const topic of topics) expect(await admin.fetchTopicOffsets(topic)).toHaveLength(200);
    });
  } finally {
    await withAdmin((admin) => admin.deleteTopics({ topics }));
  }
});

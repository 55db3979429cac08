import { withTransaction } from '@shoal/db';
import { metricsRegistry } from '@shoal/observability';
import {
  createTestTopics,
  isolatedDatabase,
  isolatedTopics,
  withAdmin,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resetOffset, type RunningConsumer } from '../src/index.js';
import {
  codecFor,
  encodeAll,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  startCounter,
  storedNextOffset,
  totalCount,
  waitFor,
} from './support.js';

/**
 * The "new messages silently dropped after Kafka is reset": PostgreSQL holds offsets of a
 * log that is gone, the topic is re-created under the same name. Each partition must halt, loudly,
 * until an operator's reset, and then apply the new log.
 */

let ns: IsolatedTopics;
let topic: string;
let dbA: IsolatedDatabase;
let dbB: IsolatedDatabase;
const running: RunningConsumer[] = [];

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  topic = ns.topics.occurrences;
  [dbA, dbB] = await Promise.all([
    isolatedDatabase(counterDatabase),
    isolatedDatabase(counterDatabase),
  ]);
  await Promise.all([liveProjects(dbA.pool, [1, 2, 3]), liveProjects(dbB.pool, [1, 2, 3])]);
});
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  await Promise.all([dbA?.drop(), dbB?.drop(), ns?.drop()]);
});

const start = async (group: string, db: IsolatedDatabase) => {
  const consumer = await startCounter(ns, db.pool, { group, haltCheckMs: 300 });
  running.push(consumer);
  return consumer;
};

const produce = async (seed: string, count: number) =>
  produceRaw(
    topic,
    await encodeAll(
      codecFor(ns.topics),
      Array.from({ length: count }, (_, i) => occurrence(i, { seed })),
    ),
    0,
  );

async function halt(db: IsolatedDatabase, group: string): Promise<string | undefined> {
  const { rows } = await db.pool.query<{ halted_reason: string }>(
    'SELECT halted_reason FROM consumer_offsets WHERE consumer_group = $1 AND halted_at IS NOT NULL',
    [group],
  );
  return rows[0]?.halted_reason;
}

async function haltedMetric(group: string): Promise<number | undefined> {
  const metric = await metricsRegistry.getSingleMetric('shoal_partition_halted')!.get();
  return metric.values.find((v) => v.labels.group === group)?.value;
}

/** Deletes the topic and creates it again under the same name, empty (Kafka's data wiped). */
async function recreateTopic() {
  await withAdmin(async (admin) => {
    await admin.deleteTopics({ topics: [topic] });
    await waitFor(
      'the topic to be deleted',
      async () => !(await admin.listTopics()).includes(topic),
    );
    await waitFor('the topic to be created again', async () =>
      createTestTopics([{ topic, numPartitions: 1 }])
        .then(() => true)
        .catch(() => false),
    );
  });
}

it("a topic re-created under PostgreSQL's offsets halts each partition loudly until a reset, then applies the new log", async () => {
  await produce('old-log', 12);
  const [a, b] = await Promise.all([start('reset-a', dbA), start('reset-b', dbB)]);
  await waitFor(
    'both groups to apply the old log',
    async () =>
      (await storedNextOffset(dbA.pool, 'reset-a', topic)) === 12 &&
      (await storedNextOffset(dbB.pool, 'reset-b', topic)) === 12,
  );
  await Promise.all([a.stop(), b.stop()]);

  await recreateTopic();
  await produce('new-log', 5);
  // a: PostgreSQL's next offset (12) is past the new log's end (5)
  const a2 = await start('reset-a', dbA);
  await waitFor('group a to halt', async () => (await halt(dbA, 'reset-a')) !== undefined);
  expect(await halt(dbA, 'reset-a')).toMatch(
    /stored next offset 12 is past the end of the log \(high watermark 5\)/,
  );
  expect(await haltedMetric('reset-a')).toBe(1);
  await expect(a2.check()).rejects.toThrow(`${topic}[0] halted`);

  // b: the new log reached past 12, but the record at 11 is not the one b applied there
  await produce('new-log-more', 10);
  const b2 = await start('reset-b', dbB);
  await waitFor('group b to halt', async () => (await halt(dbB, 'reset-b')) !== undefined);
  expect(await halt(dbB, 'reset-b')).toMatch(/the record at offset 11 is not the one last applied/);
  await expect(b2.check()).rejects.toThrow(`${topic}[0] halted`);

  // halted means halted: nothing of the new log applied, the offsets untouched
  await new Promise((r) => setTimeout(r, 1500));
  expect(await totalCount(dbA.pool)).toBe(12);
  expect(await totalCount(dbB.pool)).toBe(12);
  expect(await storedNextOffset(dbA.pool, 'reset-a', topic)).toBe(12);

  // the operator's reset: recorded, and the consumers resume at the new offset within seconds
  for (const [db, group] of [
    [dbA, 'reset-a'],
    [dbB, 'reset-b'],
  ] as const) {
    await withTransaction(db.pool, (tx) =>
      resetOffset(tx, {
        group,
        topic,
        partition: 0,
        to: 0,
        actor: 'test',
        reason: 'topic re-created',
      }),
    );
  }
  await waitFor(
    'both groups to apply the whole new log',
    async () =>
      (await totalCount(dbA.pool)) === 12 + 15 && (await totalCount(dbB.pool)) === 12 + 15,
  );
  expect(await storedNextOffset(dbA.pool, 'reset-a', topic)).toBe(15);
  expect(await haltedMetric('reset-a')).toBe(0);
  await expect(a2.check()).resolves.toBeUndefined();
  const { rows } = await dbA.pool.query(
    'SELECT consumer_group, topic, partition, from_offset, to_offset, actor, reason FROM offset_resets',
  );
  expect(rows).toEqual([
    {
      consumer_group: 'reset-a',
      topic,
      partition: 0,
      from_offset: 12,
      to_offset: 0,
      actor: 'test',
      reason: 'topic re-created',
    },
  ]);
}, 180_000);

import type { EntityChange, Occurrence } from '@shoal/contracts';
import type { RunningConsumer } from '@shoal/kafka-runtime';
import { createProducer, type ShoalProducer } from '@shoal/producer';
import {
  connections,
  kafka,
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll } from 'vitest';
import { groupingDatabase, startGrouping } from './support.js';

export interface GroupingTestKit {
  /** Topics, a producer and a database of the test's own. */
  fresh(): Promise<{ ns: IsolatedTopics; producer: ShoalProducer; db: IsolatedDatabase }>;
  /** An in-process grouping consumer, stopped after the file's tests. */
  start(
    ns: IsolatedTopics,
    db: IsolatedDatabase,
    group: string,
    options?: Parameters<typeof startGrouping>[3],
  ): Promise<RunningConsumer>;
  /** Runs after the file's tests, last registered first. */
  cleanup(fn: () => Promise<unknown>): void;
}

/** Call at a test file's top level: what it creates is removed after its tests. */
export function groupingTestKit(): GroupingTestKit {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  return {
    async fresh() {
      const ns = await isolatedTopics({ partitions: { occurrences: 4, statusChanges: 4 } });
      const producer = createProducer({
        brokers: connections().KAFKA_BROKERS,
        registryUrl: connections().SCHEMA_REGISTRY_URL,
        namespace: ns.namespace,
      });
      const db = await isolatedDatabase(groupingDatabase);
      cleanups.push(
        () => ns.drop(),
        () => db.drop(),
        () => producer.close(),
      );
      return { ns, producer, db };
    },
    async start(ns, db, group, options = {}) {
      const consumer = await startGrouping(ns.topics, db.pool, group, options);
      cleanups.push(() => consumer.stop());
      return consumer;
    },
    cleanup: (fn) => void cleanups.push(fn),
  };
}

let counter = 0;
export const uniqueUuid = () =>
  `00000000-0000-4000-8000-${(++counter).toString(16).padStart(12, '0')}`;

/** The i-th occurrence of `fingerprint`, detected i seconds after a fixed instant. */
export const occurrence = (
  i: number,
  fingerprint: string,
  project = 1,
  extra: Partial<Occurrence> = {},
): Occurrence => ({
  id: uniqueUuid(),
  project_id: project,
  fingerprint: [fingerprint],
  issue_title: `Error in ${fingerprint} #${i}`,
  type: 1,
  detection_time: 1764000000 + i,
  event_id: uniqueUuid().replace(/-/g, ''),
  ...extra,
});

/**
 * Entity changes as an upstream sends them (plain JSON), each keyed by its kind and id, so a
 * dead-lettered one parks only its own entity's key on this ordered topic.
 */
export async function publishEntityChanges(
  ns: IsolatedTopics,
  changes: (Pick<EntityChange, 'entity_kind' | 'entity_id' | 'change'> & Partial<EntityChange>)[],
): Promise<void> {
  const producer = kafka().producer();
  await producer.connect();
  try {
    await producer.send({
      topic: ns.topics.entityChanges,
      messages: changes.map((c) => ({
        key: `${c.entity_kind}:${c.entity_id}`,
        value: JSON.stringify({
          event_id: uniqueUuid(),
          occurred_at: new Date().toISOString(),
          ...c,
        }),
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

export const timesSeen = async (db: IsolatedDatabase) =>
  (await db.pool.query<{ n: number }>('SELECT coalesce(sum(times_seen), 0)::int AS n FROM groups'))
    .rows[0]!.n;

export const unpublishedEvents = async (db: IsolatedDatabase) =>
  (
    await db.pool.query<{ n: number }>(
      'SELECT coalesce(sum(event_count), 0)::int AS n FROM outbox WHERE published_at IS NULL',
    )
  ).rows[0]!.n;

/**
 * Every live group's times seen reported by group_activity and every event published: the
 * group-events topic stops growing (readAll counts a topic's records before it reads them).
 */
export const settled = async (db: IsolatedDatabase) =>
  (
    await db.pool.query(
      'SELECT 1 FROM groups WHERE times_seen <> reported_times_seen AND deleted_at IS NULL',
    )
  ).rowCount === 0 && (await unpublishedEvents(db)) === 0;

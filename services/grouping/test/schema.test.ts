import { createPool } from '@shoal/db';
import { createProducer } from '@shoal/producer';
import {
  connections,
  isolatedDatabase,
  isolatedTopics,
  spawnEntryPoint,
  uniqueName,
  waitFor,
} from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { groupingTestKit, occurrence } from './kit.js';
import { groupingDatabase, groupingMain, migrationDirs, startGrouping } from './support.js';

const { cleanup } = groupingTestKit();

describe("grouping's schema", () => {
  it('a deployment from before schemas: the first start moves its tables and rows from public into grouping, runs no migration again and carries on counting', async () => {
    const ns = await isolatedTopics({ partitions: { occurrences: 2 } });
    // migrated and run the old way: everything in public
    const db = await isolatedDatabase({ dirs: migrationDirs });
    const producer = createProducer({
      brokers: connections().KAFKA_BROKERS,
      registryUrl: connections().SCHEMA_REGISTRY_URL,
      namespace: ns.namespace,
    });
    cleanup(() => ns.drop());
    cleanup(() => db.drop());
    cleanup(() => producer.close());
    const group = uniqueName('grouping-');
    const timesSeen = async (pool = db.pool) =>
      (
        await pool.query<{ fingerprint: string; times_seen: number; short_number: number }>(
          `SELECT title AS fingerprint, times_seen::int, short_number::int FROM groups ORDER BY short_number`,
        )
      ).rows;
    const old = await startGrouping(ns.topics, db.pool, group);
    for (let i = 0; i < 10; i++)
      await producer.publishOccurrence(occurrence(i, 'adopted', 1, { issue_title: 'adopted' }));
    await waitFor(
      'the old layout grouping 10',
      async () => (await timesSeen())[0]?.times_seen === 10,
    );
    await old.stop();
    const migrated = (await db.pool.query('SELECT name, run_on FROM pgmigrations ORDER BY id'))
      .rows;

    const child = spawnEntryPoint(
      groupingMain,
      {
        DATABASE_URL: db.url,
        SHOAL_TOPIC_NAMESPACE: ns.namespace,
        SHOAL_CONSUMER_GROUP: group,
        SHOAL_SESSION_TIMEOUT_MS: '6000',
      },
      '"consumer running"',
    );
    cleanup(async () => {
      if (child.child.exitCode === null) child.child.kill('SIGTERM');
      await child.exited;
    });
    await child.ready;
    expect(child.output.filter((line) => line.includes('from public into grouping'))).toHaveLength(
      1,
    );
    const inPublic = await db.pool.query(
      `SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace`,
    );
    expect(inPublic.rows).toEqual([]);

    const pool = createPool(db.url, { schema: groupingDatabase.schema });
    cleanup(() => pool.end());
    expect((await pool.query('SELECT name, run_on FROM pgmigrations ORDER BY id')).rows).toEqual(
      migrated,
    );
    // offsets, groups and short-id counters came along: nothing is grouped twice, numbering goes on
    for (let i = 10; i < 15; i++)
      await producer.publishOccurrence(occurrence(i, 'adopted', 1, { issue_title: 'adopted' }));
    await producer.publishOccurrence(occurrence(15, 'new', 1, { issue_title: 'new' }));
    await waitFor('grouping in its schema', async () => (await timesSeen(pool)).length === 2);
    await waitFor('all 16 grouped', async () =>
      (await timesSeen(pool)).every((g) => g.times_seen === (g.fingerprint === 'new' ? 1 : 15)),
    );
    expect(await timesSeen(pool)).toEqual([
      { fingerprint: 'adopted', times_seen: 15, short_number: 1 },
      { fingerprint: 'new', times_seen: 1, short_number: 2 },
    ]);
    child.child.kill('SIGTERM');
    expect(await child.exited).toBe(0);
  });
});

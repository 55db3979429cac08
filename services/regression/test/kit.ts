import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GroupEvent, Occurrence, StatusChange } from '@shoal/contracts';
import { createProducer, type ShoalProducer } from '@shoal/producer';
import {
  connections,
  isolatedDatabase,
  isolatedTopics,
  readAll,
  repoRoot,
  spawnEntryPoint,
  uniqueName,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll } from 'vitest';

/**
 * Regression against the real stack, with grouping as it is deployed: both as processes (their
 * mains migrate their own schemas in the test's database), on the test's own topics.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const groupingMain = path.join(repoRoot, 'services', 'grouping', 'src', 'main.ts');
/** Regression's main with SHOAL_CRASH_AT fault injection (the runtime's kill helper). */
const regressionCrashMain = path.join(here, 'crash-main.ts');

export interface Stack {
  ns: IsolatedTopics;
  db: IsolatedDatabase;
  producer: ShoalProducer;
}

let counter = 0;
export const uniqueUuid = () =>
  `00000000-0000-4000-9000-${(++counter).toString(16).padStart(12, '0')}`;

/** The i-th occurrence of `fingerprint` in project 1, with `release`, detected i seconds after `base` (epoch seconds). */
export const occurrence = (
  i: number,
  fingerprint: string,
  release: string | null,
  base = 1764000000,
): Occurrence => ({
  id: uniqueUuid(),
  project_id: 1,
  fingerprint: [fingerprint],
  issue_title: `Error in ${fingerprint}`,
  type: 1,
  detection_time: base + i,
  event: {
    event_id: uniqueUuid().replace(/-/g, ''),
    timestamp: base + i,
    ...(release !== null && { release }),
  },
});

/** A resolve of the fingerprint's group, resolved long before the occurrences' times. */
export const resolve = (
  fingerprint: string,
  resolution: NonNullable<StatusChange['shoal']>['resolution'],
  extra: Partial<StatusChange> = {},
): StatusChange => ({
  id: uniqueUuid(),
  project_id: 1,
  fingerprint: [fingerprint],
  new_status: 1,
  new_substatus: null,
  update_date: '2025-01-01T00:00:00Z',
  shoal: { resolution },
  ...extra,
});

export function regressionTestKit() {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  const spawnService = (main: string, env: Record<string, string>) => {
    const child = spawnEntryPoint(
      main,
      {
        KAFKA_BROKERS: connections().KAFKA_BROKERS.join(','),
        SCHEMA_REGISTRY_URL: connections().SCHEMA_REGISTRY_URL,
        SHOAL_SESSION_TIMEOUT_MS: '6000',
        ...env,
      },
      '"partitions assigned"',
    );
    cleanups.push(async () => {
      // SHOAL_TEST_OUTPUT=1 prints what the processes logged, to see why a test waited in vain
      if (process.env.SHOAL_TEST_OUTPUT)
        process.stderr.write(`${main}:\n${child.output.join('\n')}\n`);
      if (child.child.exitCode === null && child.child.signalCode === null)
        child.child.kill('SIGTERM');
      await child.exited;
    });
    return child;
  };

  return {
    async fresh(partitions: { groupEvents?: number } = {}): Promise<Stack> {
      const ns = await isolatedTopics({ partitions });
      const db = await isolatedDatabase({ migrate: false });
      const producer = createProducer({
        brokers: connections().KAFKA_BROKERS,
        registryUrl: connections().SCHEMA_REGISTRY_URL,
        namespace: ns.namespace,
      });
      cleanups.push(
        () => ns.drop(),
        () => db.drop(),
        () => producer.close(),
      );
      return { ns, db, producer };
    },
    /** Another database, for a second, independent regression worker. */
    async otherDatabase(): Promise<IsolatedDatabase> {
      const db = await isolatedDatabase({ migrate: false });
      cleanups.push(() => db.drop());
      return db;
    },
    startGrouping(stack: Stack): RunningEntryPoint {
      return spawnService(groupingMain, {
        DATABASE_URL: stack.db.url,
        SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
        SHOAL_CONSUMER_GROUP: uniqueName('grouping-'),
        SHOAL_GROUP_ACTIVITY_SECONDS: '0.3',
      });
    },
    startRegression(
      stack: Stack,
      env: Record<string, string> = {},
      db: IsolatedDatabase = stack.db,
    ): RunningEntryPoint {
      return spawnService(regressionCrashMain, {
        DATABASE_URL: db.url,
        SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
        SHOAL_CONSUMER_GROUP: `regression-${db.name}`,
        ...env,
      });
    },
  };
}

export const groupEventsOn = async (ns: IsolatedTopics) =>
  (await readAll(ns.topics.groupEvents)).map(
    (r) => JSON.parse(r.value!.subarray(5).toString()) as GroupEvent,
  );

/** One row of a query on the test database (tables schema-qualified: grouping.…, regression.…). */
export const rowsOf = async <T extends Record<string, unknown>>(
  db: IsolatedDatabase,
  sql: string,
  params: unknown[] = [],
) => (await db.pool.query<T>(sql, params)).rows;

/** The projection's group row, once regression has its tables. */
export const projected = async (db: IsolatedDatabase) =>
  rowsOf<{ status: string; sequence: number; resolution_id: number }>(
    db,
    `SELECT status, sequence::int, resolution_id::int FROM regression.groups ORDER BY id`,
  ).catch(() => []);

export const regressionRecords = async (db: IsolatedDatabase) =>
  rowsOf<{ state: string; kind: string; decided_by: string; change_id: string; flapping: boolean }>(
    db,
    'SELECT state, kind, decided_by, change_id, flapping FROM regression.regressions ORDER BY id',
  ).catch(() => []);

export const groupingGroup = async (db: IsolatedDatabase) =>
  (
    await rowsOf<{ id: number; status: string; substatus: number | null; resolution_id: number }>(
      db,
      'SELECT id::int, status, substatus::int, resolution_id::int FROM grouping.groups',
    ).catch(() => [])
  )[0];

import { dlqTopic } from '@shoal/contracts';
import { metricsRegistry } from '@shoal/observability';
import {
  connections,
  isolatedDatabase,
  isolatedTopics,
  privateBroker,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningConsumer } from '../src/index.js';
import {
  codecFor,
  expectedCounts,
  countsOf,
  encodeAll,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  readAll,
  startCounter,
  totalCount,
  unpublished,
  waitFor,
} from './support.js';

let ns: IsolatedTopics;
const running: RunningConsumer[] = [];
const dbs: IsolatedDatabase[] = [];

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 3 } });
});
afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  await Promise.all([...dbs.map((db) => db.drop()), ns.drop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function transientRetries(): Promise<number> {
  const metric = await metricsRegistry.getSingleMetric('shoal_transient_retries_total')!.get();
  return metric.values.reduce((n, v) => n + v.value, 0);
}

async function expectExactlyOnce(
  db: IsolatedDatabase,
  expected: Record<string, number>,
  total: number,
) {
  await waitFor(
    'every message applied and published',
    async () => (await totalCount(db.pool)) === total && (await unpublished(db.pool)) === 0,
    120_000,
  );
  expect(await countsOf(db.pool)).toEqual(expected);
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM message_failures');
  expect(rows[0].n).toBe(0);
}

describe('transient faults', () => {
  it('PostgreSQL refusing connections mid-run: nothing dead-lettered or skipped, exact results once it is back', async () => {
    const db = await isolatedDatabase(counterDatabase);
    dbs.push(db);
    await liveProjects(db.pool, [1, 2, 3]);
    const values = Array.from({ length: 6000 }, (_, i) => occurrence(i, { seed: 'pg-down' }));
    const codec = codecFor(ns.topics);
    const retriesBefore = await transientRetries();
    running.push(await startCounter(ns, db.pool, { group: 'pg-down', maxBatchSize: 100 }));
    await produceRaw(ns.topics.occurrences, await encodeAll(codec, values.slice(0, 3000)));
    await waitFor('some progress', async () => (await totalCount(db.pool)) > 0);

    // the database goes away: new connections refused, existing ones terminated, for 3 s
    const admin = new pg.Client({ connectionString: connections().DATABASE_URL });
    await admin.connect();
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    const outage = Date.now();
    const publishing = produceRaw(
      ns.topics.occurrences,
      await encodeAll(codec, values.slice(3000)),
    );
    while (Date.now() - outage < 3000) {
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [db.name],
      );
      await sleep(100);
    }
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    await admin.end();
    await publishing;

    await expectExactlyOnce(db, expectedCounts(values), values.length);
    expect(await transientRetries()).toBeGreaterThan(retriesBefore);
    expect(await readAll(dlqTopic(ns.topics.occurrences))).toEqual([]);
  });

  it('the broker stopped mid-run and started again: exact results, nothing dead-lettered', async () => {
    // a broker of its own, so stopping it disturbs no other test
    const broker = await privateBroker();
    // this test's helpers (topics, producer, reader) talk to the broker of its own
    const previous = process.env.KAFKA_BROKERS;
    process.env.KAFKA_BROKERS = broker.brokers.join(',');
    let consumer: RunningConsumer | undefined;
    let own: IsolatedTopics | undefined;
    try {
      own = await isolatedTopics({ partitions: { occurrences: 3 } });
      const db = await isolatedDatabase(counterDatabase);
      dbs.push(db);
      await liveProjects(db.pool, [1, 2, 3]);
      const values = Array.from({ length: 4000 }, (_, i) => occurrence(i, { seed: 'broker-down' }));
      const encoded = await encodeAll(codecFor(own.topics), values);
      await produceRaw(own.topics.occurrences, encoded.slice(0, 2000));
      consumer = await startCounter(own, db.pool, { group: 'broker-down', maxBatchSize: 100 });
      await waitFor('some progress', async () => (await totalCount(db.pool)) > 0);
      broker.stop();
      await sleep(4000);
      broker.start();
      await produceRaw(own.topics.occurrences, encoded.slice(2000));
      await expectExactlyOnce(db, expectedCounts(values), values.length);
      expect(await readAll(dlqTopic(own.topics.occurrences))).toEqual([]);
    } finally {
      await consumer?.stop();
      await own?.drop().catch(() => undefined);
      if (previous === undefined) delete process.env.KAFKA_BROKERS;
      else process.env.KAFKA_BROKERS = previous;
      broker.remove();
    }
  }, 480_000);
});

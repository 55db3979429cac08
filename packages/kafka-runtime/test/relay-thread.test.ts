import { metricsRegistry } from '@shoal/observability';
import {
  freePort,
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { HEADER, type RelayThread, type RunningConsumer } from '../src/index.js';
import {
  codecFor,
  counterDatabase,
  counterRelayThread,
  encodeAll,
  liveProjects,
  occurrence,
  produceRaw,
  readAll,
  startCounter,
  totalCount,
  unpublished,
  waitFor,
} from './support.js';

const namespaces: IsolatedTopics[] = [];
const dbs: IsolatedDatabase[] = [];
const consumers: RunningConsumer[] = [];

afterAll(async () => {
  await Promise.all(consumers.map((c) => c.stop()));
  await Promise.all([...dbs.map((db) => db.drop()), ...namespaces.map((ns) => ns.drop())]);
});

async function database(): Promise<IsolatedDatabase> {
  const db = await isolatedDatabase(counterDatabase);
  dbs.push(db);
  return db;
}

async function published(topic: string): Promise<number> {
  const metric = await metricsRegistry.getSingleMetric('shoal_outbox_published_total')!.get();
  return metric.values.find((v) => v.labels.topic === topic)?.value ?? 0;
}

/**
 * The counter on topics and a database of its own, its relay `relay`, until `count` occurrences are
 * counted and their events published; answers each event's message id with how often it went out.
 */
async function counterRun(
  count: number,
  relay: (ns: IsolatedTopics, db: IsolatedDatabase) => RelayThread,
): Promise<{ ns: IsolatedTopics; sent: Map<string, number> }> {
  const ns = await isolatedTopics({ partitions: { occurrences: 3, groupEvents: 3 } });
  namespaces.push(ns);
  const db = await database();
  await liveProjects(db.pool, [1, 2, 3]);
  const values = Array.from({ length: count }, (_, i) =>
    occurrence(i, { projects: 3, fingerprints: 20, seed: ns.namespace }),
  );
  await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values));
  consumers.push(await startCounter(ns, db.pool, { maxBatchSize: 500, relay: relay(ns, db) }));
  await waitFor(`${count} counted`, async () => (await totalCount(db.pool)) >= count);
  await waitFor('the outbox drained', async () => (await unpublished(db.pool)) === 0);
  const sent = new Map<string, number>();
  for (const record of await readAll(ns.topics.groupEvents)) {
    const id = record.headers[HEADER.messageId]!;
    sent.set(id, (sent.get(id) ?? 0) + 1);
  }
  return { ns, sent };
}

describe('the outbox relay in a thread of its own', () => {
  it("publishes each event once; its metrics reach this process's registry", async () => {
    let topic = '';
    const { sent } = await counterRun(1200, (ns, db) => {
      topic = ns.topics.groupEvents;
      return counterRelayThread(ns, db.url);
    });
    expect(sent.size).toBe(1200);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    // the topic is the test's own: every publish counted is this run's
    expect(await published(topic)).toBe(1200);
  });

  it('a thread that ends unasked, between producing a round and marking it, is started again and publishes the rest', async () => {
    let relay!: RelayThread;
    let restarted = 0;
    let ended = false;
    const { sent } = await counterRun(1200, (ns, db) => {
      relay = counterRelayThread(ns, db.url, {
        // the first round's events went out and its rows are not marked: the thread ends there
        hook: async () => {
          if (ended) return;
          ended = true;
          await relay.thread!.terminate();
        },
        onRestarted: () => restarted++,
      });
      return relay;
    });
    expect(ended).toBe(true);
    expect(restarted).toBe(1);
    // every event went out; the ended round's again, under the same ids, and no other twice
    expect(sent.size).toBe(1200);
    const twice = [...sent.values()].filter((n) => n === 2).length;
    expect(twice).toBeGreaterThan(0);
    expect([...sent.values()].every((n) => n <= 2)).toBe(true);
  });

  it('a thread that cannot start (the broker unreachable) fails the start and leaves no thread', async () => {
    const ns = await isolatedTopics({ partitions: { groupEvents: 1 } });
    namespaces.push(ns);
    const db = await database();
    const unreachable = counterRelayThread(
      ns,
      db.url,
      {},
      {
        brokers: [`127.0.0.1:${await freePort()}`],
        retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 200 },
      },
    );
    await expect(unreachable.start()).rejects.toThrow(/connect/i);
    expect(unreachable.thread).toBeUndefined();
    // the same settings with the broker there start
    const relay = counterRelayThread(ns, db.url);
    await relay.start();
    expect(relay.thread).toBeDefined();
    await relay.stop();
  });
});

import { isolatedDatabase, isolatedTopics } from '@shoal/testing';
import { expect, it } from 'vitest';
import { counterHandler } from './counter-service/handler.js';
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

it('concurrency 2: two partitions of one fetch are applied at once, each in its own transaction', async () => {
  const [ns, db] = await Promise.all([
    isolatedTopics({ partitions: { occurrences: 2 } }),
    isolatedDatabase(counterDatabase),
  ]);
  await liveProjects(db.pool, [1, 2, 3]);
  const codec = codecFor(ns.topics);
  const values = Array.from({ length: 20 }, (_, i) => occurrence(i, { seed: 'concurrent' }));
  // a record batch per message, and (below) a few of them per partition per fetch: the first fetch
  // may come before one partition is positioned (the seek on assignment races it), later ones carry both
  for (const [i, raw] of (await encodeAll(codec, values)).entries())
    await produceRaw(ns.topics.occurrences, [raw], i % 2);
  const count = counterHandler(ns.topics.groupEvents);
  const consumer = await startCounter(ns, db.pool, {
    group: 'concurrent',
    concurrency: 2,
    consumerConfig: { sessionTimeout: 6000, heartbeatInterval: 500, maxBytesPerPartition: 1500 },
    // every batch takes 1 s: one after the other, the two would never sleep together
    handle: async (batch, tx, ctx) => {
      await tx.query('SELECT pg_sleep(1)');
      return count(batch, tx, ctx);
    },
  });
  try {
    await waitFor(
      'both partitions in their batch at once',
      async () =>
        (
          await db.pool.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = 'SELECT pg_sleep(1)' AND state = 'active'",
          )
        ).rowCount === 2,
    );
    await waitFor(
      'both partitions applied',
      async () =>
        (await storedNextOffset(db.pool, 'concurrent', ns.topics.occurrences, 0)) === 10 &&
        (await storedNextOffset(db.pool, 'concurrent', ns.topics.occurrences, 1)) === 10,
    );
    expect(await totalCount(db.pool)).toBe(20);
  } finally {
    await consumer.stop();
    await Promise.all([db.drop(), ns.drop()]);
  }
});

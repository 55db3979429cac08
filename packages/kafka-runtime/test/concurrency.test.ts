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
  const count = counterHandler(ns.topics.groupEvents);
  let inBatch = 0;
  let overlapped = false;
  const consumer = await startCounter(ns, db.pool, {
    group: 'concurrent',
    concurrency: 2,
    // the broker holds each fetch until it has 100 kB or 2 s passed, so both partitions' records of a
    // round are in one fetch (the first round's may not be: the seek on assignment races it)
    consumerConfig: {
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      minBytes: 100_000,
      maxWaitTimeInMs: 2000,
    },
    // every batch takes 1 s: one after the other, the two would never be in a batch together
    handle: async (batch, tx, ctx) => {
      overlapped ||= ++inBatch === 2;
      try {
        await tx.query('SELECT pg_sleep(1)');
        return await count(batch, tx, ctx);
      } finally {
        inBatch--;
      }
    },
  });
  try {
    let rounds = 0;
    while (!overlapped && rounds < 8) {
      const [first, second] = await encodeAll(codec, [
        occurrence(2 * rounds, { seed: 'concurrent' }),
        occurrence(2 * rounds + 1, { seed: 'concurrent' }),
      ]);
      await Promise.all([
        produceRaw(ns.topics.occurrences, [first!], 0),
        produceRaw(ns.topics.occurrences, [second!], 1),
      ]);
      rounds++;
      await waitFor(
        `round ${rounds} applied on both partitions`,
        async () =>
          (await storedNextOffset(db.pool, 'concurrent', ns.topics.occurrences, 0)) === rounds &&
          (await storedNextOffset(db.pool, 'concurrent', ns.topics.occurrences, 1)) === rounds,
      );
    }
    expect(overlapped).toBe(true);
    expect(await totalCount(db.pool)).toBe(2 * rounds);
  } finally {
    await consumer.stop();
    await Promise.all([db.drop(), ns.drop()]);
  }
});

import { isolatedDatabase, isolatedTopics } from '@shoal/testing';
import { expect, it } from 'vitest';
import { TransientError } from '../src/errors.js';
import { counterHandler } from './counter-service/handler.js';
import {
  codecFor,
  countsOf,
  encodeAll,
  expectedCounts,
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

it('a chunk decoded ahead, while the one before it applies, that fails transiently is retried from its first record: each applied once', async () => {
  const [ns, db] = await Promise.all([
    isolatedTopics({ partitions: { occurrences: 1 } }),
    isolatedDatabase(counterDatabase),
  ]);
  await liveProjects(db.pool, [1, 2, 3]);
  const codec = codecFor(ns.topics);
  const values = Array.from({ length: 30 }, (_, i) => occurrence(i, { seed: 'ahead' }));
  const raws = await encodeAll(codec, values);
  await produceRaw(ns.topics.occurrences, raws, 0);
  const count = counterHandler(ns.topics.groupEvents);
  let handled = 0;
  // record 17 is in the fourth chunk of five; it fails once, as an unreachable registry would
  const failing = raws[17]!.value!;
  let handledWhenItFailed: number | undefined;
  const consumer = await startCounter(ns, db.pool, {
    group: 'ahead',
    maxBatchSize: 5,
    codec: Object.assign(Object.create(codec) as typeof codec, {
      decode: async (topicKey: 'occurrences', bytes: Buffer | null) => {
        if (handledWhenItFailed === undefined && bytes?.equals(failing)) {
          handledWhenItFailed = handled;
          throw new TransientError('registry unreachable (injected)');
        }
        return codec.decode(topicKey, bytes);
      },
    }),
    handle: async (batch, tx, ctx) => {
      const result = await count(batch, tx, ctx);
      handled += batch.length;
      return result;
    },
  });
  try {
    await waitFor('all 30 applied', async () => (await totalCount(db.pool)) === 30);
    // decoded ahead: before the third chunk (records 10–14) had been handled
    expect(handledWhenItFailed).toBeLessThan(15);
    expect(await countsOf(db.pool)).toEqual(expectedCounts(values));
    expect(await storedNextOffset(db.pool, 'ahead', ns.topics.occurrences)).toBe(30);
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM message_failures');
    expect(rows[0].n).toBe(0);
  } finally {
    await consumer.stop();
    await Promise.all([db.drop(), ns.drop()]);
  }
});

import { occurrenceKey } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DlqLimiter, DlqLimitExceeded } from '../src/index.js';
import {
  codecFor,
  encodeAll,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  spawnCounter,
  startCounter,
  storedNextOffset,
  totalCount,
  waitFor,
} from './support.js';

/** Counts outcomes as a committed chunk does: check (throws past a limit), then apply. */
const record = (limiter: DlqLimiter, outcomes: boolean[]) => limiter.apply(limiter.check(outcomes));

describe('DlqLimiter', () => {
  const limits = {
    maxInvalidRatio: 0.5,
    windowMs: 10_000,
    minWindowMessages: 10,
    maxConsecutive: 20,
  };

  it('drains a few bad messages at start instead of stopping (the ratio waits for a full sample)', () => {
    const limiter = new DlqLimiter(limits, () => 0);
    expect(() => record(limiter, [false, false, false])).not.toThrow();
    expect(() => record(limiter, Array(10).fill(true))).not.toThrow();
  });

  it('stops on the ratio over the window, and forgets what left the window', () => {
    let now = 0;
    const limiter = new DlqLimiter(limits, () => now);
    record(limiter, Array(6).fill(true));
    expect(() => record(limiter, Array(7).fill(false))).toThrow(
      /max_invalid_ratio crossed: 7 of the last 13/,
    );
    const fresh = new DlqLimiter(limits, () => now);
    record(
      fresh,
      Array(20)
        .fill(false)
        .map((_, i) => i % 2 === 0),
    );
    now = 20_000; // the old outcomes left the window
    expect(() => record(fresh, Array(10).fill(true))).not.toThrow();
  });

  it('counts a chunk only once it is applied: a chunk checked, rolled back and re-run counts once', () => {
    const limiter = new DlqLimiter({ windowMs: 10_000, minWindowMessages: 1, maxConsecutive: 3 });
    // the same three failures checked three times (a commit that failed twice) do not add up
    for (let attempt = 0; attempt < 3; attempt++)
      expect(() => limiter.check([false, false, false])).not.toThrow();
    record(limiter, [false, false, false]);
    expect(() => limiter.check([false])).toThrow(DlqLimitExceeded);
  });

  it('stops on consecutive failures regardless of the ratio', () => {
    const limiter = new DlqLimiter({ windowMs: 10_000, minWindowMessages: 1, maxConsecutive: 3 });
    record(limiter, [false, false, true, false, false, false]);
    expect(() => record(limiter, [false])).toThrow(DlqLimitExceeded);
  });
});

describe('a flood of bad messages', () => {
  let ns: IsolatedTopics;
  let db: IsolatedDatabase;
  beforeAll(async () => {
    ns = await isolatedTopics({ partitions: { occurrences: 1 } });
    db = await isolatedDatabase(counterDatabase);
    await liveProjects(db.pool, [1, 2, 3]);
    const codec = codecFor(ns.topics);
    const good = await encodeAll(
      codec,
      Array.from({ length: 50 }, (_, i) => occurrence(i, { seed: 'flood' })),
    );
    const bad = Array.from({ length: 400 }, (_, i) => ({
      key: occurrenceKey(occurrence(i, { seed: 'bad' })),
      value: Buffer.from(`not json ${i}`),
    }));
    await produceRaw(ns.topics.occurrences, [...good, ...bad], 0);
  });
  afterAll(async () => {
    await db.drop();
    await ns.drop();
  });

  it('trips the ratio limit: the process exits non-zero naming the limit, and the crossing batch is not committed', async () => {
    const counter = spawnCounter({
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      DATABASE_URL: db.url,
      SHOAL_CONSUMER_GROUP: 'flood',
      SHOAL_MAX_BATCH_SIZE: '100',
      SHOAL_DLQ_MAX_INVALID_RATIO: '0.5',
      SHOAL_DLQ_RATIO_MIN_MESSAGES: '100',
    });
    const code = await Promise.race([
      counter.exited,
      new Promise((r) => setTimeout(() => r('still running'), 60_000)),
    ]);
    expect(code).toBe(1);
    expect(counter.output.join('\n')).toMatch(/dead-letter limit max_invalid_ratio crossed/);
    expect(await totalCount(db.pool)).toBe(50);
    // 50 good + 50 bad passed (ratio 0.5 is not above it); the next batch crossed and was rolled back
    expect(await storedNextOffset(db.pool, 'flood', ns.topics.occurrences)).toBe(100);
  });

  it('trips the consecutive limit in process: done rejects with the limit', async () => {
    const consumer = await startCounter(ns, db.pool, {
      group: 'flood-consecutive',
      env: { SHOAL_DLQ_MAX_CONSECUTIVE: '30' },
    });
    await expect(consumer.done).rejects.toMatchObject({
      name: 'DlqLimitExceeded',
      limit: 'max_consecutive',
    });
  });

  it('refuses a bad limit variable at start, naming it', () => {
    const result = spawnCounter({
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      DATABASE_URL: db.url,
      SHOAL_DLQ_MAX_INVALID_RATIO: '2',
    });
    return result.exited.then((code) => {
      expect(code).toBe(78);
      expect(result.output.join('\n')).toContain(
        'SHOAL_DLQ_MAX_INVALID_RATIO: expected a number from 0 to 1 (got "2")',
      );
    });
  });
});

describe('limits per partition', () => {
  let ns: IsolatedTopics;
  let db: IsolatedDatabase;
  beforeAll(async () => {
    ns = await isolatedTopics({ partitions: { occurrences: 2 } });
    db = await isolatedDatabase(counterDatabase);
    await liveProjects(db.pool, [1, 2, 3]);
  });
  afterAll(async () => {
    await db.drop();
    await ns.drop();
  });

  it('a partition of bad messages trips its own limit, however many good ones flow elsewhere', async () => {
    const consumer = await startCounter(ns, db.pool, {
      group: 'per-partition',
      env: { SHOAL_DLQ_MAX_INVALID_RATIO: '0.5', SHOAL_DLQ_RATIO_MIN_MESSAGES: '20' },
    });
    const stopped = consumer.done.then(
      () => undefined,
      (error: unknown) => error,
    );
    const good = await encodeAll(
      codecFor(ns.topics),
      Array.from({ length: 100 }, (_, i) => occurrence(i, { seed: 'per-partition' })),
    );
    await produceRaw(ns.topics.occurrences, good, 1);
    await waitFor(
      'the good partition to be applied',
      async () => (await totalCount(db.pool)) === 100,
    );
    // 30 bad of 130 overall (23%) would pass one limiter for the consumer; partition 0's own is at 100%
    await produceRaw(
      ns.topics.occurrences,
      Array.from({ length: 30 }, (_, i) => ({ key: `bad-${i}`, value: Buffer.from(`bad ${i}`) })),
      0,
    );
    await expect(stopped).resolves.toMatchObject({
      name: 'DlqLimitExceeded',
      limit: 'max_invalid_ratio',
    });
    expect(await storedNextOffset(db.pool, 'per-partition', ns.topics.occurrences, 0)).toBe(-1);
  });
});

import { dlqTopic } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { HEADER } from '../src/index.js';
import {
  codecFor,
  countsOf,
  expectedCounts,
  encodeAll,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  readAll,
  spawnCounter,
  totalCount,
  unpublished,
  waitFor,
} from './support.js';

let ns: IsolatedTopics;
let db: IsolatedDatabase;
const children: RunningEntryPoint[] = [];

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 4 } });
  db = await isolatedDatabase(counterDatabase);
  await liveProjects(db.pool, [1, 2, 3]);
});
afterAll(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await db.drop();
  await ns.drop();
});

it('two members of one group, partitions moving between them mid-run (second starts, first is killed): exact results', async () => {
  const values = Array.from({ length: 12_000 }, (_, i) =>
    occurrence(i, { seed: 'rebalance', fingerprints: 25 }),
  );
  const encoded = await encodeAll(codecFor(ns.topics), values);
  const env = {
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    DATABASE_URL: db.url,
    SHOAL_CONSUMER_GROUP: 'rebalance',
    SHOAL_SESSION_TIMEOUT_MS: '2000',
    SHOAL_MAX_BATCH_SIZE: '100',
  };
  // two thirds while both members run, the last third only after the second has taken over
  const publishing = (async () => {
    for (let i = 0; i < 8000; i += 1000) {
      await produceRaw(ns.topics.occurrences, encoded.slice(i, i + 1000));
      await new Promise((r) => setTimeout(r, 400));
    }
  })();
  const ownsAllFour = (member: RunningEntryPoint) =>
    member.output.some(
      (line) =>
        line.includes('"partitions assigned"') &&
        (line.match(/\[([\d,]+)\]/)?.[1]?.split(',').length ?? 0) === 4,
    );

  const first = spawnCounter(env);
  children.push(first);
  await first.ready;
  await waitFor('the first member to make progress', async () => (await totalCount(db.pool)) > 500);
  const second = spawnCounter(env);
  children.push(second);
  await second.ready; // the group rebalanced: partitions split between the two
  await waitFor('both to make progress', async () => (await totalCount(db.pool)) > 3000);
  first.child.kill('SIGKILL'); // its partitions move to the second after the session times out
  await first.exited;
  await publishing;
  await waitFor(
    'the second member to take over all four partitions',
    async () => ownsAllFour(second),
    60_000,
  );
  await produceRaw(ns.topics.occurrences, encoded.slice(8000));

  await waitFor(
    'every message applied and published',
    async () => (await totalCount(db.pool)) === values.length && (await unpublished(db.pool)) === 0,
    120_000,
  );

  expect(await countsOf(db.pool)).toEqual(expectedCounts(values));
  const events = await readAll(ns.topics.groupEvents);
  expect(new Set(events.map((e) => e.headers[HEADER.messageId])).size).toBe(values.length);
  expect(await readAll(dlqTopic(ns.topics.occurrences))).toEqual([]);
}, 240_000);

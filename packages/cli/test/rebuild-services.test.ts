import type { GroupEvent } from '@shoal/contracts';
import {
  spawnEntryPoint,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  dedupMain,
  dedupTestKit,
  groupActivity,
  groupCreated,
  publishGroupEvents as publishDedupInput,
} from '../../../services/dedup/test/support.js';
import { regressionTestKit, rowsOf } from '../../../services/regression/test/kit.js';
import {
  changeIdOf,
  confirmation,
  publishGroupEvents,
  regressingGroup,
} from '../../../services/regression/test/support.js';
import { shoalRunners } from './support.js';

// `shoal rebuild` of regression and dedup, each from its own rebuild.json (the bin as a process,
// the services run for real as processes, SIGKILLed while their input flows): an empty diff, and a
// swap that keeps the live ids. grouping's rebuild, races and refusals: rebuild.test.ts.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const children: RunningEntryPoint[] = [];
afterAll(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
});

/** Publishes `slices` one after another while the service is SIGKILLed after each, then starts it for good. */
async function publishWhileKilling(
  start: () => RunningEntryPoint,
  slices: (() => Promise<void>)[],
): Promise<RunningEntryPoint> {
  for (const publish of slices) {
    const child = start();
    children.push(child);
    await Promise.race([child.ready, child.exited]);
    await publish();
    await sleep(200 + Math.random() * 800);
    child.child.kill('SIGKILL');
    await child.exited;
  }
  const live = start();
  children.push(live);
  return live;
}

const summaryOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.type === 'summary')!;

async function rebuildThenSwap(
  shoal: ReturnType<typeof shoalRunners>['shoal'],
  service: string,
  identities: () => Promise<unknown[]>,
) {
  const diff = shoal(['rebuild', service, '--json']);
  expect(diff.stderr, diff.stdout.slice(0, 3000)).toContain('no differences');
  expect(diff.status).toBe(0);
  expect(summaryOf(diff.stdout)).toMatchObject({ differences: 0, rebuilt: `${service}_rebuild` });
  const before = await identities();
  const swap = shoal(['rebuild', service, '--swap', '--yes', '--json']);
  expect(swap.stderr).toContain('swapped');
  expect(swap.status).toBe(0);
  expect(await identities()).toEqual(before);
}

describe('shoal rebuild regression', () => {
  const kit = regressionTestKit();
  it('after SIGKILLs: an empty diff, and a swap keeps each record id', async () => {
    const stack = await kit.fresh({ groupEvents: 3 });
    const group = `regression-${stack.db.name}`;
    const groups = Array.from({ length: 40 }, (_, i) => i + 1);
    await publishWhileKilling(
      () => kit.startRegression(stack),
      [0, 1, 2, 3].map(
        (s) => () =>
          publishGroupEvents(stack, groups.slice(s * 10, s * 10 + 10).flatMap(regressingGroup)),
      ),
    );
    const proposals = async () =>
      (
        await rowsOf<{ n: number }>(
          stack.db,
          'SELECT count(*)::int AS n FROM regression.regressions',
        ).catch(() => [{ n: 0 }])
      )[0]!.n;
    await waitFor('40 proposals', async () => (await proposals()) === 40, 120_000);
    // grouping's answers (no grouping runs here) confirm half of them
    await publishGroupEvents(
      stack,
      await Promise.all(
        groups.slice(0, 20).map(async (g) => confirmation(g, await changeIdOf(stack.db, g))),
      ),
    );
    await waitFor(
      '20 confirmed, everything published',
      async () => {
        const [row] = await rowsOf<{ confirmed: number; unpublished: number }>(
          stack.db,
          `SELECT (SELECT count(*) FROM regression.regressions WHERE state = 'confirmed')::int AS confirmed,
                (SELECT count(*) FROM regression.outbox WHERE published_at IS NULL)::int AS unpublished`,
        );
        return row!.confirmed === 20 && row!.unpublished === 0;
      },
      60_000,
    );
    const { shoal } = shoalRunners(() => ({
      DATABASE_URL: stack.db.url,
      SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
      SHOAL_CONSUMER_GROUP: group,
    }));
    await rebuildThenSwap(shoal, 'regression', () =>
      rowsOf(
        stack.db,
        'SELECT change_id, id::text, state FROM regression.regressions ORDER BY change_id',
      ),
    );
  }, 300_000);
});

describe('shoal rebuild dedup', () => {
  const kit = dedupTestKit();
  let ns: IsolatedTopics;
  let db: IsolatedDatabase;
  it('after SIGKILLs: an empty diff, and a swap keeps each incident id', async () => {
    ({ ns, db } = await kit.fresh(3));
    const group = uniqueName('dedup-');
    // 60 groups over 6 messages whose numbers dedup masks: 6 incidents, each group active once
    const events = (from: number): GroupEvent[] =>
      Array.from({ length: 15 }, (_, i) => from + i).flatMap((g) => [
        groupCreated(g, g, { message: `Order ${1000 + g} not found in shard ${g % 6}x` }),
        groupActivity(g, 2, g + 5),
      ]);
    await publishWhileKilling(
      () => {
        const child = spawnEntryPoint(
          dedupMain,
          {
            DATABASE_URL: db.url,
            SHOAL_TOPIC_NAMESPACE: ns.namespace,
            SHOAL_CONSUMER_GROUP: group,
            SHOAL_SESSION_TIMEOUT_MS: '3000',
          },
          '"partitions assigned"',
        );
        return child;
      },
      [1, 16, 31, 46].map((from) => () => publishDedupInput(ns, events(from))),
    );
    const count = async (sql: string) => (await db.pool.query<{ n: number }>(sql)).rows[0]!.n;
    await waitFor(
      '60 members, every event published',
      async () =>
        (await count('SELECT count(*)::int AS n FROM members WHERE times_seen = 2')) === 60 &&
        (await count('SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL')) === 0,
      120_000,
    );
    expect(
      await count('SELECT count(DISTINCT incident_id)::int AS n FROM members'),
    ).toBeGreaterThan(1);
    const { shoal } = shoalRunners(() => ({
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      SHOAL_CONSUMER_GROUP: group,
    }));
    await rebuildThenSwap(
      shoal,
      'dedup',
      async () =>
        (
          await db.pool.query(
            'SELECT group_id::text, incident_id::text FROM dedup.members ORDER BY group_id',
          )
        ).rows,
    );
  }, 300_000);
});

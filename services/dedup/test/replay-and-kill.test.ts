import {
  spawnEntryPoint,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type RunningEntryPoint,
} from '@shoal/testing';
import type { GroupEvent } from '@shoal/contracts';
import { expect, it } from 'vitest';
import {
  appliedCount,
  dedupMain,
  dedupTestKit,
  groupActivity,
  groupCreated,
  incidentEvents,
  publishGroupEvents,
  unpublished,
} from './support.js';

// Exactly-once effects: a replay of every group event changes nothing; a rebuild from the log
// equals the live read model; SIGKILLs mid-batch (before commit, between publish and mark, and at
// random instants) leave every count exact and every incident event published once by id.

const { fresh, start, database, cleanup } = dedupTestKit();

/**
 * Waits for the child to take its partitions, or to be killed first (its relay may reach the crash
 * hook at start, publishing what a killed run left in the outbox); one that exits on its own fails
 * the test with its output.
 */
async function assignedOrKilled(child: RunningEntryPoint) {
  const exited = await Promise.race([child.ready.then(() => false), child.exited.then(() => true)]);
  const code = exited ? await child.exited : null;
  if (code !== null)
    throw new Error(`dedup exited with ${code}:\n${child.output.slice(-20).join('\n')}`);
}

const KEYS = 12;
const GROUPS = 120;
const REPORTS = 15;

/** A word per key: a number in it would be masked, and every key would be one. */
const shardName = (k: number) => String.fromCharCode(97 + k).repeat(3);

/** Group g (created at g seconds) has key g % KEYS; REPORTS activity reports, the last total g + REPORTS. */
function workload(): { events: GroupEvent[]; finalTimesSeen: Map<number, number> } {
  const perGroup = Array.from({ length: GROUPS }, (_, i) => {
    const g = i + 1;
    return [
      groupCreated(g, g, {
        message: `Lock ${g * 13} timed out in shard ${shardName(g % KEYS)}`,
        component: 'store',
      }),
      ...Array.from({ length: REPORTS }, (_, r) => groupActivity(g, g + r + 1, g + 60 * (r + 1))),
    ];
  });
  // interleaved across groups, each group's own events in order
  const events: GroupEvent[] = [];
  for (let r = 0; r <= REPORTS; r++) for (const list of perGroup) events.push(list[r]!);
  return {
    events,
    finalTimesSeen: new Map(perGroup.map((_, i) => [i + 1, i + 1 + REPORTS])),
  };
}

/** The read model in a form two databases can be compared by: incidents named by their canonical group. */
const readModel = async (db: IsolatedDatabase) =>
  (
    await db.pool.query(
      `SELECT m.group_id::int, i.canonical_group_id::int AS canonical, m.times_seen::int,
              m.first_seen, m.last_seen, m.dedup_key
       FROM members m LEFT JOIN incidents i ON i.id = m.incident_id ORDER BY m.group_id`,
    )
  ).rows as { group_id: number; canonical: number; times_seen: number }[];

function expectExact(
  model: Awaited<ReturnType<typeof readModel>>,
  finalTimesSeen: Map<number, number>,
) {
  // every key's groups were created within the window of each other: the oldest is canonical
  const expected = [...finalTimesSeen].map(([group, times]) => ({
    group_id: group,
    canonical: group % KEYS === 0 ? KEYS : group % KEYS,
    times_seen: times,
  }));
  expect(
    model.map((r) => ({ group_id: r.group_id, canonical: r.canonical, times_seen: r.times_seen })),
  ).toEqual(expected);
}

it('a replay of every group event changes nothing, and a rebuild from the log equals the live read model', async () => {
  const { ns, db } = await fresh();
  await start(ns, db);
  const { events, finalTimesSeen } = workload();
  await publishGroupEvents(ns, events);
  await waitFor(
    'every event applied',
    async () => (await appliedCount(db)) === events.length,
    120_000,
  );
  await waitFor('the outbox published', async () => (await unpublished(db)) === 0);
  const live = await readModel(db);
  expectExact(live, finalTimesSeen);
  const published = (await incidentEvents(ns)).map((e) => e.event_id);
  expect(new Set(published).size).toBe(GROUPS);

  // the same records again (same message ids: a redelivery, or a replay of every one)
  await publishGroupEvents(ns, events);
  await waitFor(
    'the replay seen as duplicates',
    async () =>
      (
        await db.pool.query(
          `SELECT 1 FROM consumer_offsets o WHERE o.topic = $1 GROUP BY o.topic HAVING sum(o.next_offset) = $2`,
          [ns.topics.groupEvents, 2 * events.length],
        )
      ).rowCount === 1,
    120_000,
  );
  expect(await appliedCount(db)).toBe(events.length);
  expect(await readModel(db)).toEqual(live);
  expect((await incidentEvents(ns)).map((e) => e.event_id)).toEqual(published);

  // a second database built from the log by a group of its own
  const rebuilt = await database();
  await start(ns, rebuilt);
  await waitFor(
    'the rebuild',
    async () => (await appliedCount(rebuilt)) === events.length,
    120_000,
  );
  expect(await readModel(rebuilt)).toEqual(live);
}, 300_000);

it('SIGKILLed mid-batch again and again, it ends with every count exact and each incident event once', async () => {
  const { ns, db } = await fresh();
  const { events, finalTimesSeen } = workload();
  await publishGroupEvents(ns, events);
  const env = {
    DATABASE_URL: db.url,
    SHOAL_TOPIC_NAMESPACE: ns.namespace,
    SHOAL_CONSUMER_GROUP: uniqueName('dedup-kill-'),
    // small batches: each round applies a few before its kill, so most kills strike mid-stream
    SHOAL_MAX_BATCH_SIZE: '10',
    LOG_LEVEL: 'info',
    // each new process waits for the killed one's session to expire before it gets partitions
    SHOAL_SESSION_TIMEOUT_MS: '3000',
  };
  const points = ['consumer:before-commit', 'relay:published'];
  // kills that struck with messages still to apply (the loop ends early once all are applied)
  let midwayKills = 0;
  for (let round = 0; round < 6 && (await appliedCount(db)) < events.length; round++) {
    const crashAt = `${points[round % 2]}:${1 + Math.floor(Math.random() * 3)}`;
    const child = spawnEntryPoint(
      dedupMain,
      { ...env, SHOAL_CRASH_AT: crashAt },
      '"partitions assigned"',
    );
    cleanup(async () => child.child.kill('SIGKILL'));
    // and an outside kill at a random instant, if the hook has not struck first
    await assignedOrKilled(child);
    const outside = setTimeout(() => child.child.kill('SIGKILL'), 100 + Math.random() * 700);
    const code = await child.exited;
    clearTimeout(outside);
    expect(code).toBeNull(); // killed, never exited on its own
    if ((await appliedCount(db)) < events.length) midwayKills += 1;
  }
  expect(midwayKills).toBeGreaterThanOrEqual(3);

  const last = spawnEntryPoint(dedupMain, env, '"partitions assigned"');
  cleanup(async () => last.child.kill('SIGKILL'));
  await assignedOrKilled(last);
  await waitFor(
    'every event applied',
    async () => (await appliedCount(db)) === events.length,
    180_000,
  );
  await waitFor('the outbox published', async () => (await unpublished(db)) === 0);
  last.child.kill('SIGTERM');
  await last.exited;

  expectExact(await readModel(db), finalTimesSeen);
  const published = await incidentEvents(ns);
  // a kill between publish and mark re-publishes the same ids: each group linked once, by id
  const linked = new Map(published.map((e) => [e.event_id, e.group_id]));
  expect(linked.size).toBe(GROUPS);
  expect(new Set(linked.values()).size).toBe(GROUPS);
}, 300_000);

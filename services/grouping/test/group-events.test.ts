import { ConfigError } from '@shoal/config';
import type { GroupEvent, Occurrence } from '@shoal/contracts';
import { withTransaction } from '@shoal/db';
import { createLogger } from '@shoal/observability';
import {
  isolatedDatabase,
  readAll,
  uniqueName,
  waitFor,
  type IsolatedTopics,
} from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { groupActivityEveryMs, groupActivityJob } from '../src/activity.js';
import { hashOf } from '../src/fingerprints.js';
import { dedupHintsOf, eventTimestampOf } from '../src/signal.js';
import {
  groupingTestKit,
  occurrence,
  publishEntityChanges,
  settled,
  timesSeen,
  uniqueUuid,
} from './kit.js';
import { groupingDatabase, startGrouping } from './support.js';

const { fresh, start, cleanup } = groupingTestKit();

const eventsOn = async (ns: IsolatedTopics) =>
  (await readAll(ns.topics.groupEvents)).map(
    (r) => JSON.parse(r.value!.subarray(5).toString()) as GroupEvent,
  );

/** An occurrence with an embedded Sentry event: release, environment, timestamp, a stack. */
const sentryLike = (
  i: number,
  fingerprint: string,
  release: string,
  extra: Partial<Occurrence> = {},
) =>
  occurrence(i, fingerprint, 1, {
    event_id: undefined,
    subtitle: 'cart.ts in computeTotal',
    culprit: 'computeTotal(cart.ts)',
    level: 'error',
    event: {
      event_id: uniqueUuid().replace(/-/g, ''),
      timestamp: 1764000000.5 + i,
      release,
      environment: 'production',
      transaction: 'POST /cart/checkout',
      exception: {
        values: [
          { type: 'Cause', stacktrace: { frames: [{ function: 'inner', in_app: true }] } },
          {
            type: 'TypeError',
            stacktrace: {
              frames: [
                { function: 'main', filename: 'server.ts', lineno: 3, in_app: true },
                { function: 'dispatch', module: 'express.router', lineno: 40, in_app: false },
                { function: 'handler', filename: 'checkout.ts', lineno: 12, in_app: true },
                { function: 'computeTotal', filename: 'cart.ts', lineno: 88, in_app: true },
              ],
            },
          },
        ],
      },
    },
    ...extra,
  });

describe('group events at the grain downstream needs', () => {
  it('an occurrence on an unresolved group emits no per-occurrence event; on a resolved or ignored group occurrence_grouped, with release, environment, event timestamp and detection time; group_created carries the first occurrence’s signal', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    const first = sentryLike(0, 'checkout', 'web@1', { shoal: { trace_id: 'trace-0' } });
    await producer.publishOccurrence(first);
    for (const i of [1, 2]) await producer.publishOccurrence(sentryLike(i, 'checkout', 'web@1'));
    await waitFor('three grouped', async () => (await timesSeen(db)) === 3);

    await producer.publishStatusChange({
      project_id: 1,
      fingerprint: ['checkout'],
      new_status: 1,
      new_substatus: null,
    });
    const statusIs = (s: string) => async () =>
      (await db.pool.query('SELECT 1 FROM groups WHERE status = $1', [s])).rowCount === 1;
    await waitFor('resolved', statusIs('resolved'));
    const regressing = sentryLike(3, 'checkout', 'web@2');
    await producer.publishOccurrence(regressing);
    await waitFor('four grouped', async () => (await timesSeen(db)) === 4);
    await producer.publishStatusChange({
      project_id: 1,
      fingerprint: ['checkout'],
      new_status: 2,
      new_substatus: 1,
    });
    await waitFor('ignored', statusIs('ignored'));
    const escalating = occurrence(4, 'checkout');
    await producer.publishOccurrence(escalating);
    await waitFor('five grouped', async () => (await timesSeen(db)) === 5);
    await waitFor('every event published', () => settled(db));

    const events = (await eventsOn(ns)).filter((e) => e.event_type !== 'group_activity');
    const groupId = Number((await db.pool.query('SELECT id FROM groups')).rows[0].id);
    expect(events.map((e) => e.event_type)).toEqual([
      'group_created',
      'release_seen',
      'status_changed',
      'release_seen',
      'occurrence_grouped',
      'status_changed',
      'occurrence_grouped',
    ]);
    expect(events[0]).toEqual({
      event_id: events[0]!.event_id,
      event_type: 'group_created',
      occurred_at: new Date(first.detection_time * 1000).toISOString(),
      group_id: groupId,
      project_id: 1,
      short_id: 'P1-1',
      primary_hash: hashOf('checkout'),
      primary_fingerprint: 'checkout',
      group_type: 1,
      occurrence_id: first.id,
      level: 'error',
      title: first.issue_title,
      subtitle: 'cart.ts in computeTotal',
      culprit: 'computeTotal(cart.ts)',
      release: 'web@1',
      environment: 'production',
      status: 'unresolved',
      trace_id: 'trace-0',
      dedup_hints: {
        message: first.issue_title,
        component: 'computeTotal(cart.ts)',
        route: 'POST /cart/checkout',
        stack_frames: ['computeTotal cart.ts:88', 'handler checkout.ts:12', 'main server.ts:3'],
      },
    });
    expect(events[4]).toEqual({
      event_id: events[4]!.event_id,
      event_type: 'occurrence_grouped',
      occurred_at: new Date(regressing.detection_time * 1000).toISOString(),
      group_id: groupId,
      project_id: 1,
      primary_hash: hashOf('checkout'),
      occurrence_id: regressing.id,
      detection_time: regressing.detection_time,
      event_timestamp: new Date((1764000000.5 + 3) * 1000).toISOString(),
      level: 'error',
      title: regressing.issue_title,
      release: 'web@2',
      environment: 'production',
      status: 'resolved',
    });
    expect(events[6]).toMatchObject({
      occurrence_id: escalating.id,
      status: 'ignored',
      release: null,
      environment: null,
    });
    expect(events[6]).not.toHaveProperty('event_timestamp');
  });

  it('release_seen once per release per project, with the time of the occurrence that brought it first, however many batches and partitions see it', async () => {
    const { ns, producer, db } = await fresh();
    const group = uniqueName('grouping-');
    await Promise.all([start(ns, db, group), start(ns, db, group)]);
    const withRelease = (i: number, fingerprint: string, project: number, release: string) =>
      occurrence(i, fingerprint, project, { event: { event_id: uniqueUuid(), release } });
    const sent = [
      ...Array.from({ length: 20 }, (_, i) => withRelease(10 + i, `f-${i}`, 1, 'web@1')),
      ...Array.from({ length: 5 }, (_, i) => withRelease(i, `f-${i}`, 2, 'web@1')),
      withRelease(50, 'f-0', 1, 'web@2'),
      withRelease(40, 'f-1', 1, 'web@2'),
    ];
    await Promise.all(sent.map((o) => producer.publishOccurrence(o)));
    await waitFor('all grouped', async () => (await timesSeen(db)) === sent.length);
    await waitFor('every event published', () => settled(db));

    const seen = (await eventsOn(ns)).filter((e) => e.event_type === 'release_seen');
    expect(seen.map((e) => `${e.project_id}:${e.release}`).sort()).toEqual([
      '1:web@1',
      '1:web@2',
      '2:web@1',
    ]);
    const { rows } = await db.pool.query(
      'SELECT project_id::int, version, first_seen FROM releases_seen ORDER BY 1, 2',
    );
    expect(rows.length).toBe(3);
    for (const event of seen) {
      const row = rows.find(
        (r) => r.project_id === event.project_id && r.version === event.release,
      );
      expect(new Date(event.occurred_at)).toEqual(row.first_seen);
    }
    // one release is not the same as an entity change's release: that table is untouched
    expect((await db.pool.query('SELECT 1 FROM releases')).rowCount).toBe(0);
  });

  it('group_activity: per group, deltas sum to its times seen; the latest occurrence’s signal and newly seen environments ride along', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'), { activityEveryMs: 100 });
    const envOf = (env: string, i: number, f: string, trace?: string) =>
      occurrence(i, f, 3, { shoal: { environment: env, ...(trace ? { trace_id: trace } : {}) } });
    await Promise.all([0, 1, 2].map((i) => producer.publishOccurrence(envOf('staging', i, 'a'))));
    await producer.publishOccurrence(envOf('production', 1, 'b'));
    await waitFor('reported', async () =>
      (await eventsOn(ns)).some((e) => e.event_type === 'group_activity' && e.times_seen === 3),
    );
    await Promise.all(
      [5, 6].map((i) => producer.publishOccurrence(envOf('production', i, 'a', `trace-${i}`))),
    );
    await producer.publishOccurrence(envOf('staging', 7, 'a', 'trace-7'));
    await waitFor('all reported', async () => (await timesSeen(db)) === 7 && (await settled(db)));

    const activity = (await eventsOn(ns)).filter((e) => e.event_type === 'group_activity');
    const { rows: groups } = await db.pool.query<{
      id: string;
      primary_hash: string;
      times_seen: string;
    }>('SELECT id::text, primary_hash, times_seen::text FROM groups');
    for (const g of groups) {
      const mine = activity.filter((e) => e.group_id === Number(g.id));
      expect(mine.reduce((n, e) => n + e.times_seen_delta!, 0)).toBe(Number(g.times_seen));
      expect(mine.at(-1)!.times_seen).toBe(Number(g.times_seen));
      expect(new Set(mine.map((e) => e.event_id)).size).toBe(mine.length);
    }
    const a = activity.filter(
      (e) => e.group_id === Number(groups.find((g) => g.primary_hash === hashOf('a'))!.id),
    );
    expect(a.flatMap((e) => e.new_environments ?? [])).toEqual(['staging', 'production']);
    expect(a.at(-1)).toMatchObject({
      times_seen: 6,
      first_seen: new Date(1764000000 * 1000).toISOString(),
      last_seen: new Date(1764000007 * 1000).toISOString(),
      level: 'info',
      title: 'Error in a #7',
      trace_id: 'trace-7',
      release: null,
    });
  });

  it('a group deleted before it was reported is not reported: its id is a tombstone', async () => {
    const { ns, producer, db } = await fresh();
    // its first run finds nothing; the next would come after the test
    const group = uniqueName('grouping-');
    const slow = await startGrouping(ns.topics, db.pool, group, {
      activityEveryMs: 600_000,
    });
    await producer.publishOccurrence(occurrence(0, 'gone', 4));
    await producer.publishOccurrence(occurrence(1, 'kept', 4));
    await waitFor('grouped', async () => (await timesSeen(db)) === 2);
    const gone = (
      await db.pool.query('SELECT id::text FROM groups WHERE primary_hash = $1', [hashOf('gone')])
    ).rows[0].id as string;
    await publishEntityChanges(ns, [
      { entity_kind: 'group', entity_id: gone, change: 'deleted', project_id: 4 },
    ]);
    await waitFor(
      'the tombstone',
      async () =>
        (await db.pool.query('SELECT 1 FROM groups WHERE deleted_at IS NOT NULL')).rowCount === 1,
    );
    await slow.stop();

    await start(ns, db, group, { activityEveryMs: 100 });
    await waitFor('the live group reported', () => settled(db));
    const activity = (await eventsOn(ns)).filter((e) => e.event_type === 'group_activity');
    expect(activity).toHaveLength(1);
    expect(activity[0]!.group_id).not.toBe(Number(gone));
  });

  it('group_activity locks groups in the order a batch does, by id as a number: a batch holding group 2 that then takes group 10 goes on, and no deadlock aborts either', async () => {
    const db = await isolatedDatabase(groupingDatabase);
    cleanup(() => db.drop());
    await db.pool.query(
      `INSERT INTO groups (id, project_id, primary_hash, short_number, short_id, group_type, level,
                           title, first_seen, last_seen, times_seen)
       SELECT n, 1, 'h' || n, n, 'P-' || n, 1, 'error', 'a title', now(), now(), 1
       FROM unnest('{2,10}'::bigint[]) AS n`,
    );
    const reported: string[] = [];
    let flush: Promise<void> | undefined;
    await withTransaction(db.pool, async (batch) => {
      await batch.query('SELECT 1 FROM groups WHERE id = 2 FOR NO KEY UPDATE');
      let flushPid: number | undefined;
      flush = withTransaction(
        db.pool,
        async (tx, opened) => {
          flushPid = opened!.rows[0].pid;
          await groupActivityJob('shoal.group-events.v1', 1000).run(tx, {
            emit: (coverage) => void reported.push(coverage),
            logger: createLogger('group-activity-test', 'silent'),
          });
        },
        'SELECT pg_backend_pid() AS pid',
      );
      await waitFor('the flush to wait for group 2', async () => {
        const { rowCount } = await db.pool.query(
          "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
          [flushPid],
        );
        return rowCount === 1;
      });
      // had the flush taken group 10 first (sorting '10' before '2'), this would deadlock with it
      // and PostgreSQL would abort one of the two after its deadlock_timeout
      await batch.query('SELECT 1 FROM groups WHERE id = 10 FOR NO KEY UPDATE');
    });
    await flush;
    expect(reported.sort()).toEqual(['10:1', '2:1']);
  });
});

describe('the signal of an occurrence', () => {
  it('Shoal’s dedup hints win whole; without any, the Sentry fields give only what they hold', () => {
    const hints = { component: 'checkout', stack_frames: ['f a.ts:1'] };
    expect(dedupHintsOf(occurrence(0, 'x', 1, { shoal: { dedup_hints: hints } }))).toEqual(hints);
    expect(dedupHintsOf(occurrence(0, 'x'))).toEqual({ message: 'Error in x #0' });
    // a top-level stack (a message event), frames with only a module or a function
    expect(
      dedupHintsOf(
        occurrence(0, 'x', 1, {
          event: {
            event_id: uniqueUuid(),
            stacktrace: {
              frames: [{ module: 'app.jobs', in_app: true }, { function: 'run', in_app: true }, {}],
            },
          },
        }),
      ).stack_frames,
    ).toEqual(['run', 'app.jobs']);
  });

  it('an embedded event of any other shape gives no frames, never failing the occurrence', () => {
    const framesOf = (event: Record<string, unknown>) =>
      dedupHintsOf(occurrence(0, 'x', 1, { event: { event_id: uniqueUuid(), ...event } }))
        .stack_frames;
    expect(framesOf({ exception: { values: 'x' } })).toBeUndefined();
    expect(framesOf({ exception: { values: [null] } })).toBeUndefined();
    expect(framesOf({ stacktrace: { frames: 'x' } })).toBeUndefined();
    expect(
      framesOf({ stacktrace: { frames: [null, 'f', { in_app: true, function: 5, lineno: 1 }] } }),
    ).toBeUndefined();
    expect(
      dedupHintsOf(occurrence(0, 'x', 1, { event: { event_id: uniqueUuid(), transaction: 7 } })),
    ).toEqual({ message: 'Error in x #0' });
  });

  it('an event timestamp a date-time cannot write is left out, never failing the occurrence', () => {
    const at = (timestamp: string | number) =>
      eventTimestampOf(occurrence(0, 'x', 1, { event: { event_id: uniqueUuid(), timestamp } }));
    expect(at('2026-11-25T10:00:00Z')).toBe('2026-11-25T10:00:00.000Z');
    expect(at(1e12)).toBeUndefined();
    expect(at('yesterday')).toBeUndefined();
    expect(eventTimestampOf(occurrence(0, 'x'))).toBeUndefined();
  });
});

describe('SHOAL_GROUP_ACTIVITY_SECONDS', () => {
  it('defaults to 5 s; fractions are allowed; anything but a positive number is refused, naming it', () => {
    expect(groupActivityEveryMs({})).toBe(5000);
    expect(groupActivityEveryMs({ SHOAL_GROUP_ACTIVITY_SECONDS: '0.5' })).toBe(500);
    for (const bad of ['0', '-1', 'soon', 'Infinity'])
      expect(() => groupActivityEveryMs({ SHOAL_GROUP_ACTIVITY_SECONDS: bad })).toThrow(
        ConfigError,
      );
    expect(() => groupActivityEveryMs({ SHOAL_GROUP_ACTIVITY_SECONDS: 'soon' })).toThrow(
      'SHOAL_GROUP_ACTIVITY_SECONDS',
    );
  });
});

import fs from 'node:fs';
import path from 'node:path';
import {
  Codec,
  createRegistry,
  dlqTopic,
  schemasDir,
  type GroupEvent,
  type Occurrence,
} from '@shoal/contracts';
import { connections, kafka, readAll, uniqueName, waitFor, withAdmin } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { hashOf } from '../src/fingerprints.js';
import { groupingTestKit, occurrence, publishEntityChanges, settled, timesSeen } from './kit.js';

const { fresh, start } = groupingTestKit();

describe('grouping', () => {
  it('the same new hashes on four partitions, applied by four consumers at once: one group each, and on the group-events topic one group_created per group, no per-occurrence event (the groups are unresolved), and group_activity counting every occurrence once', async () => {
    const { ns, producer, db } = await fresh();
    const group = uniqueName('grouping-');
    await Promise.all([0, 1, 2, 3].map(() => start(ns, db, group)));
    // the project exists first: a transaction creating it would hold the others back
    await producer.publishOccurrence(occurrence(0, 'first'));
    await waitFor('the first group', async () => (await timesSeen(db)) === 1);
    await waitFor('four members sharing the partitions', async () => {
      const { groups } = await withAdmin((admin) => admin.describeGroups([group]));
      return groups[0]?.state === 'Stable' && groups[0].members.length === 4;
    });
    // every hash once on each partition: four transactions race to create its group
    const fingerprints = Array.from({ length: 200 }, (_, k) => `race-${k}`);
    const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
    const perPartition = await Promise.all(
      [0, 1, 2, 3].map((partition) =>
        Promise.all(
          fingerprints.map(async (f) => {
            const value = occurrence(partition, f);
            return { value, encoded: await codec.encode('occurrences', value) };
          }),
        ),
      ),
    );
    const racing = kafka().producer();
    await racing.connect();
    await racing.send({
      topic: ns.topics.occurrences,
      messages: perPartition.flatMap((list, partition) =>
        list.map((o) => ({ partition, key: `1:${o.value.fingerprint[0]}`, value: o.encoded })),
      ),
    });
    await racing.disconnect();
    await waitFor('every occurrence grouped', async () => (await timesSeen(db)) === 801);
    await waitFor('every event published', () => settled(db));

    const { rows: groups } = await db.pool.query<{
      id: string;
      primary_hash: string;
      times_seen: number;
      short_number: number;
    }>(
      'SELECT id::text, primary_hash, times_seen::int, short_number::int FROM groups WHERE short_number > 1 ORDER BY short_number',
    );
    expect(groups.map((g) => g.times_seen)).toEqual(fingerprints.map(() => 4));
    expect(groups.map((g) => g.short_number)).toEqual(fingerprints.map((_, k) => k + 2));
    const groupOfHash = new Map(groups.map((g) => [g.primary_hash, Number(g.id)]));

    const all = (await readAll(ns.topics.groupEvents)).map(
      (r) => JSON.parse(r.value!.subarray(5).toString()) as GroupEvent,
    );
    expect(new Set(all.map((e) => e.event_id)).size).toBe(all.length);
    const events = all.filter((e) => groupOfHash.has(e.primary_hash!));
    const created = events.filter((e) => e.event_type === 'group_created');
    expect(created.map((e) => e.group_id).sort((a, b) => a - b)).toEqual(
      [...groupOfHash.values()].sort((a, b) => a - b),
    );
    for (const e of created) {
      expect(e.group_id).toBe(groupOfHash.get(e.primary_hash!));
      expect(e.project_id).toBe(1);
    }
    expect(events.filter((e) => e.event_type === 'occurrence_grouped')).toEqual([]);
    const reported = new Map<number, number>();
    for (const e of all.filter((e) => e.event_type === 'group_activity'))
      reported.set(e.group_id, (reported.get(e.group_id) ?? 0) + e.times_seen_delta!);
    for (const id of groupOfHash.values()) expect(reported.get(id)).toBe(4);
  });

  it('references to a deleted project or environment are dead-lettered stale_reference with their entity; an unknown detector and a status change without a group are held; the rest flows', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    // tombstones and a known detector arrive on the entity-changes topic
    await publishEntityChanges(ns, [
      { entity_kind: 'project', entity_id: '66', change: 'deleted' },
      { entity_kind: 'environment', entity_id: 'staging', change: 'deleted', project_id: 5 },
      { entity_kind: 'detector', entity_id: '3', change: 'created', project_id: 5 },
    ]);
    await waitFor(
      'the projection',
      async () => (await db.pool.query('SELECT 1 FROM detectors WHERE id = 3')).rowCount === 1,
    );

    const staleProject = occurrence(1, 'a', 66);
    const staleEnv = occurrence(2, 'b', 5, { shoal: { environment: 'staging' } });
    const unknownDetector = occurrence(3, 'c', 5, { shoal: { detector_id: 99 } });
    const fine = [
      occurrence(4, 'd', 5, { shoal: { environment: 'production', detector_id: 3 } }),
      occurrence(5, 'e', 5),
    ];
    const before = (
      await withAdmin((a) => a.fetchTopicOffsets(dlqTopic(ns.topics.occurrences)))
    ).reduce((n, p) => n + Number(p.high), 0);
    await Promise.all(
      [staleProject, staleEnv, unknownDetector, ...fine].map((o) => producer.publishOccurrence(o)),
    );
    await producer.publishStatusChange({
      project_id: 5,
      fingerprint: ['never-seen'],
      new_status: 1,
      new_substatus: null,
    });
    await producer.publishStatusChange({
      project_id: 5,
      fingerprint: ['d'],
      new_status: 1,
      new_substatus: null,
    });

    await waitFor(
      'failures recorded',
      async () => (await db.pool.query('SELECT 1 FROM message_failures')).rowCount === 2,
    );
    const { rows: failures } = await db.pool.query(
      'SELECT reason, entity, entity_id, action FROM message_failures ORDER BY entity',
    );
    expect(failures).toEqual([
      { reason: 'stale_reference', entity: 'environment', entity_id: '5:staging', action: 'dlq' },
      { reason: 'stale_reference', entity: 'project', entity_id: '66', action: 'dlq' },
    ]);
    await waitFor(
      'the unknown references held',
      async () => (await db.pool.query('SELECT 1 FROM held_messages')).rowCount === 2,
    );
    const { rows: held } = await db.pool.query(
      'SELECT entity, entity_id FROM held_messages ORDER BY entity',
    );
    expect(held).toEqual([
      { entity: 'detector', entity_id: '99' },
      { entity: 'group', entity_id: `5:${hashOf('never-seen')}` },
    ]);
    await waitFor(
      'the resolution',
      async () =>
        (await db.pool.query("SELECT 1 FROM groups WHERE status = 'resolved'")).rowCount === 1,
    );
    expect((await db.pool.query('SELECT count(*)::int AS n FROM groups')).rows[0].n).toBe(2);
    const { rows: envs } = await db.pool.query(
      'SELECT environment, times_seen::int FROM group_environments',
    );
    expect(envs).toEqual([{ environment: 'production', times_seen: 1 }]);
    // dead letters go out through the outbox: the relay may publish them after the batch commits
    const deadLettered = async () =>
      (await withAdmin((a) => a.fetchTopicOffsets(dlqTopic(ns.topics.occurrences)))).reduce(
        (n, p) => n + Number(p.high),
        0,
      ) - before;
    await waitFor('the two dead letters published', async () => (await deadLettered()) >= 2);
    expect(await deadLettered()).toBe(2);
  });

  it('a Sentry issue-platform occurrence, unchanged, becomes a group', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    const sentry = JSON.parse(
      fs.readFileSync(
        path.join(schemasDir, 'examples', 'occurrence.sentry-monitor-failure.json'),
        'utf8',
      ),
    ) as Occurrence;
    await producer.publishOccurrence(sentry);
    await waitFor(
      'the group',
      async () => (await db.pool.query('SELECT 1 FROM groups WHERE project_id = 1')).rowCount! >= 1,
    );
    const { rows } = await db.pool.query(
      "SELECT short_id, level, title, group_type FROM groups WHERE title = 'Monitor failure: poll_service'",
    );
    expect(rows).toEqual([
      {
        short_id: 'P1-1',
        level: 'error',
        title: 'Monitor failure: poll_service',
        group_type: 4001,
      },
    ]);
    const { rows: env } = await db.pool.query('SELECT environment FROM group_environments');
    expect(env).toEqual([{ environment: 'us' }]);
  });
});

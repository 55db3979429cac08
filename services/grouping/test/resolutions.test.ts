import { messageIdHeader, type GroupEvent, type StatusChange } from '@shoal/contracts';
import { metricsRegistry } from '@shoal/observability';
import { readAll, uniqueName, waitFor, type IsolatedTopics } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { groupingTestKit, occurrence, publishEntityChanges, settled, uniqueUuid } from './kit.js';

const { fresh, start } = groupingTestKit();

const statusEventsOn = async (ns: IsolatedTopics) =>
  (await readAll(ns.topics.groupEvents))
    .map((r) => JSON.parse(r.value!.subarray(5).toString()) as GroupEvent)
    .filter((e) => e.event_type === 'status_changed' || e.event_type === 'status_change_noop');

const change = (fingerprint: string, extra: Partial<StatusChange>): StatusChange => ({
  id: uniqueUuid(),
  project_id: 1,
  fingerprint: [fingerprint],
  new_status: 1,
  new_substatus: null,
  ...extra,
});

describe('resolutions, sequence numbers and conditional status changes', () => {
  it('numbers resolutions and sequences per group; status_changed carries the resolution (shoal.resolution or the deprecated resolved_in_* fields), who decided it and the flapping flag; a change whose expect does not hold is a recorded no-op', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    const first = occurrence(0, 'pay');
    await producer.publishOccurrence(first);
    await waitFor(
      'the group',
      async () => (await db.pool.query('SELECT 1 FROM groups')).rowCount === 1,
    );
    const groupId = Number((await db.pool.query('SELECT id FROM groups')).rows[0].id);

    const sent: StatusChange[] = [
      change('pay', {
        update_date: '2026-11-01T10:00:00Z',
        shoal: { resolution: { type: 'in_release', release: 'pay@1.2.0' } },
      }),
      change('pay', { new_status: 0 }),
      change('pay', { shoal: { resolved_in_next_release: true } }),
      // regression's unresolve, expecting resolution 1 that is gone: a no-op
      change('pay', {
        new_status: 0,
        new_substatus: 6,
        shoal: {
          group_id: groupId,
          decided_by: 'regression',
          expect: { status: 1, resolution_id: 1 },
        },
      }),
      // the same, expecting resolution 2 the group holds: applied, flagged flapping
      change('pay', {
        new_status: 0,
        new_substatus: 6,
        shoal: {
          group_id: groupId,
          decided_by: 'regression',
          expect: { status: 1, resolution_id: 2 },
          flapping: true,
        },
      }),
      change('pay', {
        new_status: 2,
        new_substatus: 4,
        shoal: { decided_by: 'lifecycle', ignore: { until_occurrences: 10 } },
      }),
    ];
    for (const c of sent) await producer.publishStatusChange(c);
    await waitFor('every change applied', async () => (await statusEventsOn(ns)).length === 6);
    await waitFor('every event published', () => settled(db));

    const events = await statusEventsOn(ns);
    const common = { group_id: groupId, project_id: 1 };
    expect(events.map(({ event_id: _, occurred_at: __, ...e }) => e)).toEqual([
      {
        ...common,
        event_type: 'status_changed',
        change_id: messageIdHeader('statusChanges', sent[0]!.id!),
        decided_by: 'upstream',
        status: 'resolved',
        previous_status: 'unresolved',
        substatus: null,
        sequence: 1,
        resolution_id: 1,
        flapping: false,
        resolution: {
          type: 'in_release',
          release: 'pay@1.2.0',
          current_release_version: null,
          commit: null,
          resolved_at: '2026-11-01T10:00:00.000Z',
        },
      },
      expect.objectContaining({
        event_type: 'status_changed',
        status: 'unresolved',
        previous_status: 'resolved',
        sequence: 2,
        resolution_id: 1,
      }),
      expect.objectContaining({
        event_type: 'status_changed',
        status: 'resolved',
        sequence: 3,
        resolution_id: 2,
        resolution: expect.objectContaining({ type: 'in_next_release', release: null }),
      }),
      {
        ...common,
        event_type: 'status_change_noop',
        change_id: messageIdHeader('statusChanges', sent[3]!.id!),
        decided_by: 'regression',
        status: 'resolved',
        sequence: 3,
        resolution_id: 2,
        expect: { status: 'resolved', resolution_id: 1 },
      },
      expect.objectContaining({
        event_type: 'status_changed',
        decided_by: 'regression',
        status: 'unresolved',
        substatus: 6,
        sequence: 4,
        resolution_id: 2,
        flapping: true,
      }),
      expect.objectContaining({
        event_type: 'status_changed',
        decided_by: 'lifecycle',
        status: 'ignored',
        sequence: 5,
        flapping: true,
        ignore: { until_occurrences: 10 },
      }),
    ]);
    expect(events[2]!.resolution!.resolved_at).toBe(events[2]!.occurred_at);
    const noops = await metricsRegistry
      .getSingleMetric('shoal_grouping_status_change_noops_total')!
      .get();
    expect(noops.values.find((v) => v.labels.decided_by === 'regression')?.value).toBe(1);
    const { rows } = await db.pool.query(
      'SELECT status, status_sequence::int, resolution_id::int FROM groups',
    );
    expect(rows).toEqual([{ status: 'ignored', status_sequence: 5, resolution_id: 2 }]);
  });

  it('a change naming a deleted group by id is dead-lettered stale_reference, naming the group', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'));
    await producer.publishOccurrence(occurrence(0, 'gone'));
    await waitFor(
      'the group',
      async () => (await db.pool.query('SELECT 1 FROM groups')).rowCount === 1,
    );
    const groupId = String((await db.pool.query('SELECT id FROM groups')).rows[0].id);
    await publishEntityChanges(ns, [
      { entity_kind: 'group', entity_id: groupId, change: 'deleted', project_id: 1 },
    ]);
    await waitFor(
      'the tombstone',
      async () =>
        (await db.pool.query('SELECT 1 FROM groups WHERE deleted_at IS NOT NULL')).rowCount === 1,
    );
    const stale = change('gone', {
      new_status: 0,
      shoal: { group_id: Number(groupId), expect: { status: 1 } },
    });
    await producer.publishStatusChange(stale);
    const failureOf = async () =>
      (
        await db.pool.query(
          'SELECT reason, entity, entity_id FROM message_failures WHERE message_id = $1',
          [messageIdHeader('statusChanges', stale.id!)],
        )
      ).rows[0];
    await waitFor('the failure', async () => (await failureOf()) !== undefined);
    expect(await failureOf()).toEqual({
      reason: 'stale_reference',
      entity: 'group',
      entity_id: groupId,
    });
  });
});

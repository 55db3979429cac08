import { dlqTopic, messageIdHeader, type GroupEvent, type StatusChange } from '@shoal/contracts';
import { DLQ_HEADER } from '@shoal/kafka-runtime';
import { metricsRegistry } from '@shoal/observability';
import { readAll, uniqueName, waitFor } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { hashOf } from '../src/fingerprints.js';
import { groupingTestKit, occurrence, publishEntityChanges, settled, uniqueUuid } from './kit.js';

/**
 * DESIGN.md "Entity changes" and semantics 7 against the real stack: detectors must be announced,
 * a deleted one is stale; a deleted group frees its fingerprints, a discarded one tombstones them;
 * releases keep their tombstones. One consumer, a project per test.
 */

const { fresh, start } = groupingTestKit();
let stack: Awaited<ReturnType<typeof fresh>>;
beforeAll(async () => {
  stack = await fresh();
  await start(stack.ns, stack.db, uniqueName('grouping-'));
});

const resolve = (
  project: number,
  fingerprint: string,
  extra: Pick<StatusChange, 'detector_id'> = {},
): StatusChange & { id: string } => ({
  ...extra,
  id: uniqueUuid(),
  project_id: project,
  fingerprint: [fingerprint],
  new_status: 1,
  new_substatus: null,
});

const rows = async <R extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
  (await stack.db.pool.query<R>(sql, params)).rows;

const groupsOf = (project: number) =>
  rows<{ id: string; short_id: string; status: string; times_seen: number; deleted: boolean }>(
    `SELECT id::text, short_id, status, times_seen::int, deleted_at IS NOT NULL AS deleted
     FROM groups WHERE project_id = $1 ORDER BY id`,
    [project],
  );

/** The failure recorded for the status change with payload id `id`, if any. */
const failureOf = async (id: string, pool = stack.db.pool) =>
  (
    await pool.query<{ reason: string; entity: string; entity_id: string; error_message: string }>(
      'SELECT reason, entity, entity_id, error_message FROM message_failures WHERE message_id = $1',
      [messageIdHeader('statusChanges', id)],
    )
  ).rows[0];

const heldFor = async (entity: string, id: string) =>
  (await rows('SELECT 1 FROM held_messages WHERE entity = $1 AND entity_id = $2', [entity, id]))
    .length;

/** The status change's dead letter on the DLQ topic, by its payload's id. */
async function deadLetterOf(topic: string, id: string) {
  const records = await readAll(dlqTopic(topic));
  return records.find(
    (r) => (JSON.parse(r.value!.subarray(5).toString()) as { id?: string }).id === id,
  );
}

async function groupOnce(project: number, fingerprint: string, i = 1) {
  await stack.producer.publishOccurrence(occurrence(i, fingerprint, project));
  await waitFor(`a group for ${fingerprint}`, async () => (await groupsOf(project)).length > 0);
  return (await groupsOf(project))[0]!;
}

describe('detectors must be announced', () => {
  it('a status change naming a detector announced 5 s later is held, then applied', async () => {
    await groupOnce(21, 'late-detector');
    const change = resolve(21, 'late-detector', { detector_id: 4201 });
    await stack.producer.publishStatusChange(change);
    await waitFor('the change held', async () => (await heldFor('detector', '4201')) === 1);
    await new Promise((r) => setTimeout(r, 5000));
    expect((await groupsOf(21))[0]!.status).toBe('unresolved');

    await publishEntityChanges(stack.ns, [
      { entity_kind: 'detector', entity_id: '4201', change: 'created', project_id: 21 },
    ]);
    await waitFor('the change applied', async () => (await groupsOf(21))[0]!.status === 'resolved');
    expect(await heldFor('detector', '4201')).toBe(0);
    expect(await failureOf(change.id)).toBeUndefined();
  });

  it('a status change naming a deleted detector is dead-lettered stale_reference, naming it', async () => {
    await publishEntityChanges(stack.ns, [
      { entity_kind: 'detector', entity_id: '4202', change: 'deleted', project_id: 22 },
    ]);
    await waitFor(
      'the tombstone',
      async () => (await rows('SELECT 1 FROM detectors WHERE id = 4202')).length === 1,
    );
    const change = resolve(22, 'deleted-detector', { detector_id: 4202 });
    await stack.producer.publishStatusChange(change);
    await waitFor('the failure', async () => (await failureOf(change.id)) !== undefined);
    const failure = (await failureOf(change.id))!;
    expect(failure).toMatchObject({
      reason: 'stale_reference',
      entity: 'detector',
      entity_id: '4202',
    });
    expect(failure.error_message).toMatch(/^detector 4202 was deleted at \d{4}-/);

    let record: Awaited<ReturnType<typeof deadLetterOf>>;
    await waitFor(
      'the dead letter',
      async () =>
        (record = await deadLetterOf(stack.ns.topics.statusChanges, change.id)) !== undefined,
    );
    expect(record!.headers).toMatchObject({
      [DLQ_HEADER.reason]: 'stale_reference',
      [DLQ_HEADER.entity]: 'detector',
      [DLQ_HEADER.entityId]: '4202',
    });
    expect(record!.headers[DLQ_HEADER.errorMessage]).toContain('was deleted at');
  });

  it('a status change naming a detector never announced is dead-lettered unknown_reference once its deadline passed', async () => {
    const own = await fresh();
    await start(own.ns, own.db, uniqueName('grouping-'), {
      env: { SHOAL_HOLD_DEADLINE_SECONDS_DETECTOR: '3' },
    });
    await own.producer.publishOccurrence(occurrence(1, 'never-announced', 23));
    await waitFor(
      'the group',
      async () => (await own.db.pool.query('SELECT 1 FROM groups')).rowCount === 1,
    );
    const change = resolve(23, 'never-announced', { detector_id: 4303 });
    const sent = Date.now();
    await own.producer.publishStatusChange(change);
    const failure = () => failureOf(change.id, own.db.pool);
    await waitFor('the failure', async () => (await failure()) !== undefined);
    expect(Date.now() - sent).toBeGreaterThanOrEqual(3000);
    expect(await failure()).toMatchObject({
      reason: 'unknown_reference',
      entity: 'detector',
      entity_id: '4303',
    });
    expect((await failure())!.error_message).toMatch(
      /^detector 4303 was never announced \(held [3-9] s\)$/,
    );
    const { rows: left } = await own.db.pool.query('SELECT status FROM groups');
    expect(left).toEqual([{ status: 'unresolved' }]);
    expect((await own.db.pool.query('SELECT 1 FROM held_messages')).rowCount).toBe(0);
  });
});

describe('groups', () => {
  it('a deleted group is a tombstone and frees its fingerprints: the next occurrence starts a new group, which the status change naming the fingerprint resolves', async () => {
    const old = await groupOnce(24, 'freed');
    await publishEntityChanges(stack.ns, [
      { entity_kind: 'group', entity_id: old.id, change: 'deleted', project_id: 24 },
    ]);
    await waitFor('the tombstone', async () => (await groupsOf(24))[0]!.deleted);
    expect(await rows('SELECT 1 FROM group_hashes WHERE group_id = $1', [old.id])).toEqual([]);

    // no group behind the fingerprint now: the status change waits for its next occurrence
    const change = resolve(24, 'freed');
    await stack.producer.publishStatusChange(change);
    await waitFor(
      'the change held',
      async () => (await heldFor('group', `24:${hashOf('freed')}`)) === 1,
    );
    await stack.producer.publishOccurrence(occurrence(2, 'freed', 24));
    await waitFor(
      'the new group resolved',
      async () =>
        (await groupsOf(24)).length === 2 && (await groupsOf(24))[1]!.status === 'resolved',
    );
    const [deleted, fresh] = await groupsOf(24);
    expect(deleted).toEqual({ ...old, deleted: true });
    expect(fresh).toMatchObject({ short_id: 'P24-2', times_seen: 1, deleted: false });
    expect(fresh!.id).not.toBe(old.id);
    expect(await failureOf(change.id)).toBeUndefined();
  });

  it('a discarded group tombstones its fingerprints: later occurrences are counted and dropped, a status change is stale; restored, they group again into a new group', async () => {
    const first = occurrence(1, 'noisy', 25, { fingerprint: ['noisy', 'noisy-alt'] });
    await stack.producer.publishOccurrence(first);
    await waitFor('the group', async () => (await groupsOf(25)).length === 1);
    const [group] = await groupsOf(25);
    await publishEntityChanges(stack.ns, [
      { entity_kind: 'group', entity_id: group!.id, change: 'discarded', project_id: 25 },
    ]);
    await waitFor(
      'the fingerprints tombstoned',
      async () => (await rows('SELECT 1 FROM discarded_hashes WHERE project_id = 25')).length === 2,
    );
    const counted = async () =>
      (await metricsRegistry.getSingleMetric('shoal_grouping_discarded_total')!.get()).values.find(
        (v) => v.labels.project === '25',
      )?.value ?? 0;
    const before = await counted();

    const dropped = [
      occurrence(2, 'noisy', 25),
      occurrence(3, 'noisy', 25),
      occurrence(4, 'noisy-alt', 25),
    ];
    for (const o of dropped) await stack.producer.publishOccurrence(o);
    const timesDropped = async () =>
      rows<{ hash: string; times_dropped: number }>(
        'SELECT hash, times_dropped::int FROM discarded_hashes WHERE project_id = 25 ORDER BY times_dropped',
      );
    await waitFor(
      'the occurrences dropped',
      async () => (await timesDropped()).reduce((n, r) => n + r.times_dropped, 0) === 3,
    );
    expect(await timesDropped()).toEqual([
      { hash: hashOf('noisy-alt'), times_dropped: 1 },
      { hash: hashOf('noisy'), times_dropped: 2 },
    ]);
    expect((await counted()) - before).toBe(3);
    expect(await groupsOf(25)).toEqual([{ ...group, deleted: true }]);

    const change = resolve(25, 'noisy');
    await stack.producer.publishStatusChange(change);
    await waitFor('the failure', async () => (await failureOf(change.id)) !== undefined);
    expect(await failureOf(change.id)).toMatchObject({
      reason: 'stale_reference',
      entity: 'group',
      entity_id: `25:${hashOf('noisy')}`,
    });
    expect((await failureOf(change.id))!.error_message).toContain('was deleted at');

    await publishEntityChanges(stack.ns, [
      { entity_kind: 'group', entity_id: group!.id, change: 'restored', project_id: 25 },
    ]);
    await waitFor(
      'the tombstones lifted',
      async () => (await rows('SELECT 1 FROM discarded_hashes WHERE project_id = 25')).length === 0,
    );
    const again = occurrence(5, 'noisy', 25);
    await stack.producer.publishOccurrence(again);
    await waitFor('a new group', async () => (await groupsOf(25)).length === 2);
    expect((await groupsOf(25))[1]).toMatchObject({
      short_id: 'P25-2',
      times_seen: 1,
      deleted: false,
    });

    // the dropped occurrences never reached the group events nor the counts group_activity reports
    await waitFor('every event published', () => settled(stack.db));
    const events = (await readAll(stack.ns.topics.groupEvents))
      .map((r) => JSON.parse(r.value!.subarray(5).toString()) as GroupEvent)
      .filter((e) => e.project_id === 25);
    // the two groups' events are keyed by their ids, so on partitions of their own: no order between them
    expect(
      events
        .filter((e) => e.event_type === 'group_created')
        .map((e) => e.occurrence_id)
        .sort(),
    ).toEqual([first.id, again.id].sort());
    for (const o of dropped) expect(events.map((e) => e.occurrence_id)).not.toContain(o.id);
    const newGroup = Number((await groupsOf(25))[1]!.id);
    const activity = events.filter((e) => e.event_type === 'group_activity');
    expect(activity.filter((e) => e.group_id === newGroup).map((e) => e.times_seen_delta)).toEqual([
      1,
    ]);
    // the discarded group, reported or not before it was discarded, never counted more than its one
    expect(
      activity
        .filter((e) => e.group_id === Number(group!.id))
        .reduce((n, e) => n + e.times_seen_delta!, 0),
    ).toBeLessThanOrEqual(1);
  });
});

describe('releases', () => {
  it('are projected with their tombstones: deleted keeps the row, restored clears it; one without a project is schema_invalid', async () => {
    await publishEntityChanges(stack.ns, [
      {
        entity_kind: 'release',
        entity_id: 'web@1.0.0',
        change: 'created',
        project_id: 26,
        released_at: '2026-11-20T10:00:00.000Z',
        commits: ['9fceb02d0ae598e95dc970b74767f19372d61af8', 'a1b2c3d'],
      },
      { entity_kind: 'release', entity_id: 'web@1.0.0', change: 'deleted', project_id: 26 },
      { entity_kind: 'release', entity_id: 'orphan@1', change: 'created' },
    ]);
    const releases = () =>
      rows<{ version: string; released_at: Date | null; commits: string[]; deleted: boolean }>(
        `SELECT version, released_at, commits, deleted_at IS NOT NULL AS deleted
         FROM releases WHERE project_id = 26`,
      );
    await waitFor('the tombstone', async () => (await releases())[0]?.deleted === true);
    const kept = {
      version: 'web@1.0.0',
      released_at: new Date('2026-11-20T10:00:00.000Z'),
      commits: ['9fceb02d0ae598e95dc970b74767f19372d61af8', 'a1b2c3d'],
    };
    expect(await releases()).toEqual([{ ...kept, deleted: true }]);

    await publishEntityChanges(stack.ns, [
      { entity_kind: 'release', entity_id: 'web@1.0.0', change: 'restored', project_id: 26 },
    ]);
    await waitFor('the restore', async () => (await releases())[0]?.deleted === false);
    expect(await releases()).toEqual([{ ...kept, deleted: false }]);

    const { rows: failed } = await stack.db.pool.query(
      "SELECT reason, error_message FROM message_failures WHERE message_key = 'release:orphan@1'",
    );
    expect(failed).toEqual([
      {
        reason: 'schema_invalid',
        error_message: '/project_id is required for a release ("orphan@1")',
      },
    ]);
    expect((await rows("SELECT 1 FROM releases WHERE version = 'orphan@1'")).length).toBe(0);
  });
});

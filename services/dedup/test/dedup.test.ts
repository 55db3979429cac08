import { explain, parseKeyOptions } from '@shoal/dedup-keys';
import { waitFor } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import {
  at,
  canonicalOf,
  changeEntity,
  command,
  dedupTestKit,
  deleteGroup,
  groupActivity,
  groupCreated,
  incidentEvents,
  incidentOf,
  members,
  publishCommands,
  publishGroupEvents,
  unpublished,
} from './support.js';

// Dedup against the real broker, registry and PostgreSQL: group events in (as grouping's relay
// sends them), incidents in its tables and on shoal.incidents.v1.

const { fresh, start } = dedupTestKit();

const HOUR = 3600;
const timeout = (group: number) => ({
  message: `Timeout after ${group * 7}ms calling https://pay.example.com/v1/charge/${group}`,
  component: 'billing.charge',
  route: `/api/orders/${group}/pay`,
  stack_frames: [`charge billing/pay.ts:${100 + group}`, `handle app/routes.ts:${20 + group}`],
});
const other = (group: number) => ({
  message: `Order ${group} has no customer`,
  component: 'orders',
});

const settledOn = async (db: Parameters<typeof members>[0], groups: number) => {
  await waitFor(`${groups} members`, async () => (await members(db)).length >= groups);
  await waitFor('the outbox published', async () => (await unpublished(db)) === 0);
};

describe('linking by key', () => {
  it('links groups of one key into one incident whose canonical group is the oldest, keeps other keys apart, and counts each member', async () => {
    const { ns, db } = await fresh();
    await start(ns, db);
    // group 3 is the oldest, but its event comes last (another partition, later flush)
    await publishGroupEvents(ns, [
      groupCreated(1, 600, timeout(1)),
      groupCreated(2, 1200, timeout(2)),
      groupCreated(10, 700, other(10)),
      groupCreated(11, 800, other(11)),
      groupCreated(12, 900, { message: 'Disk full on /var' }),
    ]);
    await publishGroupEvents(ns, [
      groupCreated(3, 60, timeout(3)),
      groupActivity(1, 4, 1300),
      groupActivity(2, 2, 1250),
      groupActivity(1, 9, 1400),
      groupActivity(3, 1, 60),
    ]);
    await settledOn(db, 6);
    const incident = await incidentOf(db);
    expect(incident.get(1)).toBe(incident.get(2));
    expect(incident.get(3)).toBe(incident.get(1));
    expect(incident.get(10)).toBe(incident.get(11));
    expect(new Set(incident.values()).size).toBe(3);
    expect(await canonicalOf(db, incident.get(1)!)).toBe(3);
    expect(await canonicalOf(db, incident.get(10)!)).toBe(10);
    const { rows } = await db.pool.query(
      'SELECT members, times_seen::int FROM incident_totals WHERE incident_id = $1',
      [incident.get(1)],
    );
    expect(rows).toEqual([{ members: 3, times_seen: 9 + 2 + 1 }]);
    expect((await members(db)).find((m) => m.group_id === 1)).toMatchObject({
      times_seen: 9,
      last_seen: '2026-11-30T08:23:20.000Z',
    });

    const events = await incidentEvents(ns);
    expect(events.filter((e) => e.event_type === 'incident_linked')).toHaveLength(6);
    const linked3 = events.find((e) => e.group_id === 3)!;
    expect(linked3).toMatchObject({
      key: String(incident.get(3)),
      incident_id: incident.get(3),
      reason: 'dedup_key',
      canonical_group_id: 3,
    });
    expect(events.find((e) => e.group_id === 12)).toMatchObject({ reason: 'new_incident' });
  });

  it('links a group created exactly one window after the incident was last seen (or before it was first), and not one a second further', async () => {
    const { ns, db } = await fresh();
    await start(ns, db, { SHOAL_DEDUP_WINDOW_SECONDS: String(HOUR) });
    const a = { message: 'Queue a stalled' };
    const b = { message: 'Queue b stalled' };
    const [c, d] = [{ message: 'Queue c stalled' }, { message: 'Queue d stalled' }];
    const late = 10 * HOUR;
    await publishGroupEvents(ns, [
      groupCreated(1, 0, a),
      groupActivity(1, 5, 600),
      groupCreated(11, 0, b),
      groupActivity(11, 5, 600),
      groupCreated(21, late, c),
      groupCreated(31, late, d),
    ]);
    await settledOn(db, 4);
    // older groups whose creation arrives late (another partition, a slower flush)
    await publishGroupEvents(ns, [
      groupCreated(2, 600 + HOUR, a),
      groupCreated(12, 601 + HOUR, b),
      groupCreated(22, late - HOUR, c),
      groupCreated(32, late - HOUR - 1, d),
    ]);
    await settledOn(db, 8);
    const incident = await incidentOf(db);
    expect(incident.get(2)).toBe(incident.get(1));
    expect(incident.get(12)).not.toBe(incident.get(11));
    expect(incident.get(22)).toBe(incident.get(21));
    expect(incident.get(32)).not.toBe(incident.get(31));
    // the key now leads to the newer incident
    await publishGroupEvents(ns, [groupCreated(13, 602 + HOUR, b)]);
    await settledOn(db, 9);
    expect((await incidentOf(db)).get(13)).toBe(incident.get(12));
  });

  it('keys only the parts a project counts (SHOAL_DEDUP_KEY_PARTS_BY_PROJECT), and a signal with nothing counted links nothing', async () => {
    const { ns, db } = await fresh();
    await start(ns, db, { SHOAL_DEDUP_KEY_PARTS_BY_PROJECT: '{"7": "message"}' });
    const sameMessage = (route: string) => ({ message: 'Payment declined', route });
    await publishGroupEvents(ns, [
      groupCreated(1, 0, sameMessage('/a'), 7),
      groupCreated(2, 1, sameMessage('/b'), 7),
      groupCreated(3, 0, sameMessage('/a'), 8),
      groupCreated(4, 1, sameMessage('/b'), 8),
      groupCreated(5, 2, {}, 8),
    ]);
    await settledOn(db, 5);
    const incident = await incidentOf(db);
    expect(incident.get(1)).toBe(incident.get(2));
    expect(incident.get(3)).not.toBe(incident.get(4));
    expect(incident.has(5)).toBe(false);
    // what `shoal dedup explain --parts message` prints for group 1 is what dedup stored
    const stored = await db.pool.query(
      'SELECT dedup_key AS key, parts FROM members WHERE group_id = 1',
    );
    const explained = explain(sameMessage('/a'), parseKeyOptions('message'));
    expect(stored.rows).toEqual([{ key: explained.key, parts: explained.parts }]);
  });
});

it('stores and links a signal with NUL, a lone surrogate, and one of 32 KiB, as any other', async () => {
  const { ns, db } = await fresh();
  await start(ns, db);
  const long = 'x'.repeat(32 * 1024);
  await publishGroupEvents(ns, [
    groupCreated(1, 10, { message: 'bad byte \u0000 in 42', route: '/a\u0000b' }),
    groupCreated(2, 20, { message: 'bad byte \u0000 in 7', route: '/a\u0000b' }),
    groupCreated(3, 30, { message: long, component: long }),
    groupCreated(4, 40, { message: 'half a pair \ud800 here', route: '\udc00' }),
  ]);
  await settledOn(db, 4);
  const incident = await incidentOf(db);
  expect(incident.get(1)).toBe(incident.get(2));
  expect(incident.has(3)).toBe(true);
  expect(incident.has(4)).toBe(true);
  const { rows } = await db.pool.query(
    "SELECT parts->>'message' AS message FROM members WHERE group_id = 1",
  );
  expect(rows).toEqual([{ message: 'bad byte \\u0000 in <int>' }]);
});

describe('operators', () => {
  it('a split is sticky: a re-sent group_created leaves it out, and the key links new groups to the original incident', async () => {
    const { ns, db } = await fresh();
    await start(ns, db);
    const created2 = groupCreated(2, 20, timeout(2));
    await publishGroupEvents(ns, [
      groupCreated(1, 10, timeout(1)),
      created2,
      groupCreated(3, 30, timeout(3)),
    ]);
    await settledOn(db, 3);
    const original = (await incidentOf(db)).get(1)!;

    await publishCommands(ns, [
      command({ command: 'split', incident_id: original, group_id: 1, reason: 'payment provider' }),
    ]);
    await waitFor('the split', async () => (await members(db)).some((m) => m.split));
    await waitFor('the outbox published', async () => (await unpublished(db)) === 0);
    const afterSplit = await incidentOf(db);
    expect(afterSplit.get(1)).not.toBe(original);
    expect(await canonicalOf(db, original)).toBe(2);
    expect(await canonicalOf(db, afterSplit.get(1)!)).toBe(1);

    // grouping re-sends group 1's creation (a new event id, so not a duplicate in the ledger)
    await publishGroupEvents(ns, [
      { ...groupCreated(1, 10, timeout(1)) },
      groupCreated(4, 40, timeout(4)),
    ]);
    await settledOn(db, 4);
    const later = await incidentOf(db);
    expect(later.get(1)).toBe(afterSplit.get(1));
    expect(later.get(4)).toBe(original);

    const events = (await incidentEvents(ns)).filter((e) => e.reason === 'split');
    expect(
      events.map((e) => [
        e.event_type,
        e.incident_id,
        e.group_id,
        e.canonical_group_id,
        e.actor,
        e.note,
      ]),
    ).toEqual(
      expect.arrayContaining([
        ['incident_unlinked', original, 1, 2, 'ops@test', 'payment provider'],
        ['incident_linked', afterSplit.get(1), 1, 1, 'ops@test', 'payment provider'],
      ]),
    );
  });

  it('a merge moves members and keys: later groups of either key join the merged incident', async () => {
    const { ns, db } = await fresh();
    await start(ns, db);
    await publishGroupEvents(ns, [
      groupCreated(1, 10, timeout(1)),
      groupCreated(2, 5, other(2)),
      groupActivity(1, 3, 11),
      groupActivity(2, 4, 12),
    ]);
    await settledOn(db, 2);
    const before = await incidentOf(db);
    const [into, from] = [before.get(1)!, before.get(2)!];
    await publishCommands(ns, [
      command({ command: 'merge', incident_id: into, from_incident_id: from }),
    ]);
    await waitFor('the merge', async () => (await incidentOf(db)).get(2) === into);
    expect(await canonicalOf(db, into)).toBe(2);
    const totals = await db.pool.query('SELECT members, times_seen::int FROM incident_totals');
    expect(totals.rows).toEqual([{ members: 2, times_seen: 7 }]);

    await publishGroupEvents(ns, [groupCreated(3, 30, other(3)), groupCreated(4, 40, timeout(4))]);
    await settledOn(db, 4);
    const after = await incidentOf(db);
    expect([after.get(3), after.get(4)]).toEqual([into, into]);
    await waitFor('the merge published', async () =>
      (await incidentEvents(ns)).some((e) => e.event_type === 'incident_merged'),
    );
    expect(
      (await incidentEvents(ns)).find((e) => e.event_type === 'incident_merged'),
    ).toMatchObject({
      incident_id: into,
      merged_incident_id: from,
      member_group_ids: [2, 1],
      canonical_group_id: 2,
    });
  });

  it('groups of two keys merged into one incident, arriving in one batch, join it in order: each event names the canonical group after its own link', async () => {
    const { ns, db } = await fresh(1);
    await start(ns, db);
    await publishGroupEvents(ns, [groupCreated(1, 100, timeout(1)), groupCreated(2, 90, other(2))]);
    await settledOn(db, 2);
    const before = await incidentOf(db);
    const [into, from] = [before.get(1)!, before.get(2)!];
    await publishCommands(ns, [
      command({ command: 'merge', incident_id: into, from_incident_id: from }),
    ]);
    await waitFor('the merge', async () => (await incidentOf(db)).get(2) === into);
    // one partition, one send: one batch, both keys leading to the merged incident
    await publishGroupEvents(ns, [
      groupCreated(3, 80, timeout(3)),
      groupCreated(4, 70, other(4)),
      groupCreated(5, 95, timeout(5)),
    ]);
    await settledOn(db, 5);
    const after = await incidentOf(db);
    expect([3, 4, 5].map((g) => after.get(g))).toEqual([into, into, into]);
    expect(await canonicalOf(db, into)).toBe(4);
    const linked = (await incidentEvents(ns)).filter((e) => e.group_id! >= 3);
    expect(linked.map((e) => [e.group_id, e.canonical_group_id])).toEqual(
      expect.arrayContaining([
        [3, 3],
        [4, 4],
        [5, 4],
      ]),
    );
  });

  it('refuses commands the incidents do not allow, recording why; a refused one changes nothing', async () => {
    const { ns, db } = await fresh();
    await start(ns, db);
    await publishGroupEvents(ns, [
      groupCreated(1, 10, timeout(1)),
      groupCreated(2, 20, timeout(2)),
      groupCreated(3, 5, other(3)),
      groupCreated(4, 5, other(3), 7),
    ]);
    await settledOn(db, 4);
    const incident = await incidentOf(db);
    const [a, b, other7] = [incident.get(1)!, incident.get(3)!, incident.get(4)!];
    const rejections = async () =>
      (await db.pool.query<{ reason: string }>('SELECT reason FROM message_rejections')).rows.map(
        (r) => r.reason,
      );
    await publishCommands(ns, [
      command({ command: 'merge', incident_id: a, from_incident_id: a }),
      command({ command: 'merge', incident_id: a, from_incident_id: 999 }),
      command({ command: 'split', incident_id: a, group_id: 3 }),
      command({ command: 'split', incident_id: b, group_id: 3 }),
      command({ command: 'split', incident_id: a }),
      command({ command: 'split', incident_id: 999, group_id: 1 }),
      command({ command: 'merge', incident_id: a, from_incident_id: other7 }),
    ]);
    await waitFor('seven rejections', async () => (await rejections()).length === 7);
    // commands of different incidents are on different partitions: no order between them
    expect((await rejections()).sort()).toEqual([
      'invalid_merge',
      'invalid_split',
      'not_splittable',
      'not_splittable',
      'other_project',
      'unknown_incident',
      'unknown_incident',
    ]);
    expect(await incidentOf(db)).toEqual(incident);

    await publishCommands(ns, [command({ command: 'merge', incident_id: a, from_incident_id: b })]);
    await waitFor('the merge', async () => (await incidentOf(db)).get(3) === a);
    await publishCommands(ns, [command({ command: 'merge', incident_id: b, from_incident_id: a })]);
    await waitFor('the fifth rejection', async () =>
      (await rejections()).includes('merged_incident'),
    );
    expect((await incidentOf(db)).get(3)).toBe(a);
  });
});

describe('deleted groups', () => {
  it('an entity change naming a group by anything but a whole number is dead-lettered schema_invalid', async () => {
    const { ns, db } = await fresh();
    await start(ns, db);
    await deleteGroup(ns, 'group-9');
    await waitFor(
      'the dead letter',
      async () =>
        (await db.pool.query("SELECT 1 FROM message_failures WHERE reason = 'schema_invalid'"))
          .rowCount === 1,
    );
    expect(await members(db)).toEqual([]);
  });

  it('a deleted group leaves its incident (canonical re-chosen, counts adjusted); a later event naming it follows the stale-reference policy', async () => {
    const { ns, db } = await fresh();
    await start(ns, db);
    await publishGroupEvents(ns, [
      groupCreated(1, 10, timeout(1)),
      groupCreated(2, 20, timeout(2)),
      groupActivity(1, 5, 30),
      groupActivity(2, 3, 40),
    ]);
    await settledOn(db, 2);
    const incident = (await incidentOf(db)).get(1)!;
    await deleteGroup(ns, 1);
    await waitFor('the deletion', async () => (await members(db)).some((m) => m.deleted));
    expect(await canonicalOf(db, incident)).toBe(2);
    const totals = await db.pool.query('SELECT members, times_seen::int FROM incident_totals');
    expect(totals.rows).toEqual([{ members: 1, times_seen: 3 }]);
    await waitFor('the outbox published', async () => (await unpublished(db)) === 0);
    expect((await incidentEvents(ns)).find((e) => e.reason === 'group_deleted')).toMatchObject({
      event_type: 'incident_unlinked',
      incident_id: incident,
      group_id: 1,
      canonical_group_id: 2,
    });

    // its flush raced the deletion: dead-lettered stale_reference (the default policy), counts unchanged
    await publishGroupEvents(ns, [groupActivity(1, 8, 50)]);
    await waitFor(
      'the dead letter',
      async () =>
        (
          await db.pool.query(
            "SELECT 1 FROM message_failures WHERE reason = 'stale_reference' AND entity = 'group'",
          )
        ).rowCount === 1,
    );
    expect((await members(db)).find((m) => m.group_id === 1)).toMatchObject({
      times_seen: 5,
      deleted: true,
      incident_id: null,
    });
  });

  it('with SHOAL_POLICY_STALE_REFERENCE_GROUP=skip a group event for a deleted group is skipped, and one for a group deleted before its creation was seen never links', async () => {
    const { ns, db } = await fresh();
    await start(ns, db, { SHOAL_POLICY_STALE_REFERENCE_GROUP: 'skip' });
    await deleteGroup(ns, 5);
    await waitFor('the tombstone', async () => (await members(db)).some((m) => m.deleted));
    await publishGroupEvents(ns, [groupCreated(5, 10, timeout(5)), groupActivity(5, 2, 20)]);
    await waitFor(
      'two skipped',
      async () =>
        (
          await db.pool.query(
            "SELECT 1 FROM message_failures WHERE reason = 'stale_reference' AND action = 'skip'",
          )
        ).rowCount === 2,
    );
    expect(await members(db)).toEqual([
      expect.objectContaining({ group_id: 5, incident_id: null, times_seen: 0, deleted: true }),
    ]);
  });
});

describe('deleted projects', () => {
  it("a project's deletion cascades: its groups leave their incidents, kept detached with no key leading to them; later events and commands of it are stale references; restored, its new groups start afresh", async () => {
    const { ns, db } = await fresh();
    await start(ns, db);
    await publishGroupEvents(ns, [
      groupCreated(1, 10, timeout(1)),
      groupCreated(2, 20, timeout(2)),
      groupCreated(3, 30, other(3)),
      groupActivity(1, 5, 40),
      groupCreated(4, 10, timeout(4), 2),
      groupCreated(5, 20, timeout(5), 2),
      groupActivity(4, 7, 40, 2),
    ]);
    await settledOn(db, 5);
    const before = await incidentOf(db);
    const [a, b, kept] = [before.get(1)!, before.get(3)!, before.get(4)!];

    await changeEntity(ns, { entity_kind: 'project', entity_id: '1', change: 'deleted' });
    await waitFor(
      "the project's groups tombstoned",
      async () => (await members(db)).filter((m) => m.deleted).length === 3,
    );
    await waitFor('the outbox published', async () => (await unpublished(db)) === 0);
    expect(await incidentOf(db)).toEqual(
      new Map([
        [4, kept],
        [5, kept],
      ]),
    );
    const incidents = await db.pool.query(
      'SELECT id::int, canonical_group_id::int, deleted_at IS NOT NULL AS detached FROM incidents',
    );
    expect(incidents.rows).toHaveLength(3);
    expect(incidents.rows).toEqual(
      expect.arrayContaining([
        { id: a, canonical_group_id: null, detached: true },
        { id: b, canonical_group_id: null, detached: true },
        { id: kept, canonical_group_id: 4, detached: false },
      ]),
    );
    const totals = await db.pool.query(
      'SELECT incident_id::int, times_seen::int FROM incident_totals',
    );
    expect(totals.rows).toEqual([{ incident_id: kept, times_seen: 7 }]);
    const keys = await db.pool.query('SELECT DISTINCT project_id::int FROM dedup_keys');
    expect(keys.rows).toEqual([{ project_id: 2 }]);
    const unlinked = (await incidentEvents(ns)).filter((e) => e.reason === 'project_deleted');
    expect(
      unlinked.map((e) => [e.event_type, e.incident_id, e.group_id, e.canonical_group_id, e.key]),
    ).toEqual(
      expect.arrayContaining([
        ['incident_unlinked', a, 1, null, String(a)],
        ['incident_unlinked', a, 2, null, String(a)],
        ['incident_unlinked', b, 3, null, String(b)],
      ]),
    );
    expect(unlinked).toHaveLength(3);
    // deleted again (upstream re-sends it): nothing more leaves, the first deletion's time stays
    await changeEntity(ns, {
      entity_kind: 'project',
      entity_id: '1',
      change: 'deleted',
      occurred_at: at(30_000),
    });

    // a flush that raced the deletion, a group created just before it, an operator's merge
    await publishGroupEvents(ns, [groupActivity(1, 9, 50), groupCreated(6, 60, timeout(6))]);
    await publishCommands(ns, [command({ command: 'merge', incident_id: a, from_incident_id: b })]);
    const staleProject = async () =>
      (
        await db.pool.query(
          "SELECT 1 FROM message_failures WHERE reason = 'stale_reference' AND entity = 'project' AND entity_id = '1'",
        )
      ).rowCount;
    await waitFor(
      'three stale references to the project',
      async () => (await staleProject()) === 3,
    );
    expect((await members(db)).find((m) => m.group_id === 1)).toMatchObject({ times_seen: 5 });
    expect((await members(db)).some((m) => m.group_id === 6)).toBe(false);
    expect(
      (await db.pool.query('SELECT 1 FROM incidents WHERE merged_into IS NOT NULL')).rowCount,
    ).toBe(0);

    await changeEntity(ns, { entity_kind: 'project', entity_id: '1', change: 'restored' });
    await waitFor(
      'the tombstone lifted',
      async () =>
        (await db.pool.query('SELECT 1 FROM projects WHERE id = 1 AND deleted_at IS NULL'))
          .rowCount === 1,
    );
    // the re-sent deletion came before the restore on the project's partition
    const deletedAt = await db.pool.query(
      'SELECT DISTINCT deleted_at FROM incidents WHERE deleted_at IS NOT NULL',
    );
    expect(deletedAt.rows).toEqual([{ deleted_at: new Date(at(20_000)) }]);
    await publishGroupEvents(ns, [groupCreated(7, 70, timeout(7))]);
    await settledOn(db, 6);
    const restored = (await incidentOf(db)).get(7)!;
    expect([a, b, kept]).not.toContain(restored);
    expect(await canonicalOf(db, restored)).toBe(7);
    expect((await incidentEvents(ns)).filter((e) => e.reason === 'project_deleted')).toHaveLength(
      3,
    );
  });
  it('with SHOAL_REFERENCE_PROJECT=announce, group events of a project never announced wait for its announcement, then link', async () => {
    const { ns, db } = await fresh();
    await start(ns, db, { SHOAL_REFERENCE_PROJECT: 'announce' });
    await publishGroupEvents(ns, [
      groupCreated(1, 10, timeout(1), 3),
      groupCreated(2, 20, timeout(2), 3),
    ]);
    await waitFor(
      'both held',
      async () => (await db.pool.query('SELECT 1 FROM held_messages')).rowCount === 2,
    );
    expect(await members(db)).toEqual([]);
    await changeEntity(ns, { entity_kind: 'project', entity_id: '3', change: 'created' });
    await settledOn(db, 2);
    const incident = await incidentOf(db);
    expect(incident.get(2)).toBe(incident.get(1));
  });
});

import type { IsolatedDatabase } from '@shoal/testing';
import { uniqueName, waitFor } from '@shoal/testing';
import { expect, it } from 'vitest';
import { hashOf } from '../src/fingerprints.js';
import { deleteGroup } from '../src/handler.js';
import { groupingTestKit, occurrence, settled } from './kit.js';

/**
 * A group deleted (as its entity change deletes it) by a transaction that commits while a batch
 * waits for the group's row: the batch is retried and then sees the fingerprint freed, as if the
 * deletion had come first; the deleted group is never touched.
 */

const { fresh, start } = groupingTestKit();

/**
 * Deletes every group of `db` in a transaction held open until `meanwhile` saw a batch wait for it
 * (the group_activity flush has reported the groups already, so only the batch waits).
 */
async function deleteWhile(db: IsolatedDatabase, meanwhile: () => Promise<unknown>) {
  const deleter = await db.pool.connect();
  try {
    await deleter.query('BEGIN');
    const { rows } = await deleter.query<{ id: string }>('SELECT id::text FROM groups');
    for (const { id } of rows)
      await deleteGroup(deleter, Number(id), new Date().toISOString(), false);
    await meanwhile();
    await waitFor(
      'the batch to wait for the deleted row',
      async () =>
        (
          await db.pool.query(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          )
        ).rowCount === 1,
    );
    await deleter.query('COMMIT');
  } finally {
    deleter.release();
  }
}

const groups = (db: IsolatedDatabase) =>
  db.pool
    .query<{ status: string; times_seen: number; deleted: boolean }>(
      'SELECT status, times_seen::int, deleted_at IS NOT NULL AS deleted FROM groups ORDER BY id',
    )
    .then((r) => r.rows);

it('a status change whose group is deleted before its update can lock it is retried, then waits for the freed fingerprint’s next occurrence', async () => {
  const { ns, producer, db } = await fresh();
  await start(ns, db, uniqueName('grouping-'));
  await producer.publishOccurrence(occurrence(1, 'vanishing', 5));
  await waitFor('the group', async () => (await groups(db)).length === 1);
  await waitFor('its activity reported', () => settled(db));

  // the lookup still sees the group; the update waits for the row, then finds it deleted
  await deleteWhile(db, () =>
    producer.publishStatusChange({
      project_id: 5,
      fingerprint: ['vanishing'],
      new_status: 1,
      new_substatus: null,
    }),
  );
  await waitFor(
    'the change held for the fingerprint',
    async () =>
      (
        await db.pool.query('SELECT 1 FROM held_messages WHERE entity = $1 AND entity_id = $2', [
          'group',
          `5:${hashOf('vanishing')}`,
        ])
      ).rowCount === 1,
  );
  expect((await db.pool.query('SELECT 1 FROM message_failures')).rowCount).toBe(0);
  expect(await groups(db)).toEqual([{ status: 'unresolved', times_seen: 1, deleted: true }]);
});

it('an occurrence whose group is deleted before the batch can lock it is retried, then starts a new group', async () => {
  const { ns, producer, db } = await fresh();
  await start(ns, db, uniqueName('grouping-'));
  await producer.publishOccurrence(occurrence(1, 'vanishing', 5));
  await waitFor('the group', async () => (await groups(db)).length === 1);
  await waitFor('its activity reported', () => settled(db));

  await deleteWhile(db, () => producer.publishOccurrence(occurrence(2, 'vanishing', 5)));
  await waitFor('the new group', async () => (await groups(db)).length === 2);
  expect(await groups(db)).toEqual([
    { status: 'unresolved', times_seen: 1, deleted: true },
    { status: 'unresolved', times_seen: 1, deleted: false },
  ]);
  expect((await db.pool.query('SELECT 1 FROM message_failures')).rowCount).toBe(0);
});

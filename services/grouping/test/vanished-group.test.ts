import { uniqueName, waitFor } from '@shoal/testing';
import { expect, it } from 'vitest';
import { groupingTestKit, occurrence } from './kit.js';

const { fresh, start } = groupingTestKit();

it('a group deleted between the lookup and the status change is a stale reference to a group, not a processing error', async () => {
  const { ns, producer, db } = await fresh();
  await start(ns, db, uniqueName('grouping-'));
  await producer.publishOccurrence(occurrence(1, 'vanishing', 5));
  await waitFor(
    'the group',
    async () => (await db.pool.query('SELECT 1 FROM groups')).rowCount === 1,
  );

  // another transaction deletes the group and holds its lock: the lookup still sees the group,
  // the status change's update waits for the row, then finds it gone
  const deleter = await db.pool.connect();
  try {
    await deleter.query('BEGIN');
    await deleter.query('DELETE FROM groups');
    await producer.publishStatusChange({
      project_id: 5,
      fingerprint: ['vanishing'],
      new_status: 1,
      new_substatus: null,
    });
    await waitFor(
      'the status change to wait for the deleted row',
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

  await waitFor(
    'the failure',
    async () => (await db.pool.query('SELECT 1 FROM message_failures')).rowCount === 1,
  );
  const { rows } = await db.pool.query('SELECT reason, entity, action FROM message_failures');
  expect(rows).toEqual([{ reason: 'stale_reference', entity: 'group', action: 'dlq' }]);
});

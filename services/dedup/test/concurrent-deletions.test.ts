import type { PoolClient } from '@shoal/db';
import { TransientError } from '@shoal/kafka-runtime';
import { waitFor, type IsolatedDatabase } from '@shoal/testing';
import { expect, it } from 'vitest';
import { deleteMember, deleteProject, linkByKey, lockLiveProjects } from '../src/incidents.js';
import { at, dedupTestKit } from './support.js';

// A deletion (of a project, of a group) and a batch adding a group, in two transactions at once on
// the real PostgreSQL (the handler's own functions, as its batch calls them): whichever goes first,
// no live member outlives its deleted project or group, and no incident keeps a deleted canonical.

const { database } = dedupTestKit();

/** What a group-events batch does for a new group of `projectId`, in the caller's transaction. */
async function addGroup(tx: PoolClient, projectId: number, groupId: number) {
  await lockLiveProjects(tx, [projectId]);
  await tx.query(
    `INSERT INTO members (group_id, project_id, dedup_key, created_at) VALUES ($1, $2, 'k', $3)`,
    [groupId, projectId, at(groupId)],
  );
  await linkByKey(tx, [{ groupId, projectId, key: 'k', createdAt: at(groupId) }], 3_600_000);
}

const waitingOnLocks = async (db: IsolatedDatabase) =>
  (
    await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    )
  ).rows[0]!.n;

async function inTwoTransactions(
  db: IsolatedDatabase,
  run: (first: PoolClient, second: PoolClient) => Promise<void>,
) {
  const [first, second] = [await db.pool.connect(), await db.pool.connect()];
  try {
    await first.query('BEGIN');
    await second.query('BEGIN');
    await run(first, second);
  } finally {
    for (const client of [first, second]) {
      await client.query('ROLLBACK');
      client.release();
    }
  }
}

it('a deletion waits for a batch adding a group to the project, and its cascade takes that group', async () => {
  const db = await database();
  // the project is known already: an earlier batch added its first group
  const earlier = await db.pool.connect();
  await earlier.query('BEGIN');
  await addGroup(earlier, 1, 1);
  await earlier.query('COMMIT');
  earlier.release();
  await inTwoTransactions(db, async (batch, deletion) => {
    await addGroup(batch, 1, 2);
    let done = false;
    const detached = deleteProject(deletion, 1, at(100)).finally(() => (done = true));
    // without the project's lock it would finish now, blind to the uncommitted group
    await waitFor('the deletion waiting', async () => done || (await waitingOnLocks(db)) === 1);
    expect(done).toBe(false);
    await batch.query('COMMIT');
    expect((await detached).map((d) => d.groupId)).toEqual([1, 2]);
    await deletion.query('COMMIT');
  });
  const { rows } = await db.pool.query(
    'SELECT group_id::int, incident_id, deleted_at IS NOT NULL AS deleted FROM members ORDER BY 1',
  );
  expect(rows).toEqual([
    { group_id: 1, incident_id: null, deleted: true },
    { group_id: 2, incident_id: null, deleted: true },
  ]);
});

it('a batch adding a group to a project deleted meanwhile waits, then is retried (transient), adding nothing', async () => {
  const db = await database();
  await inTwoTransactions(db, async (deletion, batch) => {
    await deleteProject(deletion, 5, at(100));
    const adding = addGroup(batch, 5, 3);
    adding.catch(() => undefined);
    await waitFor('the batch waiting', async () => (await waitingOnLocks(db)) === 1);
    await deletion.query('COMMIT');
    await expect(adding).rejects.toBeInstanceOf(TransientError);
  });
  expect((await db.pool.query('SELECT 1 FROM members')).rowCount).toBe(0);
});

it('a group deleted while the batch creating it links it leaves its incident once that batch commits', async () => {
  const db = await database();
  const earlier = await db.pool.connect();
  await earlier.query('BEGIN');
  await addGroup(earlier, 1, 10);
  await earlier.query('COMMIT');
  earlier.release();
  await inTwoTransactions(db, async (batch, deletion) => {
    await addGroup(batch, 1, 4);
    const left = deleteMember(deletion, { groupId: 4, projectId: 1, deletedAt: at(100) });
    await waitFor('the deletion waiting', async () => (await waitingOnLocks(db)) === 1);
    await batch.query('COMMIT');
    // group 4 (created at 4 s) was the incident's oldest member: group 10 is canonical again
    expect(await left).toMatchObject({ projectId: 1, canonicalGroupId: 10 });
    await deletion.query('COMMIT');
  });
  const { rows } = await db.pool.query(
    `SELECT m.group_id::int, m.incident_id::int, i.canonical_group_id::int AS canonical
     FROM members m LEFT JOIN incidents i ON i.id = m.incident_id ORDER BY 1`,
  );
  expect(rows).toEqual([
    { group_id: 4, incident_id: null, canonical: null },
    { group_id: 10, incident_id: expect.any(Number) as unknown, canonical: 10 },
  ]);
});

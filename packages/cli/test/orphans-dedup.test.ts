import { randomUUID } from 'node:crypto';
import { readAll, waitFor } from '@shoal/testing';
import { expect, it } from 'vitest';
import {
  changeEntity,
  dedupTestKit,
  deleteGroup,
  groupCreated,
  members,
  publishGroupEvents,
} from '../../../services/dedup/test/support.js';
import { shoalRunners } from './support.js';

// `shoal orphans --service dedup` as operators run it, against the dedup service on the real stack:
// project 2's members become tombstones when it is deleted (orphans); group 3, deleted in live
// project 1, stays a tombstone (its only one) and is no orphan; cleanup publishes commands dedup
// applies, in batches of --batch-size, an audit row each.

const { fresh, start } = dedupTestKit();
let env: NodeJS.ProcessEnv = {};
const { shoal } = shoalRunners(() => env);

const orphansOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { group_id: number; project_id: number; why: string });

it('report lists members of deleted projects; cleanup has dedup remove them in batches, an audit row each', async () => {
  const { ns, db } = await fresh();
  env = { DATABASE_URL: db.url, SHOAL_TOPIC_NAMESPACE: ns.namespace };
  await start(ns, db);
  await publishGroupEvents(ns, [
    groupCreated(1, 10, { message: 'Card expired' }, 1),
    groupCreated(3, 10, { message: 'Timeout' }, 1),
    ...[20, 21, 22].map((g) => groupCreated(g, 10, { message: `Declined ${g}` }, 2)),
  ]);
  await waitFor('five members', async () => (await members(db)).length === 5);
  await deleteGroup(ns, 3, 1);
  await changeEntity(ns, { entity_kind: 'project', entity_id: '2', change: 'deleted' });
  await waitFor(
    'four tombstones',
    async () => (await members(db)).filter((m) => m.deleted).length === 4,
  );

  const report = shoal(['orphans', 'report', '--service', 'dedup', '--json']);
  expect(report.status).toBe(0);
  expect(orphansOf(report.stdout).map((o) => [o.group_id, o.project_id, o.why])).toEqual([
    [20, 2, 'project_deleted'],
    [21, 2, 'project_deleted'],
    [22, 2, 'project_deleted'],
  ]);
  expect(shoal(['orphans', 'report', '--service', 'dedup']).stdout).toContain('project_deleted');

  const dry = shoal(['orphans', 'cleanup', '--service', 'dedup', '--dry-run']);
  expect(dry.status).toBe(0);
  expect(dry.stderr).toContain('dry run: 3 orphans, nothing published');
  expect(shoal(['orphans', 'cleanup', '--service', 'dedup']).status).toBe(2);
  expect(await readAll(ns.topics.dedupCommands)).toEqual([]);

  const cleanup = shoal([
    'orphans',
    'cleanup',
    '--service',
    'dedup',
    '--yes',
    '--batch-size',
    '2',
    '--actor',
    'ops@test',
    '--reason',
    'project 2 gone',
  ]);
  expect(cleanup.status).toBe(0);
  expect(cleanup.stderr).toContain(
    `2 cleanup commands (3 records) published on ${ns.topics.dedupCommands}`,
  );
  await waitFor('dedup removed them', async () => (await members(db)).length === 2);
  expect((await members(db)).map((m) => [m.group_id, m.deleted])).toEqual([
    [1, false],
    [3, true],
  ]);
  const { rows } = await db.pool.query(
    `SELECT group_id::int, project_id::int, why, actor, reason, record->>'dedup_key' IS NOT NULL AS kept_whole
     FROM dedup.orphan_cleanups ORDER BY group_id`,
  );
  expect(rows).toEqual(
    [20, 21, 22].map((g) => ({
      group_id: g,
      project_id: 2,
      why: 'project_deleted',
      actor: 'ops@test',
      reason: 'project 2 gone',
      kept_whole: true,
    })),
  );
  expect(shoal(['orphans', 'report', '--service', 'dedup']).stderr).toContain('no orphans');
});

it('a member no longer an orphan (its project restored) is kept, and the command recorded as refused', async () => {
  const { ns, db } = await fresh();
  env = { DATABASE_URL: db.url, SHOAL_TOPIC_NAMESPACE: ns.namespace };
  await start(ns, db);
  await publishGroupEvents(ns, [groupCreated(30, 10, { message: 'Declined' }, 3)]);
  await waitFor('a member', async () => (await members(db)).length === 1);
  await changeEntity(ns, { entity_kind: 'project', entity_id: '3', change: 'deleted' });
  await waitFor('a tombstone', async () => (await members(db)).some((m) => m.deleted));
  // the report is taken while the project is deleted; it is restored before dedup applies the command
  const found = shoal(['orphans', 'report', '--service', 'dedup', '--json']);
  expect(orphansOf(found.stdout).map((o) => o.group_id)).toEqual([30]);
  await changeEntity(ns, { entity_kind: 'project', entity_id: '3', change: 'restored' });
  await waitFor(
    'restored',
    async () =>
      (await db.pool.query('SELECT 1 FROM dedup.projects WHERE id = 3 AND deleted_at IS NULL'))
        .rowCount === 1,
  );
  expect(shoal(['orphans', 'report', '--service', 'dedup']).stderr).toContain('no orphans');
  // what a cleanup published from the earlier report carries
  const { publishCommands } = await import('../src/publish.js');
  const { dedupCleanups } = await import('../src/orphans/dedup.js');
  process.env.SHOAL_TOPIC_NAMESPACE = ns.namespace;
  try {
    await publishCommands(
      'dedupCommands',
      dedupCleanups(
        orphansOf(found.stdout).map((o) => ({ ...o, since: '' })),
        {
          batchSize: 10,
          actor: 'ops@test',
        },
      ).map((c) => ({ key: `project:${c.project_id}`, commandId: c.command_id, value: c })),
    );
    // commands missing what they need are refused, naming it
    const bare = { actor: 'ops@test', issued_at: new Date().toISOString() };
    const merge = {
      ...bare,
      command_id: randomUUID(),
      command: 'merge' as const,
      from_incident_id: 1,
    };
    const cleanup = {
      ...bare,
      command_id: randomUUID(),
      command: 'cleanup_orphans' as const,
      group_ids: [30] as [number],
    };
    await publishCommands('dedupCommands', [
      { key: 'x', commandId: merge.command_id, value: merge },
      { key: 'x', commandId: cleanup.command_id, value: cleanup },
    ]);
  } finally {
    delete process.env.SHOAL_TOPIC_NAMESPACE;
  }
  await waitFor(
    'refused',
    async () =>
      (
        await db.pool.query(
          "SELECT 1 FROM dedup.message_rejections WHERE reason = 'not_orphaned' AND detail LIKE '%kept 1 of 1 members of project 3%'",
        )
      ).rowCount === 1,
  );
  await waitFor(
    'both refused',
    async () =>
      (
        await db.pool.query(
          "SELECT 1 FROM dedup.message_rejections WHERE reason IN ('invalid_merge', 'invalid_cleanup')",
        )
      ).rowCount === 2,
  );
  expect((await members(db)).map((m) => m.group_id)).toEqual([30]);
  expect((await db.pool.query('SELECT 1 FROM dedup.orphan_cleanups')).rowCount).toBe(0);
});

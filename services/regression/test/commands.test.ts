import { randomUUID } from 'node:crypto';
import type { RegressionCommand } from '@shoal/contracts';
import { waitFor } from '@shoal/testing';
import { expect, it } from 'vitest';
import { publishEntityChanges } from '../../grouping/test/kit.js';
import { regressionRecords, regressionTestKit, rowsOf } from './kit.js';
import {
  appliedByRegression,
  changeIdOf,
  confirmation,
  publishGroupEvents,
  publishOn,
  regressingGroup,
} from './support.js';

// Orphan cleanup as regression applies it from shoal.regression-commands.v1: it removes only records
// that are still orphans when it applies the command, and records a refusal for the rest.

const { fresh, startRegression } = regressionTestKit();

const cleanup = (groupId: number, changeIds: string[]): RegressionCommand => ({
  command_id: randomUUID(),
  command: 'cleanup_orphans',
  group_id: groupId,
  change_ids: changeIds as RegressionCommand['change_ids'],
  deadline_seconds: 3600,
  actor: 'ops@test',
  issued_at: new Date().toISOString(),
});

it('removes a deleted group’s record with an audit row; keeps a confirmed one, a fresh proposal and an unknown id, refused as not_orphaned', async () => {
  const stack = await fresh();
  await startRegression(stack).ready;
  await publishGroupEvents(stack, [
    ...regressingGroup(1),
    ...regressingGroup(2),
    ...regressingGroup(3),
  ]);
  await waitFor('three proposals', async () => (await regressionRecords(stack.db)).length === 3);
  const [deleted, confirmed, fresh1] = [
    await changeIdOf(stack.db, 1),
    await changeIdOf(stack.db, 2),
    await changeIdOf(stack.db, 3),
  ];
  await publishGroupEvents(stack, [confirmation(2, confirmed)]);
  await publishEntityChanges(stack.ns, [
    { entity_kind: 'group', entity_id: '1', change: 'deleted', project_id: 1 },
  ]);
  await waitFor('confirmed and detached', async () => {
    const rows = await rowsOf<{ n: number }>(
      stack.db,
      "SELECT count(*)::int AS n FROM regression.regressions WHERE state = 'confirmed' OR detached_at IS NOT NULL",
    );
    return rows[0]!.n === 2;
  });

  const commands = [
    cleanup(1, [deleted]),
    cleanup(2, [confirmed]),
    // a proposal answered by nobody yet, but within the command's deadline; an id regression never had
    cleanup(3, [fresh1, 'no-such-change']),
  ];
  await publishOn(
    stack,
    'regressionCommands',
    commands.map((c) => ({ key: String(c.group_id), id: c.command_id, value: c })),
  );
  await waitFor('the commands applied', async () => {
    for (const c of commands)
      if (!(await appliedByRegression(stack.db, c.command_id))) return false;
    return true;
  });

  expect((await regressionRecords(stack.db)).map((r) => r.change_id).sort()).toEqual(
    [confirmed, fresh1].sort(),
  );
  expect(
    await rowsOf(
      stack.db,
      "SELECT group_id::int, why, actor, command_id, record->>'change_id' AS change_id FROM regression.orphan_cleanups",
    ),
  ).toEqual([
    {
      group_id: 1,
      why: 'group_deleted',
      actor: 'ops@test',
      command_id: commands[0]!.command_id,
      change_id: deleted,
    },
  ]);
  const refused = await rowsOf<{ message_id: string; reason: string; detail: string }>(
    stack.db,
    'SELECT message_id, reason, detail FROM regression.message_rejections ORDER BY message_id',
  );
  expect(refused.map((r) => [r.message_id, r.reason]).sort()).toEqual(
    [
      [commands[1]!.command_id, 'not_orphaned'],
      [commands[2]!.command_id, 'not_orphaned'],
    ].sort(),
  );
  expect(refused.find((r) => r.message_id === commands[2]!.command_id)!.detail).toContain(
    `kept 2 of 2 records of group 3`,
  );
});

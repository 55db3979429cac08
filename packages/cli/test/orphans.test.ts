import { isolatedDatabase, readAll, waitFor } from '@shoal/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishEntityChanges } from '../../../services/grouping/test/kit.js';
import {
  regressionRecords,
  regressionTestKit,
  rowsOf,
  type Stack,
} from '../../../services/regression/test/kit.js';
import {
  changeIdOf,
  confirmation,
  publishGroupEvents,
  regressingGroup,
} from '../../../services/regression/test/support.js';
import { shoalRunners } from './support.js';

// `shoal orphans` as operators run it (the workspace bin), against the regression service on the
// real stack: report reads regression's records; cleanup publishes commands regression applies.
// Group 1's record is detached (its group deleted), group 2's proposal is never answered (no
// grouping runs here), group 3's was confirmed.

const { fresh, startRegression } = regressionTestKit();
let stack: Stack;
const { shoal, shoalOnTerminal } = shoalRunners(() => ({
  DATABASE_URL: stack.db.url,
  SHOAL_TOPIC_NAMESPACE: stack.ns.namespace,
}));
const changeIds = async () => (await regressionRecords(stack.db)).map((r) => r.change_id).sort();
let confirmed = '';

beforeAll(async () => {
  stack = await fresh();
  await startRegression(stack).ready;
  await publishGroupEvents(stack, [1, 2, 3].flatMap(regressingGroup));
  await waitFor('three proposals', async () => (await regressionRecords(stack.db)).length === 3);
  confirmed = await changeIdOf(stack.db, 3);
  await publishGroupEvents(stack, [confirmation(3, confirmed)]);
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
  // group 2's proposal passes a one-second deadline
  await new Promise((resolve) => setTimeout(resolve, 1100));
});

const orphansOf = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { group_id: number; why: string; change_id: string });

describe('shoal orphans', () => {
  it('report lists records whose group was deleted and proposals never answered within the deadline', () => {
    const { status, stdout } = shoal(['orphans', 'report', '--json', '--deadline-seconds', '1']);
    expect(status).toBe(0);
    // in record order, which follows the partitions' order of processing: compared by group
    expect(
      orphansOf(stdout)
        .map((r) => [r.group_id, r.why])
        .sort(),
    ).toEqual([
      [1, 'group_deleted'],
      [2, 'unconfirmed'],
    ]);
    const longer = shoal(['orphans', 'report', '--json', '--deadline-seconds', '3600']);
    expect(orphansOf(longer.stdout).map((r) => r.group_id)).toEqual([1]);
  });

  it('cleanup: --dry-run and a no on a terminal publish nothing; without a terminal it needs --yes', async () => {
    const before = await changeIds();
    const dry = shoal(['orphans', 'cleanup', '--dry-run', '--deadline-seconds', '1', '--json']);
    expect(dry.status).toBe(0);
    expect(orphansOf(dry.stdout)).toHaveLength(2);
    expect(dry.stderr).toContain('nothing published');
    const no = shoalOnTerminal(['orphans', 'cleanup', '--deadline-seconds', '1'], 'n');
    expect(no.status).toBe(1);
    expect(no.output).toContain('nothing published');
    expect(shoal(['orphans', 'cleanup', '--deadline-seconds', '1']).status).toBe(2);
    expect(await readAll(stack.ns.topics.regressionCommands)).toEqual([]);
    expect(await changeIds()).toEqual(before);
  });

  it('cleanup exits 4 when Kafka does not answer, and nothing changes', async () => {
    const before = await changeIds();
    const down = shoal(['orphans', 'cleanup', '--yes', '--deadline-seconds', '1'], {
      KAFKA_BROKERS: '127.0.0.1:1',
    });
    expect(down.status).toBe(4);
    expect(await changeIds()).toEqual(before);
  });

  it('cleanup --yes publishes one command per group, which regression applies: the orphans removed, an audit row each', async () => {
    const { status, stderr } = shoal([
      'orphans',
      'cleanup',
      '--yes',
      '--deadline-seconds',
      '1',
      '--actor',
      'ops@test',
      '--reason',
      'group gone upstream',
    ]);
    expect(status).toBe(0);
    expect(stderr).toContain(
      `2 cleanup commands (2 records) published on ${stack.ns.topics.regressionCommands}`,
    );
    const published = await readAll(stack.ns.topics.regressionCommands);
    expect(published.map((r) => r.key?.toString()).sort()).toEqual(['1', '2']);
    await waitFor('regression applied them', async () => (await changeIds()).length === 1);
    expect(await changeIds()).toEqual([confirmed]);
    expect(
      await rowsOf(
        stack.db,
        'SELECT group_id::int, why, actor, reason, command_id IS NOT NULL AS by_command FROM regression.orphan_cleanups ORDER BY group_id',
      ),
    ).toEqual([
      {
        group_id: 1,
        why: 'group_deleted',
        actor: 'ops@test',
        reason: 'group gone upstream',
        by_command: true,
      },
      {
        group_id: 2,
        why: 'unconfirmed',
        actor: 'ops@test',
        reason: 'group gone upstream',
        by_command: true,
      },
    ]);
    expect(shoal(['orphans', 'report', '--deadline-seconds', '1']).stderr).toContain('no orphans');
  });

  it('a database where regression never ran is not set up (exit 4)', async () => {
    const other = await isolatedDatabase({ migrate: false });
    try {
      const result = shoalRunners(() => ({ DATABASE_URL: other.url })).shoal(['orphans', 'report']);
      expect(result.status).toBe(4);
    } finally {
      await other.drop();
    }
  });
});

import { runtimeMigrationsDir, serviceSchema } from '@shoal/db';
import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { regressionMigrationsDir } from '../../../services/regression/src/service.js';
import { shoalRunners } from './support.js';

// `shoal orphans` as operators run it, against a database migrated as the regression service
// migrates its own schema, holding the records the service writes.

let db: IsolatedDatabase;
const { shoal } = shoalRunners(() => ({ DATABASE_URL: db.url }));

const record = (group: number, changeId: string, extra: string) =>
  `INSERT INTO regressions (group_id, project_id, expected_sequence, expected_status, resolution_id, kind,
     occurrence_id, occurred_at, decided_by, why, change_id, flapping, ${extra.split('=')[0]})
   VALUES (${group}, 1, 1, 'resolved', 1, 'regressed', 'o-${group}', now(), 'semver', 'newer', '${changeId}', false,
     ${extra.split('=')[1]})`;

beforeAll(async () => {
  db = await isolatedDatabase({
    dirs: [runtimeMigrationsDir, regressionMigrationsDir],
    schema: serviceSchema('regression'),
  });
  for (const sql of [
    record(1, 'detached', "detached_at=now() - interval '1 minute'"),
    record(2, 'stale', "proposed_at=now() - interval '20 minutes'"),
    record(3, 'fresh', 'proposed_at=now()'),
    record(4, 'confirmed', "state='confirmed'"),
  ])
    await db.pool.query(sql);
});
afterAll(() => db.drop());

const remaining = async () =>
  (await db.pool.query('SELECT change_id FROM regressions ORDER BY id')).rows.map(
    (r) => r.change_id,
  );

describe('shoal orphans', () => {
  it('report lists records whose group was deleted and proposals never answered within the deadline', () => {
    const { status, stdout } = shoal(['orphans', 'report', '--json']);
    expect(status).toBe(0);
    const rows = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows.map((r) => [r.group_id, r.why])).toEqual([
      [1, 'group_deleted'],
      [2, 'unconfirmed'],
    ]);
    const longer = shoal(['orphans', 'report', '--json', '--deadline-seconds', '3600']);
    expect(longer.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('cleanup: --dry-run removes nothing; without a terminal it needs --yes (exit 2); with it, removes them with an audit row each', async () => {
    expect(shoal(['orphans', 'cleanup', '--dry-run']).status).toBe(0);
    expect(await remaining()).toEqual(['detached', 'stale', 'fresh', 'confirmed']);
    expect(shoal(['orphans', 'cleanup']).status).toBe(2);

    const { status, stderr } = shoal(['orphans', 'cleanup', '--yes', '--actor', 'ops@test']);
    expect(status).toBe(0);
    expect(stderr).toContain('2 orphans removed');
    expect(await remaining()).toEqual(['fresh', 'confirmed']);
    const { rows } = await db.pool.query(
      "SELECT group_id::int, why, actor, record->>'change_id' AS change_id FROM orphan_cleanups ORDER BY id",
    );
    expect(rows).toEqual([
      { group_id: 1, why: 'group_deleted', actor: 'ops@test', change_id: 'detached' },
      { group_id: 2, why: 'unconfirmed', actor: 'ops@test', change_id: 'stale' },
    ]);
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

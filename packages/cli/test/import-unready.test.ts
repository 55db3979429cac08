import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { migrate, runtimeMigrationsDir, serviceSchema } from '@shoal/db';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupingDatabase } from '../../../services/grouping/test/support.js';
import { lifecycleMigrationsDir } from '../../../services/lifecycle/src/service.js';
import { shoalRunners } from './support.js';

// `shoal import` when the services it hands the reports to are not there, the CLI run as a
// process: no consumer runs on this database and these topics. Where lifecycle never ran (no
// lifecycle.issues table) the import stops as a dependency not set up, exit 4; with lifecycle's
// tables but nothing grouping the reports, --wait runs out and the import exits 1 naming the run
// to resume, left unfinished.

let ns: IsolatedTopics;
let db: IsolatedDatabase;
const { shoal } = shoalRunners(() => ({
  SHOAL_TOPIC_NAMESPACE: ns.namespace,
  DATABASE_URL: db.url,
}));

const reports = () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'shoal-import-unready-'));
  writeFileSync(
    path.join(dir, 'reports.jsonl'),
    [
      { id: 'U1', title: 'Cart empties', created_at: '2024-05-01T09:00:00Z' },
      { id: 'U2', title: 'Logout hangs', created_at: '2024-05-01T09:00:00Z' },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );
  return dir;
};

const runsOf = async (project: number) =>
  (
    await db.pool.query<{ id: string; finished: boolean }>(
      'SELECT id::text, finished_at IS NOT NULL AS finished FROM shoal_cli.import_runs WHERE project_id = $1',
      [project],
    )
  ).rows;

beforeAll(async () => {
  [ns, db] = await Promise.all([
    isolatedTopics({ partitions: { occurrences: 1, lifecycleCommands: 1 } }),
    isolatedDatabase(groupingDatabase),
  ]);
}, 60_000);
afterAll(async () => {
  await Promise.all([ns?.drop(), db?.drop()]);
});

describe('shoal import, its services not ready', () => {
  it('a database where lifecycle never ran: exit 4 naming the missing lifecycle.issues', async () => {
    const { status, stderr } = shoal(['import', reports(), '--project', '61', '--wait', '0']);
    expect(status, stderr).toBe(4);
    expect(stderr).toContain(
      `no table ${serviceSchema('lifecycle')}.issues: lifecycle has not run against this database`,
    );
    expect(await runsOf(61)).toEqual([{ id: expect.any(String), finished: false }]);
  });

  it('reports still ungrouped when --wait runs out: exit 1 naming the run to resume, left unfinished', async () => {
    await migrate({
      databaseUrl: db.url,
      direction: 'up',
      dirs: [runtimeMigrationsDir, lifecycleMigrationsDir],
      schema: serviceSchema('lifecycle'),
    });
    const { status, stderr } = shoal(['import', reports(), '--project', '62', '--wait', '1']);
    expect(status, stderr).toBe(1);
    const [run] = await runsOf(62);
    expect(run).toEqual({ id: expect.any(String), finished: false });
    expect(stderr).toContain(
      `2 report(s) without an open issue after 1 s: are grouping and lifecycle running? Continue with: shoal import --resume ${run!.id}`,
    );
  });
});

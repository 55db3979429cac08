import { migrate, withTransaction } from '@shoal/db';
import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupingDatabase } from '../../../services/grouping/test/support.js';
import { loadServicePackage, type RebuildDeclaration } from '../src/rebuild/declaration.js';
import type { StopOffsets } from '../src/rebuild/snapshot.js';
import { swapSchemas, SwapRefused } from '../src/rebuild/swap.js';

// The swap's refusals (src/rebuild/swap.ts) on a real PostgreSQL: grouping's schema and a rebuilt
// copy, migrated as the service migrates them. A refused swap changes nothing. The swap that goes
// through, after a real rebuild, is in rebuild.test.ts.

let db: IsolatedDatabase;
let declaration: RebuildDeclaration;
const group = 'shoal.grouping';
const stopAt: StopOffsets = { 'shoal.occurrences.v1': { '0': 5 } };

beforeAll(async () => {
  db = await isolatedDatabase(groupingDatabase);
  await migrate({
    databaseUrl: db.url,
    direction: 'up',
    dirs: groupingDatabase.dirs,
    schema: 'grouping_rebuild',
  });
  ({ declaration } = await loadServicePackage('grouping'));
  await db.pool.query(
    `INSERT INTO grouping.consumer_offsets (consumer_group, topic, partition, next_offset)
     VALUES ($1, 'shoal.occurrences.v1', 0, 5)`,
    [group],
  );
});
afterAll(() => db?.drop());

const swap = (at: StopOffsets = stopAt) =>
  withTransaction(db.pool, (tx) =>
    swapSchemas(tx, {
      declaration,
      live: 'grouping',
      rebuilt: 'grouping_rebuild',
      group,
      stopAt: at,
    }),
  );
const schemas = async () =>
  (
    await db.pool.query<{ name: string }>(
      `SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE 'grouping%' ORDER BY 1`,
    )
  ).rows.map((r) => r.name);

describe('rebuild --swap refuses', () => {
  it('when the live group moved past the offsets the rebuild stopped at', async () => {
    await expect(swap({ 'shoal.occurrences.v1': { '0': 4 } })).rejects.toThrow(SwapRefused);
    await expect(swap({ 'shoal.occurrences.v1': { '0': 4 } })).rejects.toThrow(
      'moved past the rebuild',
    );
    // a partition the live group applied since the snapshot
    await expect(swap({})).rejects.toThrow(SwapRefused);
    expect(await schemas()).toEqual(['grouping', 'grouping_rebuild']);
  });

  it('while the live outbox holds unpublished events', async () => {
    await db.pool.query(`INSERT INTO grouping.outbox (events, event_count) VALUES ('[]', 1)`);
    await expect(swap()).rejects.toThrow('unpublished');
    expect(await schemas()).toEqual(['grouping', 'grouping_rebuild']);
    await db.pool.query('UPDATE grouping.outbox SET published_at = now()');
    await swap();
    expect(await schemas()).toEqual(['grouping', 'grouping_replaced']);
  });
});

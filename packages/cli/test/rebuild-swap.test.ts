import { migrate, withTransaction } from '@shoal/db';
import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupingDatabase } from '../../../services/grouping/test/support.js';
import { loadServicePackage, type RebuildDeclaration } from '../src/rebuild/declaration.js';
import type { StopOffsets } from '../src/rebuild/snapshot.js';
import { prepareLiveIds } from '../src/rebuild/live-ids.js';
import { swapSchemas, SwapRefused } from '../src/rebuild/swap.js';

// The live ids a rebuilt row takes (src/rebuild/live-ids.ts) and the swap's refusals
// (src/rebuild/swap.ts) on a real PostgreSQL: grouping's schema and a rebuilt copy, migrated as the
// service migrates them. A refused swap changes nothing. The rebuild and the swap that goes
// through, on the real stack, are in rebuild.test.ts.

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

describe('a rebuilt row takes the live ids', () => {
  it('of the live row it matches, the earliest not yet taken; a row the live schema lacks gets a new id', async () => {
    const insert = (schema: string, project: number, hash: string, id?: number) =>
      db.pool.query<{ id: string; short_number: string; short_id: string }>(
        `INSERT INTO ${schema}.groups (${id ? 'id, ' : ''}project_id, primary_hash, short_number, short_id,
           group_type, level, title, first_seen, last_seen)
         VALUES (${id ? `${id}, ` : ''}$1, $2, $3, $4, 1, 'error', 't', now(), now())
         RETURNING id::text, short_number::text, short_id`,
        [project, hash, id ?? 90, `P-${id ?? 90}`],
      );
    await insert('grouping', 1, 'h1', 10);
    await db.pool.query('UPDATE grouping.groups SET deleted_at = now() WHERE id = 10');
    await insert('grouping', 1, 'h2', 11);
    await insert('grouping', 1, 'h1', 12);
    await db.pool.query(`SELECT setval(pg_get_serial_sequence('grouping.groups', 'id'), 12)`);
    await prepareLiveIds(db.pool, declaration, 'grouping', 'grouping_rebuild');

    // the rebuild meets h2 first, then h1 twice (the first deleted before the second)
    expect((await insert('grouping_rebuild', 1, 'h2')).rows[0]).toEqual({
      id: '11',
      short_number: '11',
      short_id: 'P-11',
    });
    expect((await insert('grouping_rebuild', 1, 'h1')).rows[0]!.id).toBe('10');
    await db.pool.query('UPDATE grouping_rebuild.groups SET deleted_at = now() WHERE id = 10');
    expect((await insert('grouping_rebuild', 1, 'h1')).rows[0]!.id).toBe('12');
    // past every live id (the sequence continues from the live one's)
    expect(Number((await insert('grouping_rebuild', 1, 'h3')).rows[0]!.id)).toBeGreaterThan(12);
    await db.pool.query('DELETE FROM grouping.groups');
    await db.pool.query('DELETE FROM grouping_rebuild.groups');
  });
});

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

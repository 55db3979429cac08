import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnEntryPoint, type IsolatedDatabase } from '@shoal/testing';
import type { ChaosTarget } from '../../packages/kafka-runtime/test/chaos.js';
import { occurrence } from '../../packages/kafka-runtime/test/support.js';
import { groupingDatabase, groupingTable } from '../fuzz/grouping.js';

const groupingMain = path.join(path.dirname(fileURLToPath(import.meta.url)), 'grouping-main.ts');

const UNKNOWN_DETECTOR = 99;

/**
 * Grouping in the kill-anywhere comparison: occurrences over 5 projects and 40 fingerprints each;
 * a stale one names a detector never announced (held, then dead-lettered unknown_reference after 1 s). The read model is compared without the
 * ids sequences hand out (a rolled-back transaction uses some up): each group by its project and
 * hash, the hashes pointing at it, and each project's short ids as a set.
 */
export const groupingChaos: ChaosTarget = {
  name: 'grouping',
  database: groupingDatabase,
  partitions: { occurrences: 3, groupEvents: 3 },
  occurrence: (i, seed, stale) => {
    const o = occurrence(i, { projects: 5, fingerprints: 40, seed });
    return stale ? { ...o, shoal: { detector_id: UNKNOWN_DETECTOR } } : o;
  },
  spawn: (env) =>
    spawnEntryPoint(
      groupingMain,
      { ...env, SHOAL_HOLD_DEADLINE_SECONDS_DETECTOR: '1' },
      '"partitions assigned"',
    ),
  applied: async (db) =>
    (
      await db.pool.query<{ n: number }>(
        `SELECT coalesce(sum(times_seen), 0)::int AS n FROM ${groupingTable('groups')}`,
      )
    ).rows[0]!.n,
  readModel: async (db: IsolatedDatabase) => {
    const { rows: groups } = await db.pool.query(
      `SELECT project_id::text, primary_hash, times_seen::int, first_seen, last_seen, status, level, title
       FROM ${groupingTable('groups')} ORDER BY project_id, primary_hash`,
    );
    const { rows: hashes } = await db.pool.query(
      `SELECT h.project_id::text, h.hash, g.primary_hash FROM ${groupingTable('group_hashes')} h
       JOIN ${groupingTable('groups')} g ON g.id = h.group_id ORDER BY 1, 2`,
    );
    const { rows: shortIds } = await db.pool.query(
      `SELECT project_id::text, array_agg(short_id ORDER BY short_id) AS short_ids
       FROM ${groupingTable('groups')} GROUP BY project_id ORDER BY project_id`,
    );
    return { groups, hashes, shortIds };
  },
  table: groupingTable,
};

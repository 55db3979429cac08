import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GroupEvent } from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import { spawnEntryPoint, type IsolatedDatabase, type TopicRecord } from '@shoal/testing';
import type { ChaosTarget } from '../../packages/kafka-runtime/test/chaos.js';
import {
  codecFor,
  occurrence,
  produceRaw,
  uuidOf,
} from '../../packages/kafka-runtime/test/support.js';
import { groupingDatabase, groupingTable } from '../fuzz/grouping.js';

const groupingMain = path.join(path.dirname(fileURLToPath(import.meta.url)), 'grouping-main.ts');

const DELETED_DETECTOR = 99;
const LATE_DETECTOR = 7;
const PROJECTS = 5;
const FINGERPRINTS = 40;

/**
 * Grouping in the kill-anywhere comparison: occurrences over 5 projects and 40 fingerprints each;
 * a stale one names a detector deleted before the run, a late one a detector announced (an entity
 * change on the run's topic) partway through. The read model is compared without the ids sequences
 * hand out (a rolled-back transaction uses some up): each group by its project and hash, the hashes
 * pointing at it, and each project's short ids as a set. The group_activity flush runs every 0.3 s
 * (kills land in it, one at its commit); its reports, whose coverage depends on when it ran, are
 * checked per run: per group, one chain of deltas summing to its times seen.
 */
export const groupingChaos: ChaosTarget = {
  name: 'grouping',
  database: groupingDatabase,
  partitions: { occurrences: 3, groupEvents: 3 },
  seed: async (db) => {
    await db.pool.query(
      `INSERT INTO ${groupingTable('detectors')} (id, deleted_at) VALUES ($1, now())`,
      [DELETED_DETECTOR],
    );
  },
  occurrence: (i, seed, names) => {
    const o = occurrence(i, { projects: PROJECTS, fingerprints: FINGERPRINTS, seed });
    return names === 'live'
      ? o
      : { ...o, shoal: { detector_id: names === 'deleted' ? DELETED_DETECTOR : LATE_DETECTOR } };
  },
  // the first message of each group (i < projects × fingerprints) creates it: it never waits
  lateFrom: PROJECTS * FINGERPRINTS,
  announce: async ({ ns }, seed) => {
    const announcement = {
      event_id: uuidOf(`${seed}:late-detector`),
      entity_kind: 'detector',
      entity_id: String(LATE_DETECTOR),
      change: 'created',
      occurred_at: '2026-11-30T00:00:00Z',
      project_id: 1,
      name: 'chaos',
      actor: 'user:1',
    } as const;
    await produceRaw(ns.topics.entityChanges, [
      {
        key: announcement.entity_id,
        value: await codecFor(ns.topics).encode('entityChanges', announcement),
      },
    ]);
  },
  // the group_activity flush runs often, so kills land in it too
  spawn: (env) =>
    spawnEntryPoint(
      groupingMain,
      { SHOAL_GROUP_ACTIVITY_SECONDS: '0.3', ...env },
      '"partitions assigned"',
    ),
  selfKillPoints: ['scheduled:before-commit'],
  scheduled: {
    is: (record) => eventOf(record).event_type === 'group_activity',
    caughtUp: async (db) =>
      (
        await db.pool.query(
          `SELECT 1 FROM ${groupingTable('groups')} WHERE times_seen <> reported_times_seen`,
        )
      ).rowCount === 0,
    check: checkActivity,
  },
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

const eventOf = (record: TopicRecord) =>
  JSON.parse(record.value!.subarray(5).toString()) as GroupEvent;

/**
 * group_activity after kills: per group, its distinct reports form one chain (each delta is the
 * step from the previous total), ending at the group's times seen, so the deltas sum to it.
 */
async function checkActivity(db: IsolatedDatabase, records: TopicRecord[]): Promise<string[]> {
  const reports = new Map<number, GroupEvent[]>();
  const distinct = new Map(records.map((r) => [r.headers[HEADER.messageId], eventOf(r)]));
  for (const e of distinct.values())
    if (e.event_type === 'group_activity')
      reports.set(e.group_id, [...(reports.get(e.group_id) ?? []), e]);
  const { rows: groups } = await db.pool.query<{ id: string; times_seen: number }>(
    `SELECT id::text, times_seen::int FROM ${groupingTable('groups')}`,
  );
  const problems: string[] = [];
  for (const g of groups) {
    const chain = (reports.get(Number(g.id)) ?? []).sort((a, b) => a.times_seen! - b.times_seen!);
    let total = 0;
    for (const e of chain) {
      if (e.times_seen_delta !== e.times_seen! - total)
        problems.push(
          `group ${g.id}: a report of ${e.times_seen_delta} from ${total} to ${e.times_seen}`,
        );
      total = e.times_seen!;
    }
    if (total !== g.times_seen)
      problems.push(`group ${g.id}: group_activity reported ${total} of ${g.times_seen}`);
  }
  return problems.slice(0, 5);
}

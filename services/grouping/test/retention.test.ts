import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import { metricsRegistry } from '@shoal/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssueTypePolicies } from '../src/issue-types.js';
import { groupingRetention } from '../src/retention.js';
import { groupingDatabase } from './support.js';

const NOISY = 1006;
const LIMITED = 1008;
const policies: IssueTypePolicies = new Map([
  [NOISY, { noise: { threshold: 3, windowSeconds: 600 } }],
  [LIMITED, { newGroupsPerMinute: 1 }],
]);

let db: IsolatedDatabase;
beforeAll(async () => {
  db = await isolatedDatabase(groupingDatabase);
});
afterAll(() => db?.drop());

const expired = async () =>
  (await metricsRegistry.getSingleMetric('shoal_grouping_noise_expired_total')!.get()).values[0]
    ?.value ?? 0;

/** A held occurrence of `type`, detected and held `ageSeconds` ago (each clock on its own). */
const hold = (
  id: string,
  type: number,
  heldFor: 'noise' | 'rate_limit',
  seenAgo: number,
  heldAgo: number,
) =>
  db.pool.query(
    `INSERT INTO held_occurrences (project_id, primary_hash, message_id, seen_at, held_for, occurrence, held_at)
     VALUES (1, $1, $1, now() - make_interval(secs => $3), $2, json_build_object('type', $4::int), now() - make_interval(secs => $5))`,
    [id, heldFor, seenAgo, type, heldAgo],
  );

describe("grouping's retention", () => {
  it('drops noise-held occurrences past their window by both clocks, counted; never rate-limited ones', async () => {
    await hold('expired', NOISY, 'noise', 700, 700);
    await hold('expired-too', NOISY, 'noise', 3600, 3600);
    await hold('within-window', NOISY, 'noise', 500, 500);
    // an old occurrence held a moment ago (a backlog applied now): its hash may still come back
    await hold('old-but-just-held', NOISY, 'noise', 86_400, 10);
    await hold('rate-limited', LIMITED, 'rate_limit', 86_400, 86_400);
    // noise-held under a type whose policy no longer has noise: admitted when its hash comes back
    await hold('policy-gone', 1, 'noise', 86_400, 86_400);
    const before = await expired();

    expect(await groupingRetention(policies)(db.pool, { size: 1 })).toMatchObject({
      noiseExpired: 2,
    });
    expect(await expired()).toBe(before + 2);
    const { rows } = await db.pool.query<{ message_id: string }>(
      'SELECT message_id FROM held_occurrences ORDER BY message_id',
    );
    expect(rows.map((r) => r.message_id)).toEqual([
      'old-but-just-held',
      'policy-gone',
      'rate-limited',
      'within-window',
    ]);
  });

  it('drops creation quotas whose minute and last spending are over an hour old', async () => {
    await db.pool.query(`
      INSERT INTO group_creation_quota (project_id, group_type, minute, created, updated_at) VALUES
        (1, ${LIMITED}, date_trunc('minute', now() - interval '2 hours'), 1, now() - interval '2 hours'),
        (2, ${LIMITED}, date_trunc('minute', now() - interval '3 hours'), 1, now() - interval '3 hours'),
        (3, ${LIMITED}, date_trunc('minute', now() - interval '2 hours'), 1, now() - interval '5 minutes'),
        (4, ${LIMITED}, date_trunc('minute', now()), 1, now())`);
    expect(await groupingRetention(policies)(db.pool, { size: 1 })).toMatchObject({
      groupCreationQuota: 2,
    });
    const { rows } = await db.pool.query<{ project_id: number }>(
      'SELECT project_id::int FROM group_creation_quota ORDER BY project_id',
    );
    expect(rows.map((r) => r.project_id)).toEqual([3, 4]);
  });
});

import { ConfigError } from '@shoal/config';
import type { Occurrence } from '@shoal/contracts';
import { uniqueName, waitFor, type IsolatedDatabase } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { hashOf } from '../src/fingerprints.js';
import { issueTypePoliciesFromEnv, type IssueTypePolicies } from '../src/issue-types.js';
import { groupingTestKit, occurrence } from './kit.js';

const { fresh, start } = groupingTestKit();

const NOISY = 1006;
const SPARSE = 1007;
const LIMITED = 1008;
const issueTypes: IssueTypePolicies = new Map([
  [NOISY, { noise: { threshold: 5, windowSeconds: 600 } }],
  [SPARSE, { noise: { threshold: 2, windowSeconds: 600 } }],
  [LIMITED, { newGroupsPerMinute: 2 }],
]);

const count = async (db: IsolatedDatabase, sql: string, params: unknown[] = []) =>
  (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params)).rows[0]!.n;

const groupOf = async (db: IsolatedDatabase, fingerprint: string) =>
  (
    await db.pool.query<{
      times_seen: number;
      first_seen: Date;
      last_seen: Date;
      short_id: string;
    }>(
      'SELECT times_seen::int, first_seen, last_seen, short_id FROM groups WHERE primary_hash = $1',
      [hashOf(fingerprint)],
    )
  ).rows[0];

const at = (second: number, fingerprint: string, type: number): Occurrence =>
  occurrence(second, fingerprint, 1, { type });

describe('new groups per issue type', () => {
  it('noise threshold: below N occurrences nothing is created (re-sends do not count); at N the group appears with times seen N, one group_created and no per-occurrence event', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'), { issueTypes });
    const noisy = [0, 1, 2, 3, 4].map((i) => at(i * 10, 'noisy', NOISY));
    await Promise.all(noisy.slice(0, 4).map((o) => producer.publishOccurrence(o)));
    await producer.publishOccurrence(noisy[0]!); // an upstream re-send: the same occurrence id
    await producer.publishOccurrence(at(5, 'plain', 1)); // a type without a policy: a group at once
    await waitFor('the plain group', async () => (await groupOf(db, 'plain')) !== undefined);
    await waitFor('four held back', async () => (await count(db, 'held_occurrences')) === 4);
    expect(await groupOf(db, 'noisy')).toBeUndefined();

    await producer.publishOccurrence(noisy[4]!);
    await waitFor('the noisy group', async () => (await groupOf(db, 'noisy')) !== undefined);
    expect(await groupOf(db, 'noisy')).toEqual({
      times_seen: 5,
      first_seen: new Date(noisy[0]!.detection_time * 1000),
      last_seen: new Date(noisy[4]!.detection_time * 1000),
      short_id: 'P1-2',
    });
    expect(await count(db, 'held_occurrences')).toBe(0);
    const { rows: events } = await db.pool.query<{ type: string; occurrence: string }>(
      `SELECT payload->>'event_type' AS type, payload->>'occurrence_id' AS occurrence FROM outbox_events
       WHERE payload->>'group_id' = (SELECT id::text FROM groups WHERE primary_hash = $1)`,
      [hashOf('noisy')],
    );
    expect(events.filter((e) => e.type === 'group_created')).toEqual([
      { type: 'group_created', occurrence: noisy[0]!.id },
    ]);
    expect(events.filter((e) => e.type === 'occurrence_grouped')).toEqual([]);

    await producer.publishOccurrence(at(60, 'noisy', NOISY));
    await waitFor(
      'the next one counted',
      async () => (await groupOf(db, 'noisy'))?.times_seen === 6,
    );
  });

  it('noise window: occurrences older than the window before the latest stop counting and are forgotten', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'), { issueTypes });
    const [first, second, third] = [0, 700, 1000].map((s) => at(s, 'sparse', SPARSE));
    await producer.publishOccurrence(first!);
    await waitFor('held', async () => (await count(db, 'held_occurrences')) === 1);
    await producer.publishOccurrence(second!); // the first is now out of the window
    const heldNow = async () =>
      (
        await db.pool.query<{ message_id: string }>('SELECT message_id FROM held_occurrences')
      ).rows.map((r) => r.message_id);
    await waitFor(
      'the first forgotten, the second held',
      async () => (await heldNow()).join() === `occurrence:${second!.id}`,
    );
    expect(await groupOf(db, 'sparse')).toBeUndefined();
    await producer.publishOccurrence(third!);
    await waitFor('the group', async () => (await groupOf(db, 'sparse')) !== undefined);
    expect(await groupOf(db, 'sparse')).toMatchObject({
      times_seen: 2,
      first_seen: new Date(second!.detection_time * 1000),
    });
  });

  it('new-group rate limit: over the cap per project and minute, occurrences are held (not lost) and their groups made with full counts when a later minute has room', async () => {
    const { ns, producer, db } = await fresh();
    await start(ns, db, uniqueName('grouping-'), { issueTypes });
    const fingerprints = ['r0', 'r1', 'r2', 'r3', 'r4'];
    // minute 0: five new hashes, room for two
    await Promise.all(fingerprints.map((f, i) => producer.publishOccurrence(at(i, f, LIMITED))));
    await waitFor(
      'two groups, three hashes held',
      async () =>
        (await count(db, 'groups')) === 2 &&
        (await count(db, "held_occurrences WHERE held_for = 'rate_limit'")) === 3,
    );
    // minute 1: every hash again; the two groups count on, two of the three held get their group
    await Promise.all(
      fingerprints.map((f, i) => producer.publishOccurrence(at(60 + i, f, LIMITED))),
    );
    await waitFor(
      'four groups, one hash still held with both its occurrences',
      async () =>
        (await count(db, 'groups')) === 4 &&
        (await count(db, "held_occurrences WHERE held_for = 'rate_limit'")) === 2,
    );
    // minute 2: the last one gets its group, with all three occurrences
    const last = (
      await db.pool.query<{ fingerprint: string }>(
        "SELECT DISTINCT occurrence->'fingerprint'->>0 AS fingerprint FROM held_occurrences",
      )
    ).rows[0]!.fingerprint;
    await producer.publishOccurrence(at(120, last, LIMITED));
    await waitFor('five groups', async () => (await count(db, 'groups')) === 5);
    expect((await groupOf(db, last))?.times_seen).toBe(3);
    expect(await count(db, 'held_occurrences')).toBe(0);
    const { rows } = await db.pool.query<{ n: number }>(
      'SELECT sum(times_seen)::int AS n FROM groups',
    );
    expect(rows[0]!.n).toBe(11);
    const { rows: quota } = await db.pool.query<{ created: number }>(
      'SELECT created FROM group_creation_quota ORDER BY minute',
    );
    expect(quota.map((q) => q.created)).toEqual([2, 2, 1]);
  });
});

describe('SHOAL_GROUPING_ISSUE_TYPES', () => {
  it('parses policies keyed by issue type', () => {
    const policies = issueTypePoliciesFromEnv({
      SHOAL_GROUPING_ISSUE_TYPES:
        '{"1006": {"noise": {"threshold": 3, "windowSeconds": 60}, "newGroupsPerMinute": 5}}',
    });
    expect(policies.get(1006)).toEqual({
      noise: { threshold: 3, windowSeconds: 60 },
      newGroupsPerMinute: 5,
    });
    expect(issueTypePoliciesFromEnv({}).size).toBe(0);
  });

  it.each([
    ['{"1006": {"noise": {"threshold": 0, "windowSeconds": 60}}}', '1006.noise.threshold'],
    ['{"errors": {}}', 'errors'],
    ['{"1006": {"newGroupsPerMinut": 5}}', '1006'],
    ['{not json', 'JSON'],
  ])('%s is refused naming %s', (text, named) => {
    expect(() => issueTypePoliciesFromEnv({ SHOAL_GROUPING_ISSUE_TYPES: text })).toThrow(
      ConfigError,
    );
    expect(() => issueTypePoliciesFromEnv({ SHOAL_GROUPING_ISSUE_TYPES: text })).toThrow(named);
  });
});

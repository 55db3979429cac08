import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import type { PoolClient } from '@shoal/db';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  assertKnownEntityKinds,
  checkReferences,
  decideAction,
  failurePolicyFromEnv,
  referenceRulesFromEnv,
  StaleReferenceError,
  UnknownReferenceError,
  type Lookup,
  type Message,
} from '../src/index.js';

let db: IsolatedDatabase;
beforeAll(async () => {
  db = await isolatedDatabase({ migrate: false });
  await db.pool.query(`
    CREATE TABLE projects (id int PRIMARY KEY, deleted_at timestamptz);
    CREATE TABLE detectors (id int PRIMARY KEY, deleted_at timestamptz);
    CREATE TABLE issues (id bigint PRIMARY KEY, deleted_at timestamptz);
    INSERT INTO issues VALUES (1, NULL), (2, '2026-11-01T00:00:00Z');
    INSERT INTO projects SELECT g, CASE WHEN g = 7 THEN '2026-01-02T03:04:05Z'::timestamptz END FROM generate_series(1, 20) g;
    INSERT INTO detectors SELECT g, CASE WHEN g = 2 THEN '2026-05-06T07:08:09Z'::timestamptz END FROM generate_series(1, 4) g;`);
});
afterAll(() => db.drop());

type Value = { project_id: number; detector_id?: number };

const known = (table: string) => async (ids: string[], tx: PoolClient) =>
  new Map(
    (
      await tx.query<{ id: string; deleted_at: Date | null }>(
        `SELECT id::text, deleted_at FROM ${table} WHERE id = ANY($1::int[])`,
        [ids],
      )
    ).rows.map((r) => [r.id, r.deleted_at]),
  );

const lookups: Lookup<Value>[] = [
  {
    entity: 'project',
    unknown: 'create',
    refs: (m) => m.value.project_id,
    load: known('projects'),
  },
  {
    entity: 'detector',
    unknown: 'announce',
    refs: (m) => m.value.detector_id,
    load: known('detectors'),
  },
];

const message = (offset: number, value: Value, heldSince?: Date) =>
  ({ offset, value, ...(heldSince && { heldSince }) }) as unknown as Message<Value>;

it('loads each entity kind with one query per batch, not one per message: deleted fails, unknown holds or is created', async () => {
  const messages = Array.from({ length: 300 }, (_, i) =>
    message(i, { project_id: 1 + (i % 25), detector_id: i % 3 === 0 ? 1 + (i % 7) : undefined }),
  );
  const client = await db.pool.connect();
  const queries: string[] = [];
  const counting = new Proxy(client, {
    get(target, prop, receiver) {
      if (prop === 'query')
        return (sql: string, params?: unknown[]) => (queries.push(sql), target.query(sql, params));
      return Reflect.get(target, prop, receiver);
    },
  }) as PoolClient;
  try {
    const { failed, held } = await checkReferences(
      messages,
      lookups,
      referenceRulesFromEnv({}),
      counting,
    );
    expect(queries).toHaveLength(2);
    // project 7 and detector 2 were deleted; projects 21–25 are unknown but created on first sight
    const deleted = messages.filter((m) => m.value.project_id === 7 || m.value.detector_id === 2);
    expect([...failed.keys()].map((m) => m.offset).sort((a, b) => a - b)).toEqual(
      deleted.map((m) => m.offset),
    );
    expect(failed.get(messages[6]!)).toBeInstanceOf(StaleReferenceError);
    expect(failed.get(messages[6]!)).toMatchObject({
      reason: 'stale_reference',
      entity: 'project',
      entityId: '7',
      offset: 6,
      message: 'project 7 was deleted at 2026-01-02T03:04:05.000Z',
    });
    // detectors 5–7 were never announced: held, unless the project is deleted
    const unknownDetector = messages.filter(
      (m) => (m.value.detector_id ?? 0) > 4 && m.value.project_id !== 7,
    );
    expect([...held.keys()].map((m) => m.offset)).toEqual(unknownDetector.map((m) => m.offset));
    expect(held.get(unknownDetector[0]!)).toMatchObject({
      entity: 'detector',
      id: String(unknownDetector[0]!.value.detector_id),
    });
  } finally {
    client.release();
  }
});

it('a message held past its kind’s deadline fails as unknown_reference; SHOAL_REFERENCE_<KIND> turns holding off', async () => {
  const client = await db.pool.connect();
  try {
    const rules = referenceRulesFromEnv({
      SHOAL_HOLD_DEADLINE_SECONDS: '600',
      SHOAL_HOLD_DEADLINE_SECONDS_DETECTOR: '30',
    });
    const now = new Date('2026-11-30T12:00:00Z');
    const late = message(1, { project_id: 1, detector_id: 42 }, new Date(now.getTime() - 31_000));
    const early = message(2, { project_id: 1, detector_id: 42 }, new Date(now.getTime() - 29_000));
    const { failed, held } = await checkReferences([late, early], lookups, rules, client, now);
    expect(failed.get(late)).toBeInstanceOf(UnknownReferenceError);
    expect(failed.get(late)).toMatchObject({
      reason: 'unknown_reference',
      entity: 'detector',
      entityId: '42',
      message: 'detector 42 was never announced (held 31 s)',
    });
    expect(held.get(early)).toMatchObject({ entity: 'detector', id: '42', since: early.heldSince });

    const creating = referenceRulesFromEnv({ SHOAL_REFERENCE_DETECTOR: 'create' });
    const both = await checkReferences([late, early], lookups, creating, client, now);
    expect(both.failed.size + both.held.size).toBe(0);
  } finally {
    client.release();
  }
});

it('the issue kind (lifecycle): a command for a deleted issue is stale_reference(issue), one for an issue never opened is held, then unknown_reference(issue)', async () => {
  type Command = { issue_id: number };
  const issueLookup: Lookup<Command> = {
    entity: 'issue',
    unknown: 'announce',
    refs: (m) => m.value.issue_id,
    load: async (ids, tx) =>
      new Map(
        (
          await tx.query<{ id: string; deleted_at: Date | null }>(
            'SELECT id::text, deleted_at FROM issues WHERE id = ANY($1::bigint[])',
            [ids],
          )
        ).rows.map((r) => [r.id, r.deleted_at]),
      ),
  };
  const command = (offset: number, issue_id: number, heldSince?: Date) =>
    ({
      offset,
      value: { issue_id },
      ...(heldSince && { heldSince }),
    }) as unknown as Message<Command>;
  const now = new Date('2026-11-30T12:00:00Z');
  const live = command(0, 1);
  const deleted = command(1, 2);
  const early = command(2, 3);
  const late = command(3, 3, new Date(now.getTime() - 61_000));
  const failure = failurePolicyFromEnv({
    SHOAL_HOLD_DEADLINE_SECONDS_ISSUE: '60',
    SHOAL_POLICY_STALE_REFERENCE_ISSUE: 'skip',
  });
  // the per-kind variables name a kind the service looks up
  expect(() => assertKnownEntityKinds(failure, ['issue'])).not.toThrow();
  expect(() => assertKnownEntityKinds(failure, ['group'])).toThrow(
    'SHOAL_POLICY_STALE_REFERENCE_ISSUE',
  );
  const client = await db.pool.connect();
  try {
    const { failed, held } = await checkReferences(
      [live, deleted, early, late],
      [issueLookup],
      failure.references,
      client,
      now,
    );
    expect(failed.get(deleted)).toMatchObject({
      reason: 'stale_reference',
      entity: 'issue',
      entityId: '2',
      message: 'issue 2 was deleted at 2026-11-01T00:00:00.000Z',
    });
    expect(decideAction(failure.policy, 'stale_reference', 'issue')).toBe('skip');
    expect(held.get(early)).toMatchObject({ entity: 'issue', id: '3', since: now });
    expect(failed.get(late)).toMatchObject({
      reason: 'unknown_reference',
      entity: 'issue',
      entityId: '3',
    });
    expect(failed.has(live) || held.has(live)).toBe(false);
  } finally {
    client.release();
  }
});

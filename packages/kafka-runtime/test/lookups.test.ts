import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import type { PoolClient } from '@shoal/db';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  findStaleReferences,
  StaleReferenceError,
  type Lookup,
  type Message,
} from '../src/index.js';

let db: IsolatedDatabase;
beforeAll(async () => {
  db = await isolatedDatabase({ migrate: false });
  await db.pool.query(`
    CREATE TABLE projects (id int PRIMARY KEY, deleted_at timestamptz);
    CREATE TABLE detectors (id int PRIMARY KEY);
    INSERT INTO projects SELECT g, CASE WHEN g = 7 THEN now() END FROM generate_series(1, 20) g;
    INSERT INTO detectors SELECT g FROM generate_series(1, 4) g;`);
});
afterAll(() => db.drop());

type Value = { project_id: number; detector_id?: number };

const lookups: Lookup<Value>[] = [
  {
    entity: 'project',
    refs: (m) => m.value.project_id,
    load: async (ids, tx) =>
      (
        await tx.query(
          'SELECT id::text FROM projects WHERE id = ANY($1::int[]) AND deleted_at IS NULL',
          [ids],
        )
      ).rows.map((r) => r.id),
  },
  {
    entity: 'detector',
    refs: (m) => m.value.detector_id,
    load: async (ids, tx) =>
      (await tx.query('SELECT id::text FROM detectors WHERE id = ANY($1::int[])', [ids])).rows.map(
        (r) => r.id,
      ),
  },
];

it('loads each entity kind with one query per batch, not one per message, and names the stale ones', async () => {
  const messages = Array.from({ length: 300 }, (_, i) => ({
    offset: i,
    value: { project_id: 1 + (i % 25), detector_id: i % 3 === 0 ? 1 + (i % 7) : undefined },
  })) as unknown as Message<Value>[];
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
    const stale = await findStaleReferences(messages, lookups, counting);
    expect(queries).toHaveLength(2);
    // projects 7 (deleted) and 21–25 (never existed); detectors 5–7 (never existed)
    const expected = messages.filter(
      (m) => m.value.project_id === 7 || m.value.project_id > 20 || (m.value.detector_id ?? 0) > 4,
    );
    expect([...stale.keys()].map((m) => m.offset).sort((a, b) => a - b)).toEqual(
      expected.map((m) => m.offset),
    );
    const first = stale.get(messages[6]!)!; // project 7
    expect(first).toBeInstanceOf(StaleReferenceError);
    expect(first).toMatchObject({
      reason: 'stale_reference',
      entity: 'project',
      offset: 6,
      message: 'project 7 no longer exists',
    });
    expect(stale.get(messages[24]!)).toMatchObject({
      entity: 'project',
      message: 'project 25 no longer exists',
    });
    expect(stale.get(messages[12]!)).toMatchObject({
      entity: 'detector',
      message: 'detector 6 no longer exists',
    });
  } finally {
    client.release();
  }
});

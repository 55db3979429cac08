import { readdirSync } from 'node:fs';
import path from 'node:path';
import { isolatedDatabase, repoRoot, runEntryPoint, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  checkedSchema,
  createPool,
  migrate,
  runtimeMigrationsDir,
  serviceSchema,
  type Pool,
} from '../src/index.js';

const groupingDirs = [runtimeMigrationsDir, path.join(repoRoot, 'services/grouping/migrations')];
const counterDirs = [
  runtimeMigrationsDir,
  path.join(repoRoot, 'packages/kafka-runtime/test/counter-service/migrations'),
];
/** Every migration of the counter service's folders, by name, in the order they run. */
const counterMigrations = counterDirs
  .flatMap((dir) => readdirSync(dir).filter((file) => /\.(sql|js|ts)$/.test(file)))
  .map((file) => file.replace(/\.\w+$/, ''))
  .sort();
const runtimeTables = [
  'consumer_offsets',
  'held_messages',
  'instance_heartbeats',
  'message_failures',
  'message_rejections',
  'offset_resets',
  'outbox',
  'outbox_failures',
  'parked_keys',
  'parked_messages',
  'processed_messages',
];

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});
async function freshDatabase(): Promise<IsolatedDatabase> {
  const db = await isolatedDatabase({ migrate: false });
  cleanups.push(() => db.drop());
  return db;
}
function schemaPool(db: IsolatedDatabase, schema: string): Pool {
  const pool = createPool(db.url, { schema });
  cleanups.push(() => pool.end());
  return pool;
}

/** Tables (views, sequences) per schema, pgmigrations included, outside PostgreSQL's own. */
async function relations(db: IsolatedDatabase, kinds = ['r']): Promise<Record<string, string[]>> {
  const { rows } = await db.pool.query<{ schema: string; names: string[] }>(
    `SELECT n.nspname AS schema, array_agg(c.relname::text ORDER BY c.relname) AS names
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = ANY($1) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg_toast%'
     GROUP BY 1`,
    [kinds],
  );
  return Object.fromEntries(rows.map((r) => [r.schema, r.names]));
}

const migrationsIn = async (db: IsolatedDatabase, schema: string) =>
  (
    await db.pool.query<{ name: string; run_on: Date }>(
      `SELECT name, run_on FROM "${schema}".pgmigrations ORDER BY id`,
    )
  ).rows;

describe('serviceSchema', () => {
  it('is the service name in lower case with other characters as _, and refuses what SQL would need quoted', () => {
    expect(serviceSchema('grouping')).toBe('grouping');
    expect(serviceSchema('ingest-gateway')).toBe('ingest_gateway');
    expect(serviceSchema('Dedup.V2')).toBe('dedup_v2');
    expect(() => serviceSchema('9lives')).toThrow('schema "9lives": expected lower-case letters');
    expect(() => checkedSchema('a; DROP TABLE groups')).toThrow('expected lower-case letters');
    expect(() => createPool('postgres://127.0.0.1/x', { schema: 'Grouping' })).toThrow(
      'schema "Grouping"',
    );
  });
});

describe('two services on one database', () => {
  it('each migrate into a schema of their own: their tables, runtime tables and pgmigrations', async () => {
    const db = await freshDatabase();
    const grouping = serviceSchema('grouping');
    const counter = serviceSchema('counter');
    const groupingRan = await migrate({
      databaseUrl: db.url,
      direction: 'up',
      dirs: groupingDirs,
      schema: grouping,
    });
    const counterCli = runEntryPoint(
      'packages/db/src/cli/migrate.ts',
      ['up', '--schema', counter, ...counterDirs.flatMap((d) => ['--dir', d])],
      { DATABASE_URL: db.url },
    );
    expect(counterCli.stdout).toBe(counterMigrations.map((name) => `up: ${name}\n`).join(''));
    const tables = await relations(db);
    expect(tables.public).toBeUndefined();
    // both have a `projects` table: in one schema they would collide
    expect(tables[grouping]).toEqual(
      expect.arrayContaining([...runtimeTables, 'groups', 'projects', 'pgmigrations']),
    );
    expect(tables[grouping]).not.toContain('occurrence_counts');
    expect(tables[counter]).toEqual(
      [...runtimeTables, 'occurrence_counts', 'pgmigrations', 'projects'].sort(),
    );
    expect((await migrationsIn(db, grouping)).map((m) => m.name)).toEqual(
      groupingRan.map((m) => m.name),
    );
    expect((await migrationsIn(db, counter)).map((m) => m.name)).toContain(
      '1764201600000_counter-service',
    );

    // a pool with the schema reads and writes that service's tables only
    const groupingPool = schemaPool(db, grouping);
    const counterPool = schemaPool(db, counter);
    await groupingPool.query(`INSERT INTO outbox (events, event_count) VALUES ('[{}]', 1)`);
    await counterPool.query('INSERT INTO projects (id) VALUES (7)');
    expect((await counterPool.query('SELECT seq FROM outbox')).rowCount).toBe(0);
    expect((await groupingPool.query('SELECT id FROM projects')).rowCount).toBe(0);
    expect((await groupingPool.query('SELECT seq FROM outbox')).rowCount).toBe(1);

    expect(
      await migrate({ databaseUrl: db.url, direction: 'up', dirs: groupingDirs, schema: grouping }),
    ).toEqual([]);
    expect(
      await migrate({ databaseUrl: db.url, direction: 'up', dirs: counterDirs, schema: counter }),
    ).toEqual([]);
  });
});

describe('a deployment from before schemas', () => {
  /** The counter service migrated the old way, into public, with a row in each kind of table. */
  async function legacyDatabase(): Promise<IsolatedDatabase> {
    const db = await freshDatabase();
    await migrate({ databaseUrl: db.url, direction: 'up', dirs: counterDirs });
    await db.pool.query(`
      INSERT INTO occurrence_counts VALUES (1, 'fp', 41);
      INSERT INTO projects (id) VALUES (1);
      INSERT INTO consumer_offsets VALUES ('shoal.counter', 'occurrences', 0, 42, now());
      INSERT INTO outbox (events, event_count) VALUES ('[{"eventId": "00000000-0000-4000-8000-000000000001"}]', 1);`);
    return db;
  }

  it('has its tables moved into the service schema at its first migrate, rows kept and nothing run again', async () => {
    const db = await legacyDatabase();
    const before = await migrationsIn(db, 'public');
    const sequences = (await relations(db, ['S'])).public;
    const logs: string[] = [];
    // two processes of the service start together: one moves the tables, the other finds them moved
    const ran = await Promise.all(
      [1, 2].map(() =>
        migrate({
          databaseUrl: db.url,
          direction: 'up',
          dirs: counterDirs,
          schema: 'counter',
          log: (line) => logs.push(line),
        }),
      ),
    );
    expect(ran).toEqual([[], []]);
    expect(logs.filter((l) => l.startsWith('moved'))).toEqual([
      `moved ${counterMigrations.length} migrations and consumer_offsets, held_messages, instance_heartbeats, message_failures, message_rejections, occurrence_counts, offset_resets, ` +
        'outbox, outbox_events, outbox_failures, parked_keys, parked_messages, processed_messages, projects from public into counter',
    ]);
    expect(await relations(db, ['r', 'v', 'S'])).toEqual({
      counter: [...runtimeTables, 'occurrence_counts', 'outbox_events', 'pgmigrations', 'projects']
        .concat(sequences!)
        .sort(),
    });
    expect(await migrationsIn(db, 'counter')).toEqual(before);

    const pool = schemaPool(db, 'counter');
    expect((await pool.query('SELECT times_seen FROM occurrence_counts')).rows).toEqual([
      { times_seen: 41 },
    ]);
    expect((await pool.query('SELECT next_offset FROM consumer_offsets')).rows).toEqual([
      { next_offset: 42 },
    ]);
    // the outbox's sequence came along and goes on counting
    await pool.query(
      `INSERT INTO outbox (events, event_count) VALUES ('[{"eventId": "00000000-0000-4000-8000-000000000002"}]', 1)`,
    );
    expect((await pool.query('SELECT seq, event_id FROM outbox_events ORDER BY seq')).rows).toEqual(
      [
        { seq: 1, event_id: '00000000-0000-4000-8000-000000000001' },
        { seq: 2, event_id: '00000000-0000-4000-8000-000000000002' },
      ],
    );
  });

  it('is left to its own service: another service migrates a fresh schema and public stays as it is', async () => {
    const db = await legacyDatabase();
    const before = await relations(db, ['r', 'v', 'S']);
    const logs: string[] = [];
    await migrate({
      databaseUrl: db.url,
      direction: 'up',
      dirs: groupingDirs,
      schema: 'grouping',
      log: (line) => logs.push(line),
    });
    expect(logs).toContain(
      "public.pgmigrations lists 1764201600000_counter-service, not grouping's: leaving public as it is",
    );
    const after = await relations(db, ['r', 'v', 'S']);
    expect(after.public).toEqual(before.public);
    expect(after.grouping).toContain('groups');
    expect(after.grouping).toContain('outbox');

    await migrate({ databaseUrl: db.url, direction: 'up', dirs: counterDirs, schema: 'counter' });
    expect((await relations(db)).public).toBeUndefined();
  });

  it('moves nothing when one of its tables is missing from public, and says which', async () => {
    const db = await legacyDatabase();
    await db.pool.query('DROP TABLE projects');
    await expect(
      migrate({ databaseUrl: db.url, direction: 'up', dirs: counterDirs, schema: 'counter' }),
    ).rejects.toThrow(
      `moving counter's tables out of public: relation "public.projects" does not exist`,
    );
    const after = await relations(db, ['r', 'v', 'S']);
    expect(after.counter).toBeUndefined();
    expect(after.public).toContain('pgmigrations');
    expect(after.public).toContain('occurrence_counts');
    expect(after.shoal_adoption_probe).toBeUndefined();
  });

  it("moves nothing when public.pgmigrations skips one of the folders' migrations", async () => {
    const db = await legacyDatabase();
    await db.pool.query(`DELETE FROM pgmigrations WHERE name = '1764115200000_processed-ledger'`);
    const listed = counterMigrations.filter((name) => name !== '1764115200000_processed-ledger');
    await expect(
      migrate({ databaseUrl: db.url, direction: 'up', dirs: counterDirs, schema: 'counter' }),
    ).rejects.toThrow(
      `public.pgmigrations lists ${listed.join(', ')}; the folders start ${counterMigrations.slice(0, listed.length).join(', ')}`,
    );
    const after = await relations(db, ['r']);
    expect(after.counter).toBeUndefined();
    expect(after.shoal_adoption_probe).toBeUndefined();
  });
});

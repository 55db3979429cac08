import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isolatedDatabase, runEntryPoint, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, runtimeMigrationsDir, withTransaction } from '../src/index.js';

/** The runtime's migrations by name, in the order they run. */
const names = readdirSync(runtimeMigrationsDir)
  .map((file) => file.replace(/\.sql$/, ''))
  .sort();
/** How many migrations to take back to stand just before `name` (the newest first). */
const downTo = (name: string) => names.length - names.indexOf(name);

let db: IsolatedDatabase;
beforeAll(async () => {
  db = await isolatedDatabase({ migrate: false });
});
afterAll(() => db.drop());

const tables = async () =>
  (
    await db.pool.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = 'public' and table_name <> 'pgmigrations' order by 1`,
    )
  ).rows.map((r) => r.table_name);

describe('migrations', () => {
  it('go up, down and up again', async () => {
    const up = await migrate({ databaseUrl: db.url, direction: 'up' });
    expect(up.map((m) => m.name)).toEqual(names);
    expect(names.slice(0, 3)).toEqual([
      '1764028800000_runtime-tables',
      '1764115200000_processed-ledger',
      '1764633600000_outbox-batches',
    ]);
    const all = [
      'consumer_offsets',
      'held_messages',
      'instance_heartbeats',
      'message_failures',
      'offset_resets',
      'outbox',
      'outbox_events',
      'outbox_failures',
      'parked_keys',
      'parked_messages',
      'message_rejections',
      'processed_messages',
    ].sort();
    expect(await tables()).toEqual(all);

    // back to where outbox-batches is the newest
    await migrate({
      databaseUrl: db.url,
      direction: 'down',
      count: downTo('1764633600000_outbox-batches') - 1,
    });
    expect(await tables()).toEqual([
      'consumer_offsets',
      'message_failures',
      'outbox',
      'outbox_events',
      'processed_messages',
    ]);
    await migrate({ databaseUrl: db.url, direction: 'down', count: 3 });
    expect(await tables()).toEqual([]);

    await migrate({ databaseUrl: db.url, direction: 'up' });
    expect(await tables()).toEqual(all);
    expect(await migrate({ databaseUrl: db.url, direction: 'up' })).toEqual([]);
  });

  it('outbox-batches keeps unpublished events, in order, both ways', async () => {
    // one row per event
    await migrate({
      databaseUrl: db.url,
      direction: 'down',
      count: downTo('1764633600000_outbox-batches'),
    });
    await db.pool.query(`
      INSERT INTO outbox (event_id, topic, message_key, payload, published_at) VALUES
        ('00000000-0000-4000-8000-000000000001', 't', 'k1', '{"n": 1}', now()),
        ('00000000-0000-4000-8000-000000000002', 't', 'k2', '{"n": 2}', NULL),
        ('00000000-0000-4000-8000-000000000003', 't', 'k3', '{"n": 3}', NULL)`);
    await migrate({ databaseUrl: db.url, direction: 'up' }); // one row per transaction
    const unpublished = async () =>
      (
        await db.pool.query<{ event_id: string; message_key: string; payload: unknown }>(
          'SELECT event_id, message_key, payload FROM outbox_events WHERE published_at IS NULL ORDER BY seq, ordinal',
        )
      ).rows;
    const expected = [
      { event_id: '00000000-0000-4000-8000-000000000002', message_key: 'k2', payload: { n: 2 } },
      { event_id: '00000000-0000-4000-8000-000000000003', message_key: 'k3', payload: { n: 3 } },
    ];
    expect(await unpublished()).toEqual(expected);
    await db.pool.query(
      `INSERT INTO outbox (events, event_count) VALUES ('[{"eventId": "00000000-0000-4000-8000-000000000004", "topic": "t", "key": "k4", "payload": {"n": 4}, "headers": {}}]', 1)`,
    );
    await migrate({
      databaseUrl: db.url,
      direction: 'down',
      count: downTo('1764633600000_outbox-batches'),
    });
    const { rows } = await db.pool.query<{ message_key: string }>(
      'SELECT message_key FROM outbox WHERE published_at IS NULL ORDER BY seq',
    );
    expect(rows.map((r) => r.message_key)).toEqual(['k2', 'k3', 'k4']);
    await migrate({ databaseUrl: db.url, direction: 'up' });
    expect((await unpublished()).map((e) => e.message_key)).toEqual(['k2', 'k3', 'k4']);
    await db.pool.query('TRUNCATE outbox');
  });

  it('the CLI does the same against DATABASE_URL', () => {
    const env = { DATABASE_URL: db.url };
    const migrateCli = (...args: string[]) =>
      runEntryPoint('packages/db/src/cli/migrate.ts', args, env).stdout;
    const sinceBatches = names.slice(names.indexOf('1764633600000_outbox-batches'));
    expect(migrateCli('down', String(sinceBatches.length))).toBe(
      [...sinceBatches]
        .reverse()
        .map((name) => `down: ${name}\n`)
        .join(''),
    );
    expect(migrateCli('up')).toBe(sinceBatches.map((name) => `up: ${name}\n`).join(''));
    expect(migrateCli('up')).toBe('up: nothing to do\n');
  });

  it('refuses two migrations sharing a timestamp across folders, naming both, before touching the database', async () => {
    const serviceDir = mkdtempSync(path.join(tmpdir(), 'shoal-migrations-'));
    const clash = `${names.at(-1)!.split('_')[0]}_service-table.sql`;
    writeFileSync(path.join(serviceDir, clash), '-- Up Migration\nCREATE TABLE clash (id int);\n');
    await expect(
      migrate({ databaseUrl: db.url, direction: 'up', dirs: [runtimeMigrationsDir, serviceDir] }),
    ).rejects.toThrow(`${path.join(serviceDir, clash)} share the timestamp`);
    expect(await tables()).not.toContain('clash');
  });

  it('the CLI names a bad DATABASE_URL and a bad count', () => {
    const badUrl = runEntryPoint('packages/db/src/cli/migrate.ts', ['up'], {
      DATABASE_URL: 'localhost:5432',
    });
    expect(badUrl.status).toBe(1);
    expect(badUrl.stderr).toContain(
      'DATABASE_URL: expected a postgres or postgresql URL (got "localhost:5432")',
    );
    const badCount = runEntryPoint('packages/db/src/cli/migrate.ts', ['down', 'all'], {
      DATABASE_URL: db.url,
    });
    expect(badCount.status).toBe(1);
    expect(badCount.stderr).toContain('count must be a positive whole number, got "all"');
  });
});

describe('withTransaction', () => {
  it('commits when the work resolves and rolls everything back when it throws', async () => {
    await withTransaction(db.pool, (tx) =>
      tx.query(`insert into consumer_offsets values ('g', 't', 0, 10, now())`),
    );
    await expect(
      withTransaction(db.pool, async (tx) => {
        await tx.query(`update consumer_offsets set next_offset = 20`);
        await tx.query(`insert into consumer_offsets values ('g', 't', 1, 5, now())`);
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
    const rows = await db.pool.query(
      'select partition, next_offset from consumer_offsets order by partition',
    );
    expect(rows.rows).toEqual([{ partition: 0, next_offset: 10 }]);
  });
});

import { migrate, runtimeMigrationsDir } from '@shoal/db';
import { isolatedDatabase, waitFor, type IsolatedDatabase } from '@shoal/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHeartbeat } from '../src/heartbeat.js';

// The heartbeat (src/heartbeat.ts) against a real PostgreSQL: a beat that cannot be written is
// logged and the next one writes; the row carries each check and the error tracker; a check that
// hangs is down on time; a stop deletes the row.

let db: IsolatedDatabase;
beforeAll(async () => {
  db = await isolatedDatabase({ migrate: false });
});
afterAll(async () => {
  await db?.drop();
});

describe('startHeartbeat', () => {
  it('logs a beat it cannot write and writes the next; a stop removes the row', async () => {
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const heartbeat = startHeartbeat({
      pool: db.pool,
      group: 'beats',
      checks: {
        postgres: async () => void (await db.pool.query('SELECT 1')),
        kafka: () => Promise.reject(new Error('broker unreachable')),
      },
      logger,
      everyMs: 200,
    });
    try {
      // no instance_heartbeats table yet: the beats fail, and say so
      await waitFor('a failed beat logged', async () => warnings.length > 0);
      expect(JSON.parse(warnings[0]!)).toMatchObject({
        msg: 'heartbeat not written; the next one tries again',
        err: { message: expect.stringContaining('instance_heartbeats') },
      });
      await migrate({ databaseUrl: db.url, direction: 'up', dirs: [runtimeMigrationsDir] });
      await waitFor(
        'a beat written once the table exists',
        async () => (await db.pool.query('SELECT 1 FROM instance_heartbeats')).rowCount === 1,
      );
      const { rows } = await db.pool.query(
        'SELECT instance_id, consumer_group, pid, ready, checks FROM instance_heartbeats',
      );
      expect(rows).toEqual([
        {
          instance_id: heartbeat.instanceId,
          consumer_group: 'beats',
          pid: process.pid,
          ready: false,
          checks: {
            postgres: { status: 'ok' },
            kafka: { status: 'down', error: 'broker unreachable' },
            error_tracker: { status: expect.any(String), detail: expect.any(String) },
          },
        },
      ]);
    } finally {
      await heartbeat.stop();
    }
    expect((await db.pool.query('SELECT 1 FROM instance_heartbeats')).rowCount).toBe(0);
  }, 60_000);

  it('a check that never answers is down after an interval, and the beat is still written', async () => {
    const heartbeat = startHeartbeat({
      pool: db.pool,
      group: 'hangs',
      checks: { kafka: () => new Promise<void>(() => undefined) },
      logger: pino({ level: 'silent' }),
      everyMs: 300,
    });
    try {
      await heartbeat.beat();
      const { rows } = await db.pool.query(
        `SELECT ready, checks->'kafka' AS kafka FROM instance_heartbeats WHERE consumer_group = 'hangs'`,
      );
      expect(rows).toEqual([
        { ready: false, kafka: { status: 'down', error: 'no answer within 300 ms' } },
      ]);
    } finally {
      await heartbeat.stop();
    }
  }, 30_000);
});

import { topicNames } from '@shoal/contracts';
import { createPool, type Pool } from '@shoal/db';
import { createLogger, metricsRegistry } from '@shoal/observability';
import { isolatedDatabase, uniqueName, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventId, startScheduled, type RunningScheduled, type ScheduledJob } from '../src/index.js';
import { counterDatabase, waitFor } from './support.js';

// Two members of one service are two pools on one database schema, each with its scheduler.

let db: IsolatedDatabase;
const pools: Pool[] = [];
const schedulers: RunningScheduled[] = [];
const group = uniqueName('sched-');
const logger = createLogger('scheduled-test', process.env.TEST_LOG_LEVEL ?? 'silent');
const groupEvents = topicNames('sched-test.').groupEvents;

beforeAll(async () => {
  db = await isolatedDatabase(counterDatabase);
  await db.pool.query(
    `CREATE TABLE scheduled_runs (
       id serial PRIMARY KEY, job text NOT NULL, member text NOT NULL, backend int NOT NULL,
       started_at timestamptz NOT NULL, ended_at timestamptz NOT NULL)`,
  );
});
afterAll(async () => {
  await Promise.all(schedulers.map((s) => s.stop()));
  await Promise.all(pools.map((p) => p.end()));
  await db.drop();
});

function member(jobs: ScheduledJob[]): { pool: Pool; scheduler: RunningScheduled } {
  const pool = createPool(db.url, { schema: counterDatabase.schema, applicationName: 'member' });
  pools.push(pool);
  const scheduler = startScheduled({ jobs, group, pool, logger });
  schedulers.push(scheduler);
  return { pool, scheduler };
}

/** A run that records when it began and ended, on which connection, holding a sleep between. */
const recordingJob = (name: string, memberName: string): ScheduledJob => ({
  name,
  everyMs: 20,
  run: async (tx) => {
    const { rows } = await tx.query<{ id: number }>(
      `INSERT INTO scheduled_runs (job, member, backend, started_at, ended_at)
       VALUES ($1, $2, pg_backend_pid(), clock_timestamp(), clock_timestamp()) RETURNING id`,
      [name, memberName],
    );
    await tx.query('SELECT pg_sleep(0.15)');
    await tx.query('UPDATE scheduled_runs SET ended_at = clock_timestamp() WHERE id = $1', [
      rows[0]!.id,
    ]);
  },
});

async function runsOf(job: string, since = 0): Promise<{ member: string; backend: number }[]> {
  const { rows } = await db.pool.query<{ member: string; backend: number }>(
    'SELECT member, backend FROM scheduled_runs WHERE job = $1 AND id > $2 ORDER BY id',
    [job, since],
  );
  return rows;
}

async function lastRunId(): Promise<number> {
  const { rows } = await db.pool.query<{ id: number }>(
    'SELECT coalesce(max(id), 0) AS id FROM scheduled_runs',
  );
  return rows[0]!.id;
}

async function runCount(job: string, outcome: string): Promise<number> {
  const metric = await metricsRegistry.getSingleMetric('shoal_scheduled_runs_total')!.get();
  return (
    metric.values.find(
      (v) => v.labels.group === group && v.labels.job === job && v.labels.outcome === outcome,
    )?.value ?? 0
  );
}

async function outboxEventIds(): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    "SELECT e->>'eventId' AS id FROM outbox, json_array_elements(events) e ORDER BY seq",
  );
  return rows.map((r) => r.id);
}

it('two members never run a job at once; when the holder’s connection dies the other takes over, and back', async () => {
  const job = 'overlap';
  const a = member([recordingJob(job, 'a')]);
  const b = member([recordingJob(job, 'b')]);
  await waitFor('five runs', async () => (await runsOf(job)).length >= 5, 30_000);

  // whichever member took it runs it alone, on the connection that holds the lock
  const before = await runsOf(job);
  const holder = before[0]!.member;
  const other = holder === 'a' ? 'b' : 'a';
  expect(new Set(before.map((r) => r.member))).toEqual(new Set([holder]));
  const { rows: locks } = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  expect(locks.map((l) => l.pid)).toEqual([before.at(-1)!.backend]);

  // the holder's connection dies (most likely mid-run, in its sleep): the other member takes over
  const killedAt = await lastRunId();
  await db.pool.query('SELECT pg_terminate_backend($1)', [locks[0]!.pid]);
  await waitFor(
    `${other} to take the job over`,
    async () => (await runsOf(job, killedAt)).filter((r) => r.member === other).length >= 3,
    30_000,
  );

  // the first holder survived losing its connection: when the other stops, it takes the job back
  await (other === 'a' ? a : b).scheduler.stop();
  const stoppedAt = await lastRunId();
  await waitFor(
    `${holder} to take the job back`,
    async () => (await runsOf(job, stoppedAt)).filter((r) => r.member === holder).length >= 3,
    30_000,
  );
  const runs = await runsOf(job);
  expect(new Set(runs.map((r) => r.member))).toEqual(new Set(['a', 'b']));

  const { rows: overlaps } = await db.pool.query(
    `SELECT x.id, y.id FROM scheduled_runs x JOIN scheduled_runs y
       ON x.job = y.job AND x.id < y.id AND x.started_at < y.ended_at AND y.started_at < x.ended_at
     WHERE x.job = $1`,
    [job],
  );
  expect(overlaps).toEqual([]);
}, 120_000);

it('a transient failure rolls the run back and retries it with backoff, long before the next tick', async () => {
  const job = 'flaky';
  let attempts = 0;
  member([
    {
      name: job,
      everyMs: 600_000,
      run: async (tx, ctx) => {
        attempts++;
        ctx.emit(`attempt-${attempts}`, (id) => groupEvent(id));
        // a real transient failure: SQLSTATE 57014, statement timeout
        if (attempts <= 2)
          await tx.query("SET LOCAL statement_timeout = '20ms'; SELECT pg_sleep(1)");
      },
    },
  ]);
  await waitFor(
    'the third attempt to commit',
    async () => (await runCount(job, 'committed')) === 1,
    20_000,
  );
  expect(attempts).toBe(3);
  expect(await runCount(job, 'transient')).toBe(2);
  const ids = await outboxEventIds();
  expect(ids).toContain(eventId(group, `scheduled:${job}:attempt-3`, 0));
  expect(ids).not.toContain(eventId(group, `scheduled:${job}:attempt-1`, 0));
  expect(ids).not.toContain(eventId(group, `scheduled:${job}:attempt-2`, 0));
}, 60_000);

it('a permanent failure rolls the run back, is counted, and the job keeps ticking', async () => {
  const job = 'strict';
  let runs = 0;
  member([
    {
      name: job,
      everyMs: 100,
      run: async (tx, ctx) => {
        runs++;
        ctx.emit(`run-${runs}`, (id) => groupEvent(id));
        ctx.emit(`run-${runs}`, (id) => groupEvent(id));
        // a real permanent failure: SQLSTATE 22P02, invalid text representation
        if (runs === 1) await tx.query("SELECT 'not a number'::int");
      },
    },
  ]);
  await waitFor('two runs to commit', async () => (await runCount(job, 'committed')) >= 2, 20_000);
  expect(await runCount(job, 'permanent')).toBe(1);
  const ids = await outboxEventIds();
  expect(ids).not.toContain(eventId(group, `scheduled:${job}:run-1`, 0));
  // two events of one run with the same coverage count 0, 1
  expect(ids).toContain(eventId(group, `scheduled:${job}:run-2`, 0));
  expect(ids).toContain(eventId(group, `scheduled:${job}:run-2`, 1));
}, 60_000);

const groupEvent = (id: string) => ({
  topic: groupEvents,
  key: '7',
  value: {
    event_id: id,
    event_type: 'occurrence_grouped',
    occurred_at: new Date().toISOString(),
    group_id: 7,
    project_id: 1,
  },
});

it('refuses a job declared twice, without a name, or without a positive interval', () => {
  const job = (name: string, everyMs = 100): ScheduledJob => ({
    name,
    everyMs,
    run: async () => {},
  });
  const start = (jobs: ScheduledJob[]) => () =>
    startScheduled({ jobs, group, pool: db.pool, logger });
  expect(start([job('a'), job('a')])).toThrow('scheduled job a is declared twice');
  expect(start([job('')])).toThrow('a scheduled job needs a name');
  expect(start([job('a', 0)])).toThrow('scheduled job a: everyMs must be positive');
});

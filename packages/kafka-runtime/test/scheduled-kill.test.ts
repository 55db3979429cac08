import {
  isolatedDatabase,
  isolatedTopics,
  kafka,
  uniqueName,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { createLogger } from '@shoal/observability';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  eventId,
  failurePolicyFromEnv,
  HEADER,
  runConsumer,
  type RuntimeHook,
} from '../src/index.js';
import {
  codecFor,
  counterDatabase,
  readAll,
  spawnCounter,
  unpublished,
  waitFor,
} from './support.js';

/**
 * The counter service (a child process) with its scheduled activity report (one event per counter
 * whose total changed, ids from (counter, total)) is SIGKILLed at random instants and at the
 * scheduled run's and the relay's hook points, and restarted; another copy runs uninterrupted.
 * Both must publish exactly the same event ids, each once by id, and end with the same report.
 */

const COUNTERS = 300;
const KILLS = 6; // three external, three at the hook points (each point at least once)
const SELF_KILL_POINTS: RuntimeHook[] = ['scheduled:before-commit', 'relay:published'];

interface Run {
  db: IsolatedDatabase;
  ns: IsolatedTopics;
}
let killed: Run;
let calm: Run;
const group = uniqueName('sched-kill-');
const children: RunningEntryPoint[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  const runs = await Promise.all(
    [0, 1].map(async () => ({
      db: await isolatedDatabase(counterDatabase),
      ns: await isolatedTopics({ partitions: { groupEvents: 3 } }),
    })),
  );
  [killed, calm] = runs as [Run, Run];
  for (const run of runs)
    await run.db.pool.query(
      `INSERT INTO occurrence_counts (project_id, fingerprint, times_seen)
       SELECT 1 + i % 3, 'fp-' || i, 1 + (i * 7) % 13 FROM generate_series(0, $1 - 1) i`,
      [COUNTERS],
    );
});
afterAll(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await Promise.all([killed, calm].flatMap((r) => [r.db.drop(), r.ns.drop()]));
});

const spawn = (run: Run, extra: NodeJS.ProcessEnv = {}) => {
  const child = spawnCounter({
    SHOAL_TOPIC_NAMESPACE: run.ns.namespace,
    DATABASE_URL: run.db.url,
    SHOAL_CONSUMER_GROUP: group,
    SHOAL_SESSION_TIMEOUT_MS: '2000',
    COUNTER_ACTIVITY_EVERY_MS: '300',
    COUNTER_ACTIVITY_PER_RUN: '5',
    ...extra,
  });
  children.push(child);
  return child;
};

async function counters(db: IsolatedDatabase): Promise<Map<string, number>> {
  const { rows } = await db.pool.query<{ id: string; times_seen: number }>(
    `SELECT project_id || ':' || fingerprint AS id, times_seen FROM occurrence_counts`,
  );
  return new Map(rows.map((r) => [r.id, r.times_seen]));
}

async function reported(db: IsolatedDatabase): Promise<Map<string, number>> {
  const { rows } = await db.pool.query<{ id: string; times_seen: number }>(
    `SELECT project_id || ':' || fingerprint AS id, reported_times_seen AS times_seen
     FROM occurrence_counts`,
  );
  return new Map(rows.map((r) => [r.id, r.times_seen]));
}

const allReported = async (db: IsolatedDatabase) => {
  const [c, r] = await Promise.all([counters(db), reported(db)]);
  return [...c].every(([id, total]) => r.get(id) === total);
};

/**
 * A second wave of changes (every other counter's total grows), made once everything of the
 * first was reported, so both runs report the same totals whenever their runs happen.
 */
function bumpWhenReported(db: IsolatedDatabase): { done: () => boolean; stop: () => void } {
  let bumped = false;
  let stopped = false;
  void (async () => {
    while (!stopped && !bumped) {
      if (await allReported(db)) {
        await db.pool.query(
          `UPDATE occurrence_counts SET times_seen = times_seen + 1 + length(fingerprint)
           WHERE substr(fingerprint, 4)::int % 2 = 0`,
        );
        bumped = true;
      } else await sleep(200);
    }
  })();
  return { done: () => bumped, stop: () => (stopped = true) };
}

/**
 * Runs it uninterrupted until every change was reported and published, then stops it with SIGTERM.
 * Nothing kills it: its runs come every 50 ms (not 300), as nothing but its pace depends on that.
 */
async function drain(run: Run, wave: { done: () => boolean }): Promise<void> {
  const child = spawn(run, { COUNTER_ACTIVITY_EVERY_MS: '50' });
  await waitFor(
    'every change reported and published',
    async () =>
      wave.done() && (await allReported(run.db)) && (await unpublished(run.db.pool)) === 0,
    180_000,
  );
  child.child.kill('SIGTERM');
  expect(await child.exited).toBe(0);
}

it('a scheduled run SIGKILLed anywhere and restarted publishes each event once, as an uninterrupted run does', async () => {
  const expectedIds = new Set<string>();
  const addExpected = (totals: Map<string, number>) => {
    for (const [id, total] of totals)
      expectedIds.add(eventId(group, `scheduled:activity:${id}:${total}`, 0));
  };
  addExpected(await counters(killed.db));

  const killedWave = bumpWhenReported(killed.db);
  const selfKilled: Record<string, number> = {};
  let external = 0;
  for (let k = 0; k < KILLS; k++) {
    const point = k % 2 === 1 ? SELF_KILL_POINTS[(k >> 1) % SELF_KILL_POINTS.length] : undefined;
    const child = spawn(
      killed,
      point ? { SHOAL_CRASH_AT: `${point}:${1 + Math.floor(Math.random() * 4)}` } : {},
    );
    const died = await Promise.race([
      child.exited.then(() => true),
      (point ? sleep(15_000) : child.ready.then(() => sleep(100 + Math.random() * 1500))).then(
        () => false,
      ),
    ]);
    if (died) selfKilled[point!] = (selfKilled[point!] ?? 0) + 1;
    else {
      child.child.kill('SIGKILL');
      external++;
      await child.exited;
    }
  }
  await drain(killed, killedWave);
  killedWave.stop();

  const calmWave = bumpWhenReported(calm.db);
  await drain(calm, calmWave);
  calmWave.stop();

  // the second wave's totals: every other counter's
  const [before, after] = [await counters(calm.db), await counters(killed.db)];
  for (const [id, total] of after)
    if (total !== before.get(id)) throw new Error(`the two runs' counters differ at ${id}`);
  const phaseTwo = new Map([...after].filter(([id]) => Number(id.split(':fp-')[1]) % 2 === 0));
  addExpected(phaseTwo);

  const [recordsKilled, recordsCalm] = await Promise.all([
    readAll(killed.ns.topics.groupEvents),
    readAll(calm.ns.topics.groupEvents),
  ]);
  const idsKilled = new Set(recordsKilled.map((r) => r.headers[HEADER.messageId]!));
  const idsCalm = new Set(recordsCalm.map((r) => r.headers[HEADER.messageId]!));
  console.info(
    `scheduled kills: ${external} external, self-killed ${JSON.stringify(selfKilled)}; ` +
      `${recordsKilled.length} records, ${idsKilled.size} distinct ids`,
  );
  expect([...idsKilled].sort()).toEqual([...expectedIds].sort());
  expect([...idsCalm].sort()).toEqual([...expectedIds].sort());
  // a re-publish (killed between the relay's publish and mark) repeats the same record, byte for byte
  const valueOf = new Map<string, string>();
  for (const r of recordsKilled) {
    const id = r.headers[HEADER.messageId]!;
    const value = r.value!.toString('base64');
    if (valueOf.has(id)) expect(value).toBe(valueOf.get(id));
    valueOf.set(id, value);
  }
  expect(await appliedOnce(killed, recordsKilled.length)).toEqual(
    new Map([...expectedIds].map((id) => [id, 1])),
  );
  expect(await reported(killed.db)).toEqual(await reported(calm.db));
  expect(await reported(killed.db)).toEqual(after);
  expect(external + Object.values(selfKilled).reduce((a, b) => a + b, 0)).toBe(KILLS);
  expect(selfKilled['scheduled:before-commit']).toBeGreaterThanOrEqual(1);
}, 600_000);

/**
 * How often a consumer of the events (the runtime, deduplicating on `shoal.message-id`) applies
 * each: the relay's re-publishes must not count twice.
 */
async function appliedOnce(run: Run, records: number): Promise<Map<string, number>> {
  const { pool } = run.db;
  await pool.query('CREATE TABLE seen_events (event_id text PRIMARY KEY, times int NOT NULL)');
  const consumerGroup = uniqueName('activity-reader-');
  const consumer = await runConsumer({
    group: consumerGroup,
    topics: ['groupEvents'],
    topicNames: run.ns.topics,
    handle: async (batch, tx) => {
      await tx.query(
        `INSERT INTO seen_events SELECT unnest($1::text[]), 1
         ON CONFLICT (event_id) DO UPDATE SET times = seen_events.times + 1`,
        [batch.map((m) => m.value.event_id)],
      );
    },
    pool,
    kafka: kafka(consumerGroup),
    codec: codecFor(run.ns.topics),
    failure: failurePolicyFromEnv({}),
    logger: createLogger('activity-reader', process.env.TEST_LOG_LEVEL ?? 'silent'),
  });
  try {
    await waitFor(
      'the reader to read every record',
      async () => {
        const { rows } = await pool.query<{ n: number }>(
          'SELECT coalesce(sum(next_offset), 0)::int AS n FROM consumer_offsets WHERE consumer_group = $1',
          [consumerGroup],
        );
        return rows[0]!.n === records;
      },
      60_000,
    );
  } finally {
    await consumer.stop();
  }
  const { rows } = await pool.query<{ event_id: string; times: number }>(
    'SELECT event_id, times FROM seen_events',
  );
  return new Map(rows.map((r) => [r.event_id, r.times]));
}

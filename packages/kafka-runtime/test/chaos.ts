import { isDeepStrictEqual } from 'node:util';
import type { Occurrence } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  uniqueName,
  withAdmin,
  type IsolatedDatabase,
  type RunningEntryPoint,
} from '@shoal/testing';
import { HEADER } from '../src/index.js';
import {
  codecFor,
  encodeAll,
  countsOf,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  readAll,
  spawnCounter,
  totalCount,
  unpublished,
  waitFor,
} from './support.js';

export interface ChaosOptions {
  messages: number;
  kills: number;
  /** Every n-th message references a project that does not exist (dead-lettered). */
  staleEvery?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  messages: number;
  applied: number;
  deadLettered: number;
  kills: { external: number; selfKilled: Record<string, number> };
  countsEqual: boolean;
  eventIdsEqual: boolean;
  distinctEvents: number;
  republishedDuplicates: number;
  failuresEqual: boolean;
  seconds: number;
}

// where a process kills itself, rotating: between outbox publish and mark, after the handler but
// before commit, after the dead-letter write but before commit
const SELF_KILL_POINTS = [
  'relay:published',
  'consumer:before-commit',
  'consumer:after-dead-letter',
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Publishes `messages` occurrences while a counter service (a child process) is SIGKILLed
 * `kills` times at random instants and at named points, restarting it each time; then runs an
 * uninterrupted counter over the same input and compares the read models, the published event
 * ids and the recorded failures.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const staleEvery = options.staleEvery ?? 997;
  const ns = await isolatedTopics({ partitions: { occurrences: 3, groupEvents: 3 } });
  const uninterruptedOutput = `${ns.namespace}uninterrupted.shoal.group-events.v1`;
  await withAdmin((admin) =>
    admin.createTopics({
      topics: [{ topic: uninterruptedOutput, numPartitions: 3 }],
      waitForLeaders: true,
    }),
  );
  const [killed, calm] = await Promise.all([
    isolatedDatabase(counterDatabase),
    isolatedDatabase(counterDatabase),
  ]);
  const dbs: IsolatedDatabase[] = [killed, calm];
  const group = uniqueName('chaos-');
  const children: RunningEntryPoint[] = [];
  try {
    await Promise.all(dbs.map((db) => liveProjects(db.pool, [1, 2, 3, 4, 5])));
    const values: Occurrence[] = Array.from({ length: options.messages }, (_, i) => {
      const o = occurrence(i, { projects: 5, fingerprints: 40, seed: group });
      return i % staleEvery === staleEvery - 1 ? { ...o, project_id: 99 } : o;
    });
    const stale = values.filter((v) => v.project_id === 99).length;
    const codec = codecFor(ns.topics);

    // publish in slices over the whole kill phase, so kills land while messages flow
    const slices = Math.max(10, options.kills * 2);
    const sliceMs = Math.max(200, (options.kills * 3500) / slices);
    const publishing = (async () => {
      for (let s = 0; s < slices; s++) {
        const part = values.slice(
          Math.floor((s * values.length) / slices),
          Math.floor(((s + 1) * values.length) / slices),
        );
        await produceRaw(ns.topics.occurrences, await encodeAll(codec, part));
        await sleep(sliceMs);
      }
      log(`published ${values.length} occurrences (${stale} reference a missing project)`);
    })();

    const env = (db: IsolatedDatabase, output: string, extra: NodeJS.ProcessEnv = {}) => ({
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      DATABASE_URL: db.url,
      SHOAL_CONSUMER_GROUP: group,
      COUNTER_OUTPUT_TOPIC: output,
      SHOAL_SESSION_TIMEOUT_MS: '2000',
      SHOAL_MAX_BATCH_SIZE: String(50 + Math.floor(Math.random() * 450)),
      ...extra,
    });

    const selfKilled: Record<string, number> = {};
    let external = 0;
    for (let k = 0; k < options.kills; k++) {
      const point =
        k % 3 === 2 ? SELF_KILL_POINTS[Math.floor(k / 3) % SELF_KILL_POINTS.length] : undefined;
      const child = spawnCounter(
        env(
          killed,
          ns.topics.groupEvents,
          point ? { COUNTER_CRASH_AT: `${point}:${1 + Math.floor(Math.random() * 3)}` } : {},
        ),
      );
      children.push(child);
      await Promise.race([child.ready, child.exited]);
      if (point) {
        // it dies at the point; if that point is not reached soon (no dead letter yet), kill it anyway
        const died = await Promise.race([
          child.exited.then(() => true),
          sleep(8000).then(() => false),
        ]);
        if (died) selfKilled[point] = (selfKilled[point] ?? 0) + 1;
        else {
          child.child.kill('SIGKILL');
          external++;
          await child.exited;
        }
      } else {
        await sleep(100 + Math.random() * 1400);
        child.child.kill('SIGKILL');
        external++;
        await child.exited;
      }
      log(
        `kill ${k + 1}/${options.kills}: ${point && selfKilled[point] ? `died at ${point}` : 'SIGKILL'} after ${await totalCount(killed.pool)} applied`,
      );
    }
    await publishing;

    const expectedApplied = values.length - stale;
    const drain = async (db: IsolatedDatabase, output: string, what: string) => {
      const child = spawnCounter(env(db, output));
      children.push(child);
      await waitFor(
        `${what} to apply every message`,
        async () =>
          (await totalCount(db.pool)) === expectedApplied &&
          (await unpublished(db.pool)) === 0 &&
          (await failuresOf(db)).length === stale,
        180_000,
      );
      child.child.kill('SIGTERM');
      await child.exited;
      log(`${what}: drained`);
    };
    await drain(killed, ns.topics.groupEvents, 'restarted counter');
    await drain(calm, uninterruptedOutput, 'uninterrupted counter');

    const [countsKilled, countsCalm] = await Promise.all([
      countsOf(killed.pool),
      countsOf(calm.pool),
    ]);
    const [eventsKilled, eventsCalm] = await Promise.all([
      readAll(ns.topics.groupEvents),
      readAll(uninterruptedOutput),
    ]);
    const idsKilled = new Set(eventsKilled.map((r) => r.headers[HEADER.messageId]));
    const idsCalm = new Set(eventsCalm.map((r) => r.headers[HEADER.messageId]));
    const [failuresKilled, failuresCalm] = await Promise.all([
      failuresOf(killed),
      failuresOf(calm),
    ]);
    return {
      messages: values.length,
      applied: Object.values(countsKilled).reduce((a, b) => a + b, 0),
      deadLettered: failuresKilled.length,
      kills: { external, selfKilled },
      countsEqual: isDeepStrictEqual(countsKilled, countsCalm),
      eventIdsEqual: isDeepStrictEqual(idsKilled, idsCalm),
      distinctEvents: idsKilled.size,
      republishedDuplicates: eventsKilled.length - idsKilled.size,
      failuresEqual: isDeepStrictEqual(failuresKilled, failuresCalm),
      seconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    for (const c of children) c.child.kill('SIGKILL');
    await Promise.all([
      ...dbs.map((db) => db.drop()),
      ns.drop(),
      withAdmin((admin) => admin.deleteTopics({ topics: [uninterruptedOutput] })),
    ]);
  }
}

async function failuresOf(db: IsolatedDatabase): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    `SELECT message_id || ' ' || reason AS id FROM message_failures ORDER BY 1`,
  );
  return rows.map((r) => r.id);
}

// `npm run chaos -- --kills 50 --messages 200000`
if (import.meta.url === `file://${process.argv[1]}`) {
  const { parseCli } = await import('@shoal/config/cli');
  const usage = `Usage: npm run chaos -- [--messages N] [--kills K]

Publishes N occurrences (default 20000) while the runtime's counter service is SIGKILLed K times
(default 10) at random instants and at named points (between outbox publish and mark, before
commit, after a dead-letter write), then compares read model, published event ids and failures
with an uninterrupted run. Needs the local stack (npm run stack -- up). Exits 1 on any difference.
`;
  const { values } = parseCli(usage, { messages: { type: 'string' }, kills: { type: 'string' } });
  const messages = Number(values.messages ?? 20000);
  const kills = Number(values.kills ?? 10);
  if (!Number.isInteger(messages) || messages < 1 || !Number.isInteger(kills) || kills < 0) {
    process.stderr.write(`--messages and --kills take whole numbers\n\n${usage}`);
    process.exit(2);
  }
  const report = await runChaos({
    messages,
    kills,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  const ok =
    report.countsEqual &&
    report.eventIdsEqual &&
    report.failuresEqual &&
    report.distinctEvents === report.applied;
  process.stdout.write(
    ok
      ? 'OK: read model, event ids and failures equal an uninterrupted run\n'
      : 'FAILED: the runs differ\n',
  );
  process.exit(ok ? 0 : 1);
}

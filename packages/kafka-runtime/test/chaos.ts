import { isDeepStrictEqual } from 'node:util';
import type { Occurrence, TopicKey } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  uniqueName,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { HEADER, type RuntimeHook } from '../src/index.js';
import {
  codecFor,
  countsOf,
  type TopicRecord,
  encodeAll,
  deletedProjects,
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

/**
 * The kill-anywhere comparison, for any consumer service (a target): the same occurrences go to
 * two namespaces of topics, each with a database of its own; in one the service (a child process)
 * is SIGKILLed `kills` times at random instants and at the runtime's hook points, restarting each
 * time, in the other it runs uninterrupted. Some name a deleted entity (dead-lettered
 * `stale_reference`), some an entity announced only partway through (held until then, then
 * applied: in the killed run once some are held, halfway through the kills; in the uninterrupted
 * one once all of them are). Then the read models, the event ids published on the real topics and
 * the recorded failures must be equal.
 */

/** What a service brings to the comparison. */
export interface ChaosTarget {
  name: string;
  /** Its database, migrated as its main migrates it (options of `isolatedDatabase`). */
  database: Parameters<typeof isolatedDatabase>[0];
  partitions: Partial<Record<TopicKey, number>>;
  /** Entities its database needs before the first message, the deleted one among them. */
  seed(db: IsolatedDatabase): Promise<void>;
  /**
   * The i-th occurrence, naming a live entity, a deleted one (dead-lettered `stale_reference` once in
   * both runs) or the one `announce` makes known (held until then).
   */
  occurrence(i: number, seed: string, names: 'live' | 'deleted' | 'late'): Occurrence;
  /** Makes the entity `late` occurrences name known, in a run's database or through its topics. */
  announce(run: { db: IsolatedDatabase; ns: IsolatedTopics }, seed: string): Promise<void>;
  /**
   * The first message that may name the late entity: the ones before it create every group, so the
   * message creating a group (and its event's id) is the same whenever the late ones are applied.
   */
  lateFrom: number;
  /** Starts the service; it must honour `SHOAL_CRASH_AT=<hook>:<n>` (see `crash-at.ts`). */
  spawn(env: NodeJS.ProcessEnv): RunningEntryPoint;
  /** How many occurrences its read model counts as applied. */
  applied(db: IsolatedDatabase): Promise<number>;
  /** Its read model, in a form two runs can be compared by (no ids a sequence hands out). */
  readModel(db: IsolatedDatabase): Promise<unknown>;
  /** Where its runtime tables are. */
  table(name: string): string;
  /** Hook points where it may kill itself besides the runtime's (rotating with them). */
  selfKillPoints?: RuntimeHook[];
  /**
   * Events a scheduled job publishes: their coverage depends on when the job ran, so the two runs
   * cannot agree on their ids. They are left out of the id comparison, waited for when a run
   * drains, and checked in each run on their own (`check` lists what is wrong).
   */
  scheduled?: {
    is(record: TopicRecord): boolean;
    caughtUp(db: IsolatedDatabase): Promise<boolean>;
    check(db: IsolatedDatabase, records: TopicRecord[]): Promise<string[]>;
  };
}

export interface ChaosOptions {
  messages: number;
  kills: number;
  /** Every n-th message references a deleted entity (dead-lettered). */
  staleEvery?: number;
  /** Every n-th other message from the target's `lateFrom` on names the entity announced late. */
  lateEvery?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  target: string;
  messages: number;
  applied: number;
  deadLettered: number;
  /** Messages naming the late entity, and how many of them were held when it was announced. */
  late: number;
  heldWhenAnnounced: { killed: number; calm: number };
  kills: { external: number; selfKilled: Record<string, number> };
  readModelEqual: boolean;
  eventIdsEqual: boolean;
  distinctEvents: number;
  republishedDuplicates: number;
  failuresEqual: boolean;
  /** What the target's check of its scheduled events found wrong, per run. */
  scheduledProblems: string[];
  seconds: number;
}

// where a process kills itself, rotating: between outbox publish and mark, after the handler but
// before commit, after the dead-letter write but before commit
const SELF_KILL_POINTS: RuntimeHook[] = [
  'relay:published',
  'consumer:before-commit',
  'consumer:after-dead-letter',
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The runtime tests' counter service: occurrences counted per fingerprint, one event each. */
export const counterChaos: ChaosTarget = {
  name: 'counter',
  database: counterDatabase,
  partitions: { occurrences: 3, groupEvents: 3 },
  seed: async (db) => {
    await liveProjects(db.pool, [1, 2, 3, 4, 5]);
    await deletedProjects(db.pool, [99]);
  },
  occurrence: (i, seed, names) => {
    const o = occurrence(i, { projects: 5, fingerprints: 40, seed });
    return names === 'live' ? o : { ...o, project_id: names === 'deleted' ? 99 : 6 };
  },
  // counts commute: any message may wait
  lateFrom: 0,
  announce: ({ db }) => liveProjects(db.pool, [6]),
  spawn: spawnCounter,
  applied: (db) => totalCount(db.pool),
  readModel: (db) => countsOf(db.pool),
  table: (name) => name,
};

export async function runChaos(
  options: ChaosOptions,
  target: ChaosTarget = counterChaos,
): Promise<ChaosReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const staleEvery = options.staleEvery ?? 997;
  const lateEvery = options.lateEvery ?? 89;
  const killedTopics = await isolatedTopics({ partitions: target.partitions });
  const calmTopics = await isolatedTopics({ partitions: target.partitions });
  const [killed, calm] = await Promise.all([
    isolatedDatabase(target.database),
    isolatedDatabase(target.database),
  ]);
  const group = uniqueName('chaos-');
  const children: RunningEntryPoint[] = [];
  const runs = [
    { db: killed, ns: killedTopics },
    { db: calm, ns: calmTopics },
  ];
  try {
    await Promise.all(runs.map((run) => target.seed(run.db)));
    const names = (i: number) =>
      i % staleEvery === staleEvery - 1
        ? 'deleted'
        : i >= target.lateFrom && i % lateEvery === lateEvery - 1
          ? 'late'
          : 'live';
    const values = Array.from({ length: options.messages }, (_, i) =>
      target.occurrence(i, group, names(i)),
    );
    const stale = Math.floor(options.messages / staleEvery);
    const late = values.filter((_, i) => names(i) === 'late').length;
    const heldIn = async (run: (typeof runs)[number]) =>
      (
        await run.db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${target.table('held_messages')}`,
        )
      ).rows[0]!.n;
    const heldWhenAnnounced = { killed: -1, calm: -1 };
    // announces the late entity once some of its messages are held (in the calm run: all of them)
    const announceOnceHeld = async (run: (typeof runs)[number], which: 'killed' | 'calm') => {
      const held = await heldIn(run);
      if (late > 0 && (held === 0 || (which === 'calm' && held < late))) return false;
      await target.announce(run, group);
      heldWhenAnnounced[which] = held;
      log(`${which} run: announced the late entity with ${held} messages held`);
      return true;
    };
    const send = async (ns: IsolatedTopics, part: Occurrence[]) =>
      produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), part));
    await send(calmTopics, values);

    // publish in slices over the whole kill phase, so kills land while messages flow
    const slices = Math.max(10, options.kills * 2);
    const sliceMs = Math.max(200, (options.kills * 3500) / slices);
    const publishing = (async () => {
      for (let s = 0; s < slices; s++) {
        await send(
          killedTopics,
          values.slice(
            Math.floor((s * values.length) / slices),
            Math.floor(((s + 1) * values.length) / slices),
          ),
        );
        await sleep(sliceMs);
      }
      log(
        `published ${values.length} occurrences (${stale} name a deleted entity, ${late} one announced late)`,
      );
    })();

    const env = (run: (typeof runs)[number], extra: NodeJS.ProcessEnv = {}) => ({
      SHOAL_TOPIC_NAMESPACE: run.ns.namespace,
      DATABASE_URL: run.db.url,
      SHOAL_CONSUMER_GROUP: group,
      SHOAL_SESSION_TIMEOUT_MS: '2000',
      SHOAL_MAX_BATCH_SIZE: String(50 + Math.floor(Math.random() * 450)),
      ...extra,
    });

    const selfKilled: Record<string, number> = {};
    let external = 0;
    const selfKillPoints = [...SELF_KILL_POINTS, ...(target.selfKillPoints ?? [])];
    for (let k = 0; k < options.kills; k++) {
      const point =
        k % 3 === 2 ? selfKillPoints[Math.floor(k / 3) % selfKillPoints.length] : undefined;
      const child = target.spawn(
        env(
          runs[0]!,
          point ? { SHOAL_CRASH_AT: `${point}:${1 + Math.floor(Math.random() * 3)}` } : {},
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
        `kill ${k + 1}/${options.kills}: ${point && selfKilled[point] ? `died at ${point}` : 'SIGKILL'} after ${await target.applied(killed)} applied`,
      );
      if (heldWhenAnnounced.killed < 0 && 2 * (k + 1) >= options.kills)
        await announceOnceHeld(runs[0]!, 'killed');
    }
    await publishing;

    const expectedApplied = values.length - stale;
    const drain = async (run: (typeof runs)[number], which: 'killed' | 'calm', what: string) => {
      const child = target.spawn(env(run));
      children.push(child);
      if (heldWhenAnnounced[which] < 0)
        await waitFor(
          `${what} to hold the messages naming the late entity`,
          () => announceOnceHeld(run, which),
          180_000,
        );
      await waitFor(
        `${what} to apply every message`,
        async () =>
          (await target.applied(run.db)) === expectedApplied &&
          // a caught-up job's last events are in the outbox by then
          ((await target.scheduled?.caughtUp(run.db)) ?? true) &&
          (await unpublished(run.db.pool, target.table('outbox'))) === 0 &&
          (await failuresOf(run.db, target)).length === stale,
        180_000,
      );
      child.child.kill('SIGTERM');
      await child.exited;
      log(`${what}: drained`);
    };
    await drain(runs[0]!, 'killed', `restarted ${target.name}`);
    await drain(runs[1]!, 'calm', `uninterrupted ${target.name}`);

    const [modelKilled, modelCalm] = await Promise.all(runs.map((r) => target.readModel(r.db)));
    const [eventsKilled, eventsCalm] = await Promise.all(
      runs.map((r) => readAll(r.ns.topics.groupEvents)),
    );
    const compared = (records: TopicRecord[]) =>
      new Set(
        records.filter((r) => !target.scheduled?.is(r)).map((r) => r.headers[HEADER.messageId]),
      );
    const idsKilled = compared(eventsKilled!);
    const idsCalm = compared(eventsCalm!);
    const scheduledProblems = target.scheduled
      ? (
          await Promise.all(
            [eventsKilled!, eventsCalm!].map(async (records, i) =>
              (await target.scheduled!.check(runs[i]!.db, records)).map(
                (p) => `${i === 0 ? 'killed' : 'calm'} run: ${p}`,
              ),
            ),
          )
        ).flat()
      : [];
    const [failuresKilled, failuresCalm] = await Promise.all(
      runs.map((r) => failuresOf(r.db, target)),
    );
    return {
      target: target.name,
      messages: values.length,
      applied: await target.applied(killed),
      deadLettered: failuresKilled!.length,
      late,
      heldWhenAnnounced,
      kills: { external, selfKilled },
      readModelEqual: isDeepStrictEqual(modelKilled, modelCalm),
      eventIdsEqual: isDeepStrictEqual(idsKilled, idsCalm),
      distinctEvents: new Set(eventsKilled!.map((r) => r.headers[HEADER.messageId])).size,
      republishedDuplicates:
        eventsKilled!.length - new Set(eventsKilled!.map((r) => r.headers[HEADER.messageId])).size,
      scheduledProblems,
      failuresEqual: isDeepStrictEqual(failuresKilled, failuresCalm),
      seconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    for (const c of children) c.child.kill('SIGKILL');
    await Promise.all([...runs.map((r) => r.db.drop()), ...runs.map((r) => r.ns.drop())]);
  }
}

async function failuresOf(db: IsolatedDatabase, target: ChaosTarget): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(
    `SELECT message_id || ' ' || reason AS id FROM ${target.table('message_failures')} ORDER BY 1`,
  );
  return rows.map((r) => r.id);
}

/** Every check of a report; empty when the killed run ended exactly where the uninterrupted one did. */
export function chaosDifferences(report: ChaosReport): string[] {
  return [
    report.readModelEqual ? '' : 'the read models differ',
    report.eventIdsEqual ? '' : 'the published event ids differ',
    report.failuresEqual ? '' : 'the recorded failures differ',
    ...report.scheduledProblems,
    report.applied === report.messages - report.deadLettered
      ? ''
      : `${report.applied} applied of ${report.messages - report.deadLettered}`,
  ].filter(Boolean);
}

/**
 * The fuzz run's consumer process and its progress: starting it, sending to it, and waiting until
 * every input partition's offset stored in PostgreSQL reaches the partition's high watermark (and,
 * at the end, nothing is held or parked any more), or nothing moved for a while; then naming each
 * partition that did not, with the error the runtime last logged for it.
 */
import type { TopicKey } from '@shoal/contracts';
import {
  spawnEntryPoint,
  withAdmin,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { produceRaw } from '../../packages/kafka-runtime/test/support.js';
import type { FuzzCase } from './cases.js';
import type { Check, FuzzTarget } from './engine.js';

/** One fuzz run: a target's process on topics and a database of its own. */
export interface Run {
  target: FuzzTarget;
  ns: IsolatedTopics;
  db: IsolatedDatabase;
  group: string;
  child: RunningEntryPoint;
  /** The id the runtime gives a case's message when it is applied. */
  messageIdOf(c: Pick<FuzzCase, 'headers' | 'topic' | 'payload'>): string | undefined;
}

/** Starts the target's main as a child process; resolves once it says it is consuming. */
export async function startTarget(
  target: FuzzTarget,
  on: Pick<Run, 'ns' | 'db' | 'group'>,
): Promise<RunningEntryPoint> {
  const child = spawnEntryPoint(
    target.main,
    {
      DATABASE_URL: on.db.url,
      SHOAL_TOPIC_NAMESPACE: on.ns.namespace,
      SHOAL_CONSUMER_GROUP: on.group,
      SHOAL_SESSION_TIMEOUT_MS: '6000',
      ...target.env,
    },
    target.readyWhen,
  );
  await Promise.race([
    child.ready,
    child.exited.then((code) => {
      throw new Error(
        `${target.name} exited (${code}) before it was ready:\n${child.output.join('\n')}`,
      );
    }),
  ]);
  return child;
}

/** Produces cases in order (per topic, so per partition), with their keys and headers. */
export async function send(ns: IsolatedTopics, cases: FuzzCase[]): Promise<void> {
  const byTopic = new Map<TopicKey, FuzzCase[]>();
  for (const c of cases) byTopic.set(c.topic, [...(byTopic.get(c.topic) ?? []), c]);
  for (const [topic, list] of byTopic)
    await produceRaw(
      ns.topics[topic],
      list.map((c) => ({ key: c.key, value: c.value, headers: c.headers })),
    );
}

/** The applied message ids in the target's processed ledger (dead-lettered ids are kept there too). */
export async function ledgerOf(run: Run): Promise<Set<string>> {
  const { rows } = await run.db.pool.query<{ message_id: string }>(
    `SELECT message_id FROM ${run.target.table('processed_messages')} WHERE consumer_group = $1 AND kind <> 'dead_lettered'`,
    [run.group],
  );
  return new Set(rows.map((r) => r.message_id));
}

export interface End {
  /** High watermark and stored next offset of every input partition (`topic:partition`). */
  ends: Map<string, number>;
  stored: Map<string, number>;
  total: number;
  behind: number;
  backlog: number;
  /** Messages in `held_messages` and `parked_messages` (waiting for an entity or a key's head). */
  held: number;
  parked: number;
}

/** How many of the group's messages (of `ids`: all) are held, and how many parked. */
export async function waitingOf(
  run: Run,
  ids?: string[],
): Promise<{ held: number; parked: number }> {
  const count = async (table: string) =>
    (
      await run.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${run.target.table(table)}
         WHERE consumer_group = $1 AND ($2::text[] IS NULL OR message_id = ANY($2::text[]))`,
        [run.group, ids ?? null],
      )
    ).rows[0]!.n;
  return { held: await count('held_messages'), parked: await count('parked_messages') };
}

async function positionOf(run: Run): Promise<End> {
  const ends = new Map<string, number>();
  await withAdmin(async (admin) => {
    for (const key of run.target.inputs)
      for (const p of await admin.fetchTopicOffsets(run.ns.topics[key]))
        ends.set(`${run.ns.topics[key]}:${p.partition}`, Number(p.high));
  });
  const { rows } = await run.db.pool.query<{
    topic: string;
    partition: number;
    next_offset: string;
  }>(
    `SELECT topic, partition, next_offset FROM ${run.target.table('consumer_offsets')} WHERE consumer_group = $1`,
    [run.group],
  );
  const stored = new Map(rows.map((r) => [`${r.topic}:${r.partition}`, Number(r.next_offset)]));
  const { rows: outbox } = await run.db.pool.query<{ n: number }>(
    `SELECT coalesce(sum(event_count), 0)::int AS n FROM ${run.target.table('outbox')} WHERE published_at IS NULL`,
  );
  let total = 0;
  let behind = 0;
  for (const [tp, high] of ends) {
    total += high;
    behind += Math.max(0, high - (stored.get(tp) ?? 0));
  }
  return { ends, stored, total, behind, backlog: outbox[0]!.n, ...(await waitingOf(run)) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every partition at its end (`consumed`), and besides the outbox empty and nothing held or parked (`settled`). */
const reached = {
  consumed: (p: End) => p.behind === 0,
  settled: (p: End) => p.behind === 0 && p.backlog === 0 && p.held === 0 && p.parked === 0,
};

/**
 * Waits until everything is sent and the run has `reached` `until`; or the process exited; or
 * nothing moved for `stallMs`. Logs progress every `progressEveryMs`.
 */
export async function waitForEnd(
  run: Run,
  sending: Promise<void>,
  options: {
    until: keyof typeof reached;
    stallMs: number;
    progressEveryMs: number;
    log: (line: string) => void;
  },
): Promise<End> {
  let sent = false;
  void sending.then(() => (sent = true));
  let last = await positionOf(run);
  let lastMove = Date.now();
  let lastLog = 0;
  for (;;) {
    await sleep(500);
    if (run.child.child.exitCode !== null) break;
    const now = await positionOf(run);
    if (
      now.behind !== last.behind ||
      now.total !== last.total ||
      now.backlog !== last.backlog ||
      now.held !== last.held ||
      now.parked !== last.parked
    )
      lastMove = Date.now();
    last = now;
    if (Date.now() - lastLog >= options.progressEveryMs) {
      lastLog = Date.now();
      options.log(
        `${sent ? 'all sent' : 'sending'}: ${now.total - now.behind} of ${now.total} offsets applied, outbox backlog ${now.backlog}, held ${now.held}, parked ${now.parked}`,
      );
    }
    if ((sent && reached[options.until](now)) || Date.now() - lastMove > options.stallMs) break;
  }
  await sending;
  return last;
}

/** Every partition moved to its end; a stopped one is named with what the runtime last logged for it. */
export function checkPartitions(run: Run, end: End): Check {
  const { child } = run.child;
  const stuck = [...end.ends].filter(([tp, high]) => (end.stored.get(tp) ?? 0) < high);
  const detail =
    child.exitCode !== null
      ? `${run.target.name} exited ${child.exitCode}: ${run.child.output.slice(-5).join(' | ')}`
      : stuck.length
        ? stuck
            .map(([tp, high]) => {
              const at = tp.lastIndexOf(':');
              const error = lastErrorOf(
                run.child.output,
                tp.slice(0, at),
                Number(tp.slice(at + 1)),
              );
              return `${tp} stopped at ${end.stored.get(tp) ?? 0} of ${high} (${error ?? 'no error logged'})`;
            })
            .join('; ')
        : `${end.ends.size} partitions, ${end.total} offsets`;
  return {
    name: 'every partition moved to its end (stored offsets = high watermarks)',
    ok: stuck.length === 0 && child.exitCode === null,
    detail,
  };
}

/** The runtime's last error logged for a partition: what holds it. */
function lastErrorOf(output: string[], topic: string, partition: number): string | undefined {
  for (const line of [...output].reverse()) {
    if (!line.includes(topic)) continue;
    try {
      const entry = JSON.parse(line) as {
        topic?: string;
        partition?: number;
        msg?: string;
        err?: { message?: string };
      };
      if (entry.topic === topic && entry.partition === partition && entry.err)
        return `${entry.msg}: ${entry.err.message?.slice(0, 200)}`;
    } catch {
      // not a log line
    }
  }
  return undefined;
}

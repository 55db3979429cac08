/**
 * The fuzz run against one consumer (a target): its real service as a child process, its input
 * topics fed bad messages of every kind interleaved with as many good ones on other keys, then
 * checked: every partition moved to its end (the offsets stored in PostgreSQL reach the high
 * watermarks), every bad message is in its topic's real `.dlq` exactly once with its reason (and
 * entity), nothing good is there, the processed ledger holds exactly the applied messages, and the
 * target's own read model and events say each good message was applied once.
 */
import type { TopicKey } from '@shoal/contracts';
import { DEFAULT_ORDERED_TOPICS, HEADER, shortTopicName } from '@shoal/kafka-runtime';
import {
  isolatedDatabase,
  isolatedTopics,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { codecFor } from '../../packages/kafka-runtime/test/support.js';
import {
  APPLIED,
  CASE_HEADER,
  genericKinds,
  type CaseSource,
  type FuzzCase,
  type Kind,
  type Payload,
  type Sample,
} from './cases.js';
import { checkEachCase, checkFailureRows, checkLedger, type KindResult } from './checks.js';
import { checkPartitions, ledgerOf, send, startTarget, waitForEnd, type Run } from './progress.js';

export type { KindResult } from './checks.js';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** What a consumer brings to the fuzz run. Adding a consumer is one line in `targets.ts`. */
export interface FuzzTarget {
  name: string;
  /** Its entry point (run as a child process) and the log line that says it is consuming. */
  main: string;
  readyWhen: string;
  /** Environment of its own, besides the run's connections (e.g. short hold deadlines). */
  env?: Record<string, string>;
  /** Its database, migrated as its main migrates it (options of `isolatedDatabase`). */
  database: Parameters<typeof isolatedDatabase>[0];
  inputs: TopicKey[];
  partitions: Partial<Record<TopicKey, number>>;
  /** Where its tables (and its runtime tables) are: the one place that names them. */
  table(name: string): string;
  /** The message id the runtime gives an applied message without a `shoal.message-id` header. */
  payloadMessageId(topic: TopicKey, payload: Payload): string | undefined;
  prepare(): Preparation;
}

export interface Preparation extends Omit<CaseSource, 'schemaId'> {
  /** Applied before the run: entities to delete, groups to refer to. */
  setup: Sample[];
  /** The i-th good message (fresh ids; a key no bad message uses). */
  good(i: number): Sample;
  /** Kinds only this target knows: in-range extreme values, references to deleted entities. */
  kinds: Kind[];
  /** The target's own read-model and event checks over what was applied (setup first, in send order). */
  verify(applied: FuzzCase[], db: IsolatedDatabase, ns: IsolatedTopics): Promise<Check[]>;
}

export interface FuzzOptions {
  /** Bad messages, and as many good ones. */
  messages: number;
  /** Give up waiting when no partition moved for this long. */
  stallSeconds?: number;
  log?: (line: string) => void;
  /** Progress every this many ms (stderr). */
  progressEveryMs?: number;
}

export interface FuzzReport {
  target: string;
  /** Messages sent (N of the bad kinds, N good ones), and how many of them must be dead-lettered. */
  sent: number;
  deadLettered: number;
  kinds: KindResult[];
  checks: Check[];
  ok: boolean;
  seconds: number;
}

export async function runFuzz(target: FuzzTarget, options: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const ns = await isolatedTopics({ partitions: target.partitions });
  const db = await isolatedDatabase(target.database);
  const group = uniqueName('fuzz-');
  let child: RunningEntryPoint | undefined;
  try {
    const codec = codecFor(ns.topics);
    const prep = target.prepare();
    const schemaIds = new Map<TopicKey, number>();
    for (const topic of target.inputs) {
      const frame = await codec.encode(topic, prep.valid(topic, 0).payload as never);
      schemaIds.set(topic, frame.readUInt32BE(1));
    }
    const schemaId = (topic: TopicKey) => schemaIds.get(topic)!;
    const kinds = [...genericKinds(target.inputs, { ...prep, schemaId }), ...prep.kinds];
    const messageIdOf = (c: Pick<FuzzCase, 'headers' | 'topic' | 'payload'>) =>
      c.headers[HEADER.messageId] ?? (c.payload && target.payloadMessageId(c.topic, c.payload));
    const asCase = async (id: string, kind: string, s: Sample, unframed = false) =>
      ({
        id,
        kind,
        topic: s.topic,
        key: s.key,
        value: unframed
          ? Buffer.from(JSON.stringify(s.payload))
          : await codec.encode(s.topic, s.payload as never),
        headers: { ...s.headers },
        expect: APPLIED,
        payload: s.payload,
      }) satisfies FuzzCase;

    child = await startTarget(target, { ns, db, group });
    log(`${target.name} is running (group ${group}, namespace ${ns.namespace})`);
    const run: Run = { target, ns, db, group, child, messageIdOf };

    const setup = await Promise.all(prep.setup.map((s, i) => asCase(`s${i}`, 'setup', s)));
    await send(ns, setup);
    const setupIds = setup.map((c) => messageIdOf(c)!);
    await waitFor(
      'the setup messages to be applied',
      async () => {
        const applied = await ledgerOf(run);
        return setupIds.every((id) => applied.has(id));
      },
      180_000, // the first join of a loaded broker's group can take a minute
    );
    log(`setup applied: ${setup.length} messages`);

    // each bad message followed by a good one
    // On an ordered topic a dead-lettered message parks its key until it is replayed or discarded,
    // so there a message that must fail gets a key of its own, as the fuzz asks
    const ordered = (topic: TopicKey) => DEFAULT_ORDERED_TOPICS.includes(shortTopicName(topic));
    const cases: FuzzCase[] = [];
    for (let i = 0; i < options.messages; i++) {
      const kind = kinds[i % kinds.length]!;
      const made = kind.make(i);
      const ownKey = ordered(kind.topic) && !('applied' in made.expect);
      cases.push({
        id: `b${i}`,
        kind: kind.name,
        topic: kind.topic,
        ...made,
        key: ownKey ? `fuzz-own-${kind.topic}-${i}` : made.key,
      });
      cases.push(await asCase(`g${i}`, 'good', prep.good(i), i % 4 === 3));
    }
    for (const c of cases) c.headers[CASE_HEADER] = c.id;
    log(
      `sending ${options.messages} bad messages of ${kinds.length} kinds and ${options.messages} good ones to ${target.inputs.join(', ')}`,
    );
    const sending = (async () => {
      for (let i = 0; i < cases.length; i += 1000) await send(ns, cases.slice(i, i + 1000));
    })();
    const end = await waitForEnd(run, sending, {
      stallMs: (options.stallSeconds ?? 60) * 1000,
      progressEveryMs: options.progressEveryMs ?? 10_000,
      log,
    });

    const applied = [...setup, ...cases.filter((c) => 'applied' in c.expect)];
    const { check: deadLetters, kinds: kindResults } = await checkEachCase(run, cases);
    const bad = cases.filter((c) => !('applied' in c.expect));
    const checks = [
      checkPartitions(run, end),
      deadLetters,
      await checkLedger(run, applied),
      await checkFailureRows(run, bad.length),
      ...(await prep.verify(applied, db, ns)),
    ];

    return {
      target: target.name,
      sent: cases.length,
      deadLettered: bad.length,
      kinds: kindResults,
      checks,
      ok: checks.every((c) => c.ok),
      seconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    if (child && child.child.exitCode === null) {
      child.child.kill('SIGKILL');
      await child.exited;
    }
    await Promise.all([db.drop(), ns.drop()]);
  }
}

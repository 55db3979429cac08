/**
 * The fuzz run against one consumer (a target): its real service as a child process, its input
 * topics fed bad messages of every kind interleaved with as many good ones on other keys, then
 * messages naming entities announced only after them (held, or parked behind a held one on their
 * key) and the announcements; then checked: every partition moved to its end (the offsets stored in
 * PostgreSQL reach the high watermarks) and nothing is left held or parked, every bad message is in
 * its topic's real `.dlq` exactly once with its reason (and entity), nothing good is there, the
 * processed ledger holds exactly the applied messages, and the target's own read model and events
 * say each good message was applied once.
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
import {
  checkEachCase,
  checkFailureRows,
  checkLateWaited,
  checkLedger,
  checkNothingWaits,
  type KindResult,
} from './checks.js';
import {
  checkPartitions,
  ledgerOf,
  send,
  startTarget,
  waitForEnd,
  waitingOf,
  type Run,
} from './progress.js';

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
  /** Its database, migrated as its main migrates it (options of `isolatedDatabase`). */
  database: Parameters<typeof isolatedDatabase>[0];
  inputs: TopicKey[];
  partitions: Partial<Record<TopicKey, number>>;
  /** Its environment beside the run's topics, database and group (e.g. a short hold deadline). */
  env?: NodeJS.ProcessEnv;
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
  /** Sent after every case, `rounds` times over: see `Late`. */
  late(rounds: number): Late;
  /** The target's own read-model and event checks over what was applied (setup first, in send order). */
  verify(applied: FuzzCase[], db: IsolatedDatabase, ns: IsolatedTopics): Promise<Check[]>;
}

/**
 * Messages naming entities not yet announced, each held (or parked on its ordered key behind a held
 * one), then what announces those entities: each must end applied once, in order on its key.
 */
export interface Late {
  held: { kind: string; sample: Sample }[];
  /** Steps, each sent once everything before it is consumed. */
  announce: Sample[][];
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
  /** Messages sent naming entities announced after them, and how many were held or parked then. */
  late: { sent: number; held: number; parked: number };
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
    const phase = async (until: 'consumed' | 'settled', sending: Promise<void>) =>
      waitForEnd(run, sending, {
        until,
        stallMs: (options.stallSeconds ?? 60) * 1000,
        progressEveryMs: options.progressEveryMs ?? 10_000,
        log,
      });
    let end = await phase(
      'consumed',
      (async () => {
        for (let i = 0; i < cases.length; i += 1000) await send(ns, cases.slice(i, i + 1000));
      })(),
    );

    // then the late ones: held until announced, which happens only once all of them are held or parked
    const late = prep.late(Math.max(1, Math.ceil(options.messages / kinds.length)));
    const lateCases = await Promise.all(late.held.map((h, i) => asCase(`l${i}`, h.kind, h.sample)));
    const announcements = await Promise.all(
      late.announce.map((step, s) =>
        Promise.all(step.map((a, i) => asCase(`a${s}.${i}`, 'late announcement', a))),
      ),
    );
    for (const c of [...lateCases, ...announcements.flat()]) c.headers[CASE_HEADER] = c.id;
    let waiting = { held: 0, parked: 0 };
    if (end.behind === 0) {
      log(`sending ${lateCases.length} messages naming entities not yet announced`);
      end = await phase('consumed', send(ns, lateCases));
      waiting = await waitingOf(
        run,
        lateCases.map((c) => messageIdOf(c)!),
      );
      for (const step of announcements) {
        if (end.behind > 0) break;
        log(`announcing: ${step.length} messages`);
        end = await phase('consumed', send(ns, step));
      }
      if (end.behind === 0) end = await phase('settled', Promise.resolve());
    }
    cases.push(...lateCases, ...announcements.flat());

    const applied = [...setup, ...cases.filter((c) => 'applied' in c.expect)];
    const { check: deadLetters, kinds: kindResults } = await checkEachCase(run, cases);
    const bad = cases.filter((c) => !('applied' in c.expect));
    const checks = [
      checkPartitions(run, end),
      checkLateWaited(lateCases.length, waiting),
      checkNothingWaits(end),
      deadLetters,
      await checkLedger(run, applied),
      await checkFailureRows(run, bad.length),
      ...(await prep.verify(applied, db, ns)),
    ];

    return {
      target: target.name,
      sent: cases.length,
      deadLettered: bad.length,
      late: { sent: lateCases.length, ...waiting },
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

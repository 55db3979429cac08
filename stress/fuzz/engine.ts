/**
 * The fuzz run against one consumer (a target): its real service as a child process, its input
 * topics fed bad messages of every kind interleaved with as many good ones on other keys, then
 * checked: every partition moved to its end (the offsets stored in PostgreSQL reach the high
 * watermarks), every bad message is in its topic's real `.dlq` exactly once with its reason (and
 * entity), nothing good is there, the processed ledger holds exactly the applied messages, and the
 * target's own read model and events say each good message was applied once.
 */
import { dlqTopic, type TopicKey } from '@shoal/contracts';
import { DLQ_HEADER, HEADER } from '@shoal/kafka-runtime';
import {
  isolatedDatabase,
  isolatedTopics,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  withAdmin,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import {
  codecFor,
  produceRaw,
  readAll,
  type TopicRecord,
} from '../../packages/kafka-runtime/test/support.js';
import {
  APPLIED,
  CASE_HEADER,
  genericKinds,
  outcomeText,
  type CaseSource,
  type FuzzCase,
  type Kind,
  type Payload,
  type Sample,
} from './cases.js';

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
  migrationDirs: string[];
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

export interface KindResult {
  kind: string;
  topic: TopicKey;
  expect: string;
  sent: number;
  ok: number;
  /** Up to three examples of what happened instead. */
  wrong: string[];
}

export interface FuzzReport {
  target: string;
  bad: number;
  good: number;
  kinds: KindResult[];
  checks: Check[];
  ok: boolean;
  seconds: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runFuzz(target: FuzzTarget, options: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const ns = await isolatedTopics({ partitions: target.partitions });
  const db = await isolatedDatabase({ dirs: target.migrationDirs });
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

    child = spawnEntryPoint(
      target.main,
      {
        DATABASE_URL: db.url,
        SHOAL_TOPIC_NAMESPACE: ns.namespace,
        SHOAL_CONSUMER_GROUP: group,
        SHOAL_SESSION_TIMEOUT_MS: '6000',
      },
      target.readyWhen,
    );
    await Promise.race([
      child.ready,
      child.exited.then((code) => {
        throw new Error(
          `${target.name} exited (${code}) before it was ready:\n${child!.output.join('\n')}`,
        );
      }),
    ]);
    log(`${target.name} is running (group ${group}, namespace ${ns.namespace})`);

    const ledger = async () =>
      new Set(
        (
          await db.pool.query<{ message_id: string }>(
            `SELECT message_id FROM ${target.table('processed_messages')} WHERE consumer_group = $1`,
            [group],
          )
        ).rows.map((r) => r.message_id),
      );
    const setup = await Promise.all(prep.setup.map((s, i) => asCase(`s${i}`, 'setup', s)));
    await send(setup);
    const setupIds = setup.map((c) => messageIdOf(c)!);
    await waitFor(
      'the setup messages to be applied',
      async () => {
        const applied = await ledger();
        return setupIds.every((id) => applied.has(id));
      },
      60_000,
    );
    log(`setup applied: ${setup.length} messages`);

    const cases: FuzzCase[] = [];
    for (let i = 0; i < options.messages; i++) {
      const kind = kinds[i % kinds.length]!;
      cases.push({ id: `b${i}`, kind: kind.name, topic: kind.topic, ...kind.make(i) });
      cases.push(await asCase(`g${i}`, 'good', prep.good(i), i % 4 === 3));
    }
    for (const c of cases) c.headers[CASE_HEADER] = c.id;
    log(
      `sending ${options.messages} bad messages of ${kinds.length} kinds and ${options.messages} good ones to ${target.inputs.join(', ')}`,
    );
    const sending = (async () => {
      for (let i = 0; i < cases.length; i += 1000) await send(cases.slice(i, i + 1000));
    })();

    // wait until every input partition's stored offset reaches its high watermark
    const progress = async () => {
      const ends = await endsOf(target.inputs.map((k) => ns.topics[k]));
      const stored = await storedOffsets(db, target, group);
      let behind = 0;
      let total = 0;
      for (const [tp, high] of ends) {
        total += high;
        behind += Math.max(0, high - (stored.get(tp) ?? 0));
      }
      const backlog = await outboxBacklog(db, target);
      return { ends, stored, behind, total, backlog };
    };
    let last = await progress();
    let lastMove = Date.now();
    let lastLog = 0;
    let sent = false;
    void sending.then(() => (sent = true));
    const stallMs = (options.stallSeconds ?? 60) * 1000;
    for (;;) {
      await sleep(500);
      if (child.child.exitCode !== null) break;
      const now = await progress();
      if (now.behind !== last.behind || now.total !== last.total || now.backlog !== last.backlog)
        lastMove = Date.now();
      last = now;
      if (Date.now() - lastLog >= (options.progressEveryMs ?? 10_000)) {
        lastLog = Date.now();
        log(
          `${sent ? 'all sent' : 'sending'}: ${now.total - now.behind} of ${now.total} offsets applied, outbox backlog ${now.backlog}`,
        );
      }
      if (sent && now.behind === 0 && now.backlog === 0) break;
      if (Date.now() - lastMove > stallMs) break;
    }
    await sending;

    const checks: Check[] = [];
    // 1. every partition moved to its end
    const stuck = [...last.ends].filter(([tp, high]) => (last.stored.get(tp) ?? 0) < high);
    const stuckDetail = stuck.map(([tp, high]) => {
      const [topic, partition] = splitTp(tp);
      return `${tp} stopped at ${last.stored.get(tp) ?? 0} of ${high} (${lastErrorOf(child!.output, topic, partition) ?? 'no error logged'})`;
    });
    checks.push({
      name: 'every partition moved to its end (stored offsets = high watermarks)',
      ok: stuck.length === 0 && child.child.exitCode === null,
      detail:
        child.child.exitCode !== null
          ? `${target.name} exited ${child.child.exitCode}: ${child.output.slice(-5).join(' | ')}`
          : stuck.length
            ? stuckDetail.join('; ')
            : `${last.ends.size} partitions, ${last.total} offsets`,
    });

    // 2. each bad message in its dead-letter topic exactly once, with its reason; nothing else there
    const dlq = new Map<string, TopicRecord[]>();
    const strays: string[] = [];
    for (const topic of target.inputs) {
      for (const record of await readAll(dlqTopic(ns.topics[topic]))) {
        const id = record.headers[CASE_HEADER];
        if (!id) strays.push(`${topic} offset ${record.headers[DLQ_HEADER.originalOffset]}`);
        else dlq.set(id, [...(dlq.get(id) ?? []), record]);
      }
    }
    const ledgerIds = await ledger();
    const byKind = new Map<string, KindResult>();
    for (const c of cases) {
      const name = `${c.topic}\u0000${c.kind}`;
      const result = byKind.get(name) ?? {
        kind: c.kind,
        topic: c.topic,
        expect: outcomeText(c.expect),
        sent: 0,
        ok: 0,
        wrong: [],
      };
      byKind.set(name, result);
      result.sent++;
      const records = dlq.get(c.id) ?? [];
      const id = messageIdOf(c);
      const problem =
        dlqProblem(c, records, ns.topics[c.topic]) ??
        ('applied' in c.expect
          ? id !== undefined && !ledgerIds.has(id)
            ? 'expected applied, not applied'
            : undefined
          : id !== undefined && ledgerIds.has(id)
            ? `expected ${outcomeText(c.expect)}, applied`
            : undefined);
      if (problem === undefined) result.ok++;
      else if (result.wrong.length < 3) result.wrong.push(`${c.id}: ${problem}`);
    }
    const kindResults = [...byKind.values()];
    const wrongKinds = kindResults.filter((k) => k.ok !== k.sent);
    const bad = cases.filter((c) => !('applied' in c.expect));
    checks.push({
      name: 'each bad message dead-lettered exactly once with its reason, each good one applied',
      ok: wrongKinds.length === 0 && strays.length === 0,
      detail:
        wrongKinds.length || strays.length
          ? `${wrongKinds.length} of ${kindResults.length} kinds differ${strays.length ? `; ${strays.length} dead letters of no fuzz case` : ''}`
          : `${bad.length} dead letters, ${kindResults.length} kinds`,
    });

    // 3. the processed ledger holds exactly the applied messages (each applied once)
    const applied = [...setup, ...cases.filter((c) => 'applied' in c.expect)];
    const expectedIds = new Set(applied.map((c) => messageIdOf(c)!));
    const missing = [...expectedIds].filter((id) => !ledgerIds.has(id));
    const extra = [...ledgerIds].filter((id) => !expectedIds.has(id));
    checks.push({
      name: 'the processed ledger holds exactly the applied messages',
      ok: missing.length === 0 && extra.length === 0,
      detail: `${ledgerIds.size} entries, ${expectedIds.size} expected; missing ${missing.length} ${missing.slice(0, 3).join(' ')}, extra ${extra.length} ${extra.slice(0, 3).join(' ')}`,
    });

    // 4. the failures table: one row per bad message
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${target.table('message_failures')} WHERE consumer_group = $1`,
      [group],
    );
    checks.push({
      name: 'one failure row per bad message',
      ok: rows[0]!.n === bad.length,
      detail: `${rows[0]!.n} rows, ${bad.length} bad messages`,
    });

    // 5. the target's read model and events
    checks.push(...(await prep.verify(applied, db, ns)));

    return {
      target: target.name,
      bad: bad.length,
      good: cases.length - bad.length,
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

  async function send(batch: FuzzCase[]) {
    const byTopic = new Map<TopicKey, FuzzCase[]>();
    for (const c of batch) byTopic.set(c.topic, [...(byTopic.get(c.topic) ?? []), c]);
    for (const [topic, list] of byTopic)
      await produceRaw(
        ns.topics[topic],
        list.map((c) => ({ key: c.key, value: c.value, headers: c.headers })),
      );
  }
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

/** What is wrong with the dead letters of `c` (undefined: nothing). */
function dlqProblem(c: FuzzCase, records: TopicRecord[], topic: string): string | undefined {
  if ('applied' in c.expect)
    return records.length
      ? `expected applied, dead-lettered as ${records[0]!.headers[DLQ_HEADER.reason]}: ${records[0]!.headers[DLQ_HEADER.errorMessage]?.slice(0, 200)}`
      : undefined;
  if (records.length === 0) return `expected ${outcomeText(c.expect)}, not dead-lettered`;
  if (records.length > 1) return `dead-lettered ${records.length} times`;
  const h = records[0]!.headers;
  const got = `${h[DLQ_HEADER.reason]}${h[DLQ_HEADER.entity] ? `(${h[DLQ_HEADER.entity]})` : ''}`;
  if (got !== outcomeText(c.expect))
    return `expected ${outcomeText(c.expect)}, got ${got}: ${h[DLQ_HEADER.errorMessage]?.slice(0, 200)}`;
  if (h[DLQ_HEADER.originalTopic] !== topic || h[DLQ_HEADER.originalOffset] === undefined)
    return `original topic/offset headers missing or wrong (${h[DLQ_HEADER.originalTopic]})`;
  return undefined;
}

const splitTp = (tp: string): [string, number] => {
  const at = tp.lastIndexOf(':');
  return [tp.slice(0, at), Number(tp.slice(at + 1))];
};

async function endsOf(topics: string[]): Promise<Map<string, number>> {
  const ends = new Map<string, number>();
  await withAdmin(async (admin) => {
    for (const topic of topics)
      for (const p of await admin.fetchTopicOffsets(topic))
        ends.set(`${topic}:${p.partition}`, Number(p.high));
  });
  return ends;
}

async function storedOffsets(
  db: IsolatedDatabase,
  target: FuzzTarget,
  group: string,
): Promise<Map<string, number>> {
  const { rows } = await db.pool.query<{ topic: string; partition: number; next_offset: string }>(
    `SELECT topic, partition, next_offset FROM ${target.table('consumer_offsets')} WHERE consumer_group = $1`,
    [group],
  );
  return new Map(rows.map((r) => [`${r.topic}:${r.partition}`, Number(r.next_offset)]));
}

async function outboxBacklog(db: IsolatedDatabase, target: FuzzTarget): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT coalesce(sum(event_count), 0)::int AS n FROM ${target.table('outbox')} WHERE published_at IS NULL`,
  );
  return rows[0]!.n;
}

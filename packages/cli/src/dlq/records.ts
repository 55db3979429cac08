import { randomUUID } from 'node:crypto';
import { DLQ_SUFFIX, dlqTopic, reasonCodes, topicCatalog, type TopicKey } from '@shoal/contracts';
import { DLQ_HEADER } from '@shoal/kafka-runtime/dead-letter';
import { HEADER } from '@shoal/kafka-runtime/message';
import type { IHeaders } from 'kafkajs';
import { UsageError } from '../exit.js';
import { kafkaClient, withKafkaAdmin } from '../connections.js';

/**
 * The dead letters of one topic as Kafka holds them (the truth): `<topic>.dlq` read from its log
 * start to the high watermark seen when reading began, each record parsed from its `shoal.dlq.*`
 * headers, and the filters of `shoal dlq list` and `replay`. A record whose headers are missing or
 * garbled is returned as a problem naming the header, never thrown.
 */

/** A record of `<topic>.dlq` exactly as read: what a replay re-publishes. */
export interface RawDeadLetter {
  dlqTopic: string;
  dlqOffset: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
}

export interface DeadLetter {
  dlqTopic: string;
  dlqOffset: number;
  originalTopic: string;
  originalPartition: number;
  originalOffset: number;
  group: string;
  messageId: string;
  key: string | null;
  reason: string;
  rejection: string | null;
  entity: string | null;
  entityId: string | null;
  errorClass: string | null;
  errorMessage: string | null;
  attempts: number;
  firstFailedAt: string;
}

/** A record that cannot be read as a dead letter, and why. */
export interface Unreadable {
  dlqTopic: string;
  dlqOffset: number;
  problem: string;
}

export interface Filters {
  reason?: string;
  entity?: { kind: string; id?: string };
  key?: string;
  since?: Date;
  until?: Date;
  group?: string;
}

export const knownReasons: readonly string[] = [...reasonCodes, 'rejected'];

/** `--topic`: a topic name, a catalog key (`occurrences`) or the dead-letter topic itself. */
export function topicsOf(topic: string): { original: string; dlq: string } {
  const original =
    topic in topicCatalog ? topicCatalog[topic as TopicKey].topic : topic.replace(/\.dlq$/, '');
  return { original, dlq: dlqTopic(original) };
}

export const headerText = (headers: IHeaders, name: string): string | undefined => {
  const value = headers[name];
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value[0] : value)?.toString();
};

const wholeNumber = (text: string | undefined): number | undefined =>
  text !== undefined && /^\d+$/.test(text) && Number.isSafeInteger(Number(text))
    ? Number(text)
    : undefined;

/** One record's headers read as text, and what is wrong with them (no closures per record). */
class HeaderReader {
  readonly problems: string[] = [];
  constructor(private readonly headers: IHeaders) {}

  optional(name: string): string | null {
    return headerText(this.headers, name) ?? null;
  }

  required(name: string): string {
    const value = headerText(this.headers, name);
    if (value === undefined || value === '') this.problems.push(`${name} is missing`);
    return value ?? '';
  }

  number(name: string): number {
    const text = this.required(name);
    const value = wholeNumber(text);
    if (text !== '' && value === undefined)
      this.problems.push(`${name} is not a whole number: "${text}"`);
    return value ?? -1;
  }
}

export function parseDeadLetter(raw: RawDeadLetter): DeadLetter | Unreadable {
  const h = new HeaderReader(raw.headers);
  const originalTopic = h.required(DLQ_HEADER.originalTopic);
  const originalPartition = h.number(DLQ_HEADER.originalPartition);
  const originalOffset = h.number(DLQ_HEADER.originalOffset);
  const group = h.required(DLQ_HEADER.consumerGroup);
  const messageId = h.required(HEADER.messageId);
  const reason = h.required(DLQ_HEADER.reason);
  const attempts = h.number(DLQ_HEADER.attemptCount);
  const firstFailedAt = h.required(DLQ_HEADER.firstFailedAt);
  const failedAt = Date.parse(firstFailedAt);
  if (firstFailedAt !== '' && Number.isNaN(failedAt))
    h.problems.push(`${DLQ_HEADER.firstFailedAt} is not a time: "${firstFailedAt}"`);
  if (reason !== '' && !knownReasons.includes(reason))
    h.problems.push(`${DLQ_HEADER.reason} is not a known reason: "${reason}"`);
  if (h.problems.length > 0)
    return { dlqTopic: raw.dlqTopic, dlqOffset: raw.dlqOffset, problem: h.problems.join('; ') };
  return {
    dlqTopic: raw.dlqTopic,
    dlqOffset: raw.dlqOffset,
    originalTopic,
    originalPartition,
    originalOffset,
    group,
    messageId,
    key: raw.key?.toString() ?? null,
    reason,
    rejection: h.optional(DLQ_HEADER.rejection),
    entity: h.optional(DLQ_HEADER.entity),
    entityId: h.optional(DLQ_HEADER.entityId),
    errorClass: h.optional(DLQ_HEADER.errorClass),
    errorMessage: h.optional(DLQ_HEADER.errorMessage),
    attempts,
    firstFailedAt: new Date(failedAt).toISOString(),
  };
}

export const isUnreadable = (r: DeadLetter | Unreadable): r is Unreadable => 'problem' in r;

/**
 * Why a dead letter may not go back to `topic` (replayed, or a discard marker sent there): its
 * original topic is a dead-letter topic, or not `topic`. Undefined when it may.
 */
export function targetProblem(d: DeadLetter, topic: string): string | undefined {
  const wrong = d.originalTopic.endsWith(DLQ_SUFFIX)
    ? 'a dead-letter topic'
    : d.originalTopic !== topic
      ? `not ${topic}, whose dead letters these are`
      : undefined;
  return wrong && `${DLQ_HEADER.originalTopic} "${d.originalTopic}" is ${wrong}`;
}

export function matches(d: DeadLetter, f: Filters): boolean {
  // the time is parsed only when a filter asks for it
  const failed = f.since || f.until ? Date.parse(d.firstFailedAt) : 0;
  return (
    (f.reason === undefined || d.reason === f.reason) &&
    (f.entity === undefined ||
      (d.entity === f.entity.kind && (f.entity.id === undefined || d.entityId === f.entity.id))) &&
    (f.key === undefined || d.key === f.key) &&
    (f.group === undefined || d.group === f.group) &&
    (f.since === undefined || failed >= f.since.getTime()) &&
    (f.until === undefined || failed < f.until.getTime())
  );
}

/** At most this many records a chunk of `openTopic`, and held read ahead of its reader. */
const CHUNK_RECORDS = 5_000;
const AHEAD_RECORDS = 15_000;

export interface TopicReading {
  /** How many records the topic holds up to the high watermark read first (at most). */
  records: number;
  /** Those records in chunks, each partition's in offset order, read ahead of the caller. */
  chunks: AsyncGenerator<RawDeadLetter[]>;
}

/**
 * `topic` from its log start up to the high watermark read first, through a consumer group of its
 * own that commits nothing: the consumer (started by the first chunk asked for) reads up to
 * AHEAD_RECORDS ahead of the caller, so reading overlaps what the caller does with each chunk, and
 * stops when the generator is returned. Unknown topic: a UsageError naming --topic.
 */
export async function openTopic(brokers: string[], topic: string): Promise<TopicReading> {
  const ends = await withKafkaAdmin(brokers, async (admin) => {
    if (!(await admin.listTopics()).includes(topic))
      throw new UsageError(`--topic: Kafka has no dead-letter topic "${topic}"`);
    return (await admin.fetchTopicOffsets(topic))
      .filter((p) => Number(p.high) > Number(p.low))
      .map((p) => ({ partition: p.partition, low: Number(p.low), last: Number(p.high) - 1 }));
  });
  return {
    records: ends.reduce((sum, e) => sum + e.last + 1 - e.low, 0),
    chunks: chunksOf(brokers, topic, ends),
  };
}

async function* chunksOf(
  brokers: string[],
  topic: string,
  ends: { partition: number; last: number }[],
): AsyncGenerator<RawDeadLetter[]> {
  if (ends.length === 0) return;
  // large fetches: a dead-letter topic has one partition, and kafkajs's default takes 1 MiB of it
  // per fetch
  const consumer = kafkaClient(brokers).consumer({
    groupId: `shoal-cli-dlq-${randomUUID()}`,
    retry: { retries: 2 },
    maxBytesPerPartition: 4 * 1024 * 1024,
    maxBytes: 8 * 1024 * 1024,
    maxWaitTimeInMs: 100,
  });
  const queue: RawDeadLetter[][] = [];
  let queued = 0;
  let finished = false;
  let stopped = false;
  let failure: { error: unknown } | undefined;
  // the caller waits for a chunk in `arrived`, the consumer for room in `taken`
  let arrived: (() => void) | undefined;
  let taken: (() => void) | undefined;
  const wake = (waiter: (() => void) | undefined) => waiter?.();
  await consumer.connect();
  try {
    consumer.on(consumer.events.CRASH, (event) => {
      failure = { error: event.payload.error };
      wake(arrived);
    });
    const pending = new Set(ends.map((e) => e.partition));
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const last = ends.find((e) => e.partition === batch.partition)?.last ?? -1;
        let chunk: RawDeadLetter[] = [];
        for (const m of batch.messages) {
          if (Number(m.offset) > last) break;
          chunk.push({
            dlqTopic: topic,
            dlqOffset: Number(m.offset),
            key: m.key,
            value: m.value,
            headers: m.headers ?? {},
          });
          if (chunk.length === CHUNK_RECORDS) {
            queue.push(chunk);
            queued += chunk.length;
            chunk = [];
          }
        }
        if (chunk.length) queue.push(chunk);
        queued += chunk.length;
        if (Number(batch.lastOffset()) >= last) pending.delete(batch.partition);
        if (pending.size === 0) finished = true;
        wake(arrived);
        while (queued > AHEAD_RECORDS && !stopped) await new Promise<void>((r) => (taken = r));
      },
    });
    for (;;) {
      const chunk = queue.shift();
      if (chunk) {
        queued -= chunk.length;
        wake(taken);
        yield chunk;
      } else if (failure) throw failure.error;
      else if (finished) return;
      else await new Promise<void>((r) => (arrived = r));
    }
  } finally {
    stopped = true;
    wake(taken);
    await consumer.disconnect();
  }
}

/** Every record of `topic` (openTopic), sorted by offset. */
export async function readTopic(brokers: string[], topic: string): Promise<RawDeadLetter[]> {
  const records: RawDeadLetter[] = [];
  for await (const chunk of (await openTopic(brokers, topic)).chunks) records.push(...chunk);
  return records.sort((a, b) => a.dlqOffset - b.dlqOffset);
}

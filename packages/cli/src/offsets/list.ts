import type { PoolClient } from '@shoal/db';
import {
  runtimeSchemas,
  serviceSchema,
  withDatabase,
  withKafkaAdmin,
  withServiceTransaction,
} from '../connections.js';

/**
 * `shoal offsets list`: every consumer offset PostgreSQL holds (in each service's schema, or the
 * one --service names) beside Kafka's high watermark of that partition and the lag between them.
 * Reads only. A negative lag means PostgreSQL is ahead of the log (Kafka reset or the topic
 * re-created); a missing high watermark means the topic or partition is gone from Kafka.
 */

export interface OffsetRow {
  schema: string;
  group: string;
  topic: string;
  partition: number;
  /** The next offset the group will apply; null before it applied anything. */
  nextOffset: number | null;
  lastRecordId: string | null;
  halted: boolean;
  haltedAt: string | null;
  haltedReason: string | null;
  highWatermark: number | null;
  lag: number | null;
}

export type StoredOffset = Omit<OffsetRow, 'highWatermark' | 'lag'>;

export async function storedOffsets(tx: PoolClient, schema: string): Promise<StoredOffset[]> {
  const { rows } = await tx.query<{
    consumer_group: string;
    topic: string;
    partition: number;
    next_offset: number;
    last_record_id: string | null;
    halted_at: Date | null;
    halted_reason: string | null;
  }>(
    `SELECT consumer_group, topic, partition, next_offset, last_record_id, halted_at, halted_reason
     FROM consumer_offsets ORDER BY consumer_group, topic, partition`,
  );
  return rows.map((r) => ({
    schema,
    group: r.consumer_group,
    topic: r.topic,
    partition: r.partition,
    nextOffset: r.next_offset < 0 ? null : r.next_offset,
    lastRecordId: r.last_record_id,
    halted: r.halted_at !== null,
    haltedAt: r.halted_at?.toISOString() ?? null,
    haltedReason: r.halted_reason,
  }));
}

const partitionKey = (topic: string, partition: number) => `${partition}@${topic}`;

/** High watermark per partition of the topics that exist in Kafka. */
export async function highWatermarks(
  brokers: string[],
  topics: string[],
): Promise<Map<string, number>> {
  const marks = new Map<string, number>();
  if (topics.length === 0) return marks;
  await withKafkaAdmin(brokers, async (admin) => {
    const existing = new Set(await admin.listTopics());
    for (const topic of topics.filter((t) => existing.has(t)))
      for (const p of await admin.fetchTopicOffsets(topic))
        marks.set(partitionKey(topic, p.partition), Number(p.high));
  });
  return marks;
}

export async function listOffsets(options: {
  databaseUrl: string;
  brokers: string[];
  service?: string;
}): Promise<OffsetRow[]> {
  const stored = await withDatabase(options.databaseUrl, async (pool) => {
    const schemas = options.service ? [serviceSchema(options.service)] : await runtimeSchemas(pool);
    const rows: StoredOffset[] = [];
    for (const schema of schemas)
      rows.push(
        ...(await withServiceTransaction(pool, schema, options.databaseUrl, (tx) =>
          storedOffsets(tx, schema),
        )),
      );
    return rows;
  });
  const marks = await highWatermarks(options.brokers, [...new Set(stored.map((r) => r.topic))]);
  return withLag(stored, marks);
}

/** Each stored offset beside its partition's high watermark (`marks`; none when Kafka is down). */
export function withLag(stored: StoredOffset[], marks: Map<string, number>): OffsetRow[] {
  return stored.map((row) => {
    const highWatermark = marks.get(partitionKey(row.topic, row.partition)) ?? null;
    const lag =
      highWatermark === null || row.nextOffset === null ? null : highWatermark - row.nextOffset;
    return { ...row, highWatermark, lag };
  });
}

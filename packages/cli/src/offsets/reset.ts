import type { PoolClient } from '@shoal/db';
import { resetOffset } from '@shoal/kafka-runtime/store';
import { UsageError } from '../exit.js';
import {
  serviceSchema,
  withDatabase,
  withKafkaAdmin,
  withServiceTransaction,
} from '../connections.js';

/**
 * `shoal offsets reset`: moves one consumer group's stored offset of one partition, clears its
 * halt, and records who did it and why in `offset_resets`, all in one transaction in the
 * service's schema. `planReset` only reads (the dry run and the question asked first);
 * `applyReset` writes. The target is checked against the log as Kafka holds it now.
 */

export type ResetTarget = 'earliest' | 'latest' | number;

export interface ResetRequest {
  service: string;
  group: string;
  topic: string;
  partition: number;
  to: ResetTarget;
  actor: string;
  reason: string;
}

export interface ResetPlan extends ResetRequest {
  schema: string;
  /** The stored next offset now; null when the group has not applied anything yet. */
  fromOffset: number | null;
  toOffset: number;
  /** Kafka's log of the partition: its earliest offset and its high watermark. */
  logStart: number;
  highWatermark: number;
  halted: boolean;
}

interface Connections {
  databaseUrl: string;
  brokers: string[];
}

async function logRange(
  brokers: string[],
  topic: string,
  partition: number,
): Promise<{ low: number; high: number }> {
  return withKafkaAdmin(brokers, async (admin) => {
    if (!(await admin.listTopics()).includes(topic))
      throw new UsageError(`--topic: Kafka has no topic "${topic}"`);
    const partitions = await admin.fetchTopicOffsets(topic);
    const found = partitions.find((p) => p.partition === partition);
    if (!found)
      throw new UsageError(
        `--partition: topic "${topic}" has partitions 0 to ${partitions.length - 1}, not ${partition}`,
      );
    return { low: Number(found.low), high: Number(found.high) };
  });
}

function resolveTarget(to: ResetTarget, range: { low: number; high: number }): number {
  if (to === 'earliest') return range.low;
  if (to === 'latest') return range.high;
  if (to < range.low || to > range.high)
    throw new UsageError(
      `--to: ${to} is outside the partition's log (offsets ${range.low} to ${range.high})`,
    );
  return to;
}

async function readStoredOffset(
  tx: PoolClient,
  request: Pick<ResetRequest, 'group' | 'topic' | 'partition'>,
  schema: string,
  forUpdate: boolean,
): Promise<{ fromOffset: number | null; halted: boolean }> {
  const { rows } = await tx.query<{ next_offset: number; halted: boolean }>(
    `SELECT next_offset, halted_at IS NOT NULL AS halted FROM consumer_offsets
     WHERE consumer_group = $1 AND topic = $2 AND partition = $3 ${forUpdate ? 'FOR UPDATE' : ''}`,
    [request.group, request.topic, request.partition],
  );
  if (rows.length === 0)
    throw new UsageError(
      `--group/--topic/--partition: schema "${schema}" holds no offset of group "${request.group}" for ${request.topic} partition ${request.partition} (see shoal offsets list)`,
    );
  // -1 is the runtime's "nothing applied yet"
  return {
    fromOffset: rows[0]!.next_offset < 0 ? null : rows[0]!.next_offset,
    halted: rows[0]!.halted,
  };
}

/**
 * The reset itself, inside the caller's transaction (search_path at the service's schema).
 * Returns the offset it replaced and the audit row's id.
 */
export async function resetStoredOffset(
  tx: PoolClient,
  reset: Parameters<typeof resetOffset>[1],
  schema: string,
): ReturnType<typeof resetOffset> {
  // refuses, naming them, a group/topic/partition the schema holds no offset for
  await readStoredOffset(tx, reset, schema, true);
  return resetOffset(tx, reset);
}

export async function planReset(
  request: ResetRequest,
  connections: Connections,
): Promise<ResetPlan> {
  const schema = serviceSchema(request.service);
  const range = await logRange(connections.brokers, request.topic, request.partition);
  const stored = await withDatabase(connections.databaseUrl, (pool) =>
    withServiceTransaction(pool, schema, connections.databaseUrl, (tx) =>
      readStoredOffset(tx, request, schema, false),
    ),
  );
  return {
    ...request,
    schema,
    ...stored,
    toOffset: resolveTarget(request.to, range),
    logStart: range.low,
    highWatermark: range.high,
  };
}

export async function applyReset(
  plan: ResetPlan,
  connections: Connections,
): Promise<ResetPlan & { resetId: number }> {
  const done = await withDatabase(connections.databaseUrl, (pool) =>
    withServiceTransaction(pool, plan.schema, connections.databaseUrl, (tx) =>
      resetStoredOffset(tx, { ...plan, to: plan.toOffset }, plan.schema),
    ),
  );
  return { ...plan, ...done };
}

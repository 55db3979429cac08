import { randomUUID } from 'node:crypto';
import { storableText, type Pool } from '@shoal/db';
import { DLQ_HEADER } from '@shoal/kafka-runtime/dead-letter';
import { DISCARD_HEADER } from '@shoal/kafka-runtime/discard-marker';
import { kafkaClient, runtimeSchemas, withDatabase } from '../connections.js';
import { UsageError } from '../exit.js';
import { earlierDiscards, ensureLedger, recordDiscards, type EarlierDiscard } from './ledger.js';
import {
  isUnreadable,
  parseDeadLetter,
  readTopic,
  targetProblem,
  type DeadLetter,
  type RawDeadLetter,
} from './records.js';

/**
 * `shoal dlq discard`: gives up on dead letters, recording who and why in `shoal_cli.dlq_discards`
 * (which `list` hides and `replay` skips). A dead letter that still heads a parked key (read from
 * the runtime's `parked_keys` of whichever service schema holds it; reading only) is released the
 * way the runtime takes operators' commands, as a record on the topic the consumer owns: a discard
 * marker (kafka-runtime `discard-marker.ts`) to the original topic, on the partition the key is
 * parked on, with its key; the consumer that parked it releases the key in the chunk that reads
 * the marker and applies the parked messages in order. `planDiscards` only reads; `applyDiscards`
 * sends the markers (acks all) and then records the discards, so a run killed between the two
 * sends the marker again on the next run, which the runtime ignores once the head is gone.
 */

/** A key parked behind a dead letter, as the consumer's runtime tables hold it. */
export interface ParkedKey {
  schema: string;
  group: string;
  key: string;
  partition: number;
  parkedMessages: number;
}

type DiscardStep = {
  action: 'discard';
  record: DeadLetter;
  raw: RawDeadLetter;
  parks: ParkedKey | null;
};

export type DiscardStepOf =
  | DiscardStep
  | { action: 'skip'; record: DeadLetter; earlier: EarlierDiscard }
  | { action: 'refuse'; dlqOffset: number; problem: string };

/** The key `d` heads in some service schema's `parked_keys`, with how many messages wait behind it. */
export async function parkedBehind(pool: Pool, d: DeadLetter): Promise<ParkedKey | null> {
  if (d.key === null) return null;
  for (const schema of await runtimeSchemas(pool)) {
    const { rows: tables } = await pool.query<{ found: boolean }>(
      `SELECT to_regclass($1) IS NOT NULL AS found`,
      [`"${schema}".parked_keys`],
    );
    if (!tables[0]!.found) continue;
    const { rows } = await pool.query<{ partition: number; parked: number }>(
      `SELECT k.partition, (SELECT count(*)::int FROM "${schema}".parked_messages m
         WHERE m.consumer_group = k.consumer_group AND m.topic = k.topic
           AND m.message_key = k.message_key) AS parked
       FROM "${schema}".parked_keys k
       WHERE k.consumer_group = $1 AND k.topic = $2 AND k.message_key = $3 AND k.head_message_id = $4`,
      [d.group, d.originalTopic, storableText(d.key), storableText(d.messageId)],
    );
    if (rows[0])
      return {
        schema,
        group: d.group,
        key: d.key,
        partition: rows[0].partition,
        parkedMessages: rows[0].parked,
      };
  }
  return null;
}

export async function planDiscards(
  request: { topic: string; dlqTopic: string; offsets: number[] },
  connections: { databaseUrl: string; brokers: string[] },
): Promise<DiscardStepOf[]> {
  const raws = await readTopic(connections.brokers, request.dlqTopic);
  const byOffset = new Map(raws.map((r) => [r.dlqOffset, r]));
  const missing = request.offsets.filter((o) => !byOffset.has(o));
  if (missing.length > 0)
    throw new UsageError(
      `--offset: ${request.dlqTopic} holds no record at offset ${missing.join(', ')}`,
    );
  return withDatabase(connections.databaseUrl, async (pool) => {
    const earlier = await earlierDiscards(pool, request.dlqTopic, request.offsets);
    const steps: DiscardStepOf[] = [];
    for (const offset of [...new Set(request.offsets)].sort((a, b) => a - b)) {
      const raw = byOffset.get(offset)!;
      const record = parseDeadLetter(raw);
      if (isUnreadable(record)) {
        steps.push({ action: 'refuse', dlqOffset: offset, problem: record.problem });
        continue;
      }
      const problem = targetProblem(record, request.topic);
      const done = earlier.get(offset);
      if (problem) steps.push({ action: 'refuse', dlqOffset: offset, problem });
      else if (done) steps.push({ action: 'skip', record, earlier: done });
      else steps.push({ action: 'discard', record, raw, parks: await parkedBehind(pool, record) });
    }
    return steps;
  });
}

export async function applyDiscards(
  plan: { topic: string; dlqTopic: string; steps: DiscardStepOf[] },
  options: { actor: string; reason: string },
  connections: { databaseUrl: string; brokers: string[] },
): Promise<{ id: string; step: DiscardStep }[]> {
  const todo = plan.steps
    .filter((s): s is DiscardStep => s.action === 'discard')
    .map((step) => ({ id: randomUUID(), step }));
  const markers = todo.filter(({ step }) => step.parks !== null);
  if (markers.length > 0) {
    const producer = kafkaClient(connections.brokers).producer({
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    try {
      const at = new Date().toISOString();
      await producer.send({
        topic: plan.topic,
        acks: -1,
        messages: markers.map(({ id, step }) => ({
          key: step.raw.key,
          value: null,
          partition: step.parks!.partition,
          headers: {
            // only the group that parked the key acts on it; the others count it a duplicate
            [DLQ_HEADER.consumerGroup]: step.record.group,
            [DISCARD_HEADER.head]: step.record.messageId,
            [DISCARD_HEADER.id]: id,
            [DISCARD_HEADER.at]: at,
            [DISCARD_HEADER.by]: options.actor,
            [DISCARD_HEADER.reason]: options.reason,
            [DISCARD_HEADER.source]: `${plan.dlqTopic}:${step.record.dlqOffset}`,
          },
        })),
      });
    } finally {
      await producer.disconnect();
    }
  }
  if (todo.length > 0)
    await withDatabase(connections.databaseUrl, async (pool) => {
      await ensureLedger(pool);
      await recordDiscards(
        pool,
        plan.dlqTopic,
        todo.map(({ id, step }) => ({
          id,
          dlqOffset: step.record.dlqOffset,
          messageId: step.record.messageId,
          actor: options.actor,
          reason: options.reason,
          releasedKey: step.parks?.key ?? null,
        })),
      );
    });
  return todo;
}

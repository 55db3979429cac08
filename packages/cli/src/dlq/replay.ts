import { randomUUID } from 'node:crypto';
import { Codec, ContractError, createRegistry, topicKeyOf, topicNames } from '@shoal/contracts';
import { Partitioners } from 'kafkajs';
import { kafkaClient, withDatabase } from '../connections.js';
import {
  checkpoint,
  earlierDiscards,
  earlierReplays,
  ensureLedger,
  finishRun,
  startRun,
  type EarlierDiscard,
} from './ledger.js';
import {
  isUnreadable,
  matches,
  parseDeadLetter,
  readTopic,
  targetProblem,
  type DeadLetter,
  type Filters,
  type RawDeadLetter,
} from './records.js';

/**
 * `shoal dlq replay`: re-publishes matching dead letters (key, value bytes and headers exactly,
 * plus `shoal.replay.*`) to the topic they came from, with the same key so the default
 * partitioner puts them where the original went. `planReplay` only reads (the dry run and the
 * question asked first); `applyReplay` produces in acknowledged batches, each checkpointed in
 * `shoal_cli` (ledger.ts). A batch produced but not checkpointed (the run killed between the two)
 * is replayed again by the next run; the consumers' ledger (the message id) applies it once. A
 * discarded record (discard.ts) is skipped, naming its discard. A value no longer valid for the
 * schema registered for the target topic (a topic of the catalog) is refused, naming the field,
 * unless `force`.
 */

export const REPLAY_HEADER = {
  id: 'shoal.replay.id',
  at: 'shoal.replay.at',
  by: 'shoal.replay.by',
  source: 'shoal.replay.source',
} as const;

type ReplayStep = { action: 'replay'; record: DeadLetter; raw: RawDeadLetter };

export type Step =
  | ReplayStep
  | {
      action: 'skip';
      record: DeadLetter;
      earlier: { runId: string; actor: string; replayedAt: string };
    }
  | { action: 'skip-discarded'; record: DeadLetter; discard: EarlierDiscard }
  | { action: 'refuse'; dlqOffset: number; problem: string };

export interface ReplayPlan {
  topic: string;
  dlqTopic: string;
  steps: Step[];
}

/**
 * Why `value` may not go to `topic`: not valid for the schema registered for it (framed with
 * another subject's id, not JSON, a field refused). Undefined when it may, or when the topic is
 * not one of the catalog's (no schema known for it).
 */
function schemaChecker(topic: string, registryUrl: string) {
  const key = topicKeyOf(topic);
  if (!key) return async () => undefined;
  const namespace = topic.slice(0, topic.length - topicNames('')[key].length);
  const codec = new Codec(createRegistry(registryUrl), topicNames(namespace));
  return async (value: Buffer | null): Promise<string | undefined> => {
    try {
      await codec.decode(key, value);
      return undefined;
    } catch (error) {
      if (!(error instanceof ContractError)) throw error;
      return `the value is not valid for ${topic}'s schema (--force replays it anyway): ${error.message}`;
    }
  };
}

export async function planReplay(
  request: { topic: string; dlqTopic: string; filters: Filters; limit?: number; force?: boolean },
  connections: { databaseUrl: string; brokers: string[]; registryUrl: string },
): Promise<ReplayPlan> {
  const raws = await readTopic(connections.brokers, request.dlqTopic);
  const offsets = raws.map((r) => r.dlqOffset);
  const [earlier, discarded] = await withDatabase(connections.databaseUrl, (pool) =>
    Promise.all([
      earlierReplays(pool, request.dlqTopic, offsets),
      earlierDiscards(pool, request.dlqTopic, offsets),
    ]),
  );
  const steps: Step[] = [];
  let toReplay = 0;
  for (const raw of raws) {
    const record = parseDeadLetter(raw);
    if (isUnreadable(record)) {
      steps.push({ action: 'refuse', dlqOffset: raw.dlqOffset, problem: record.problem });
      continue;
    }
    if (!matches(record, request.filters)) continue;
    const done = earlier.get(raw.dlqOffset);
    const discard = discarded.get(raw.dlqOffset);
    const problem = targetProblem(record, request.topic);
    if (problem) steps.push({ action: 'refuse', dlqOffset: raw.dlqOffset, problem });
    else if (done) steps.push({ action: 'skip', record, earlier: done });
    else if (discard) steps.push({ action: 'skip-discarded', record, discard });
    else if (request.limit === undefined || toReplay < request.limit) {
      steps.push({ action: 'replay', record, raw });
      toReplay++;
    }
  }
  if (!request.force) {
    const invalid = schemaChecker(request.topic, connections.registryUrl);
    // decoding is CPU work on cached schemas: checked in slices, so a slice's registry lookups
    // (the first of each schema id) go out together
    for (let i = 0; i < steps.length; i += 1_000) {
      const slice = steps.slice(i, i + 1_000);
      const problems = await Promise.all(
        slice.map((s) => (s.action === 'replay' ? invalid(s.raw.value) : undefined)),
      );
      problems.forEach((problem, j) => {
        if (problem)
          steps[i + j] = {
            action: 'refuse',
            dlqOffset: (slice[j] as ReplayStep).record.dlqOffset,
            problem,
          };
      });
    }
  }
  return { topic: request.topic, dlqTopic: request.dlqTopic, steps };
}

/**
 * A batch is at most this many records and this many bytes (keys, values, headers): Kafka refuses a
 * partition's batch above its message.max.bytes (1 MiB by default), and every record of a batch may
 * go to one partition.
 */
const BATCH_RECORDS = 5_000;
const BATCH_BYTES = 900 * 1024;
/** How many acknowledged batches may wait for their checkpoints while the next is produced. */
const CHECKPOINTS_BEHIND = 3;

function sizeOf({ raw }: ReplayStep): number {
  let size = (raw.key?.length ?? 0) + (raw.value?.length ?? 0) + 200; // the replay headers and framing
  for (const name in raw.headers) {
    const value = raw.headers[name];
    // a header repeated in the record is an array of its values
    for (const one of Array.isArray(value) ? value : [value])
      size += Buffer.byteLength(name) + (one === undefined ? 0 : Buffer.byteLength(one));
  }
  return size;
}

/** `todo` cut into batches of at most `records` records and BATCH_BYTES bytes, in order. */
function batchesOf(todo: ReplayStep[], records: number): ReplayStep[][] {
  const batches: ReplayStep[][] = [];
  let batch: ReplayStep[] = [];
  let bytes = 0;
  for (const step of todo) {
    const size = sizeOf(step);
    if (batch.length && (batch.length >= records || bytes + size > BATCH_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(step);
    bytes += size;
  }
  if (batch.length) batches.push(batch);
  return batches;
}

export async function applyReplay(
  plan: ReplayPlan,
  options: { actor: string; rate: number; filters: Filters; progress: (done: number) => void },
  connections: { databaseUrl: string; brokers: string[] },
): Promise<{ runId: string; replayed: number }> {
  const runId = randomUUID();
  const todo = plan.steps.filter((s): s is ReplayStep => s.action === 'replay');
  return withDatabase(connections.databaseUrl, async (pool) => {
    await ensureLedger(pool);
    await startRun(pool, {
      id: runId,
      dlqTopic: plan.dlqTopic,
      filters: options.filters,
      actor: options.actor,
    });
    const producer = kafkaClient(connections.brokers).producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    const started = Date.now();
    let replayed = 0;
    let sent = 0;
    // checkpoints are written one at a time and in order, each after its own batch's
    // acknowledgement, while the next batches are produced: the producer runs at most
    // CHECKPOINTS_BEHIND batches ahead of them, so a slow checkpoint does not stall it, and what is
    // recorded is always every batch up to one (a checkpoint is not written after a failed one)
    let written: Promise<void> = Promise.resolve();
    const unwritten: Promise<void>[] = [];
    let failed = false;
    try {
      const size = Math.max(1, Math.min(BATCH_RECORDS, Math.floor(options.rate)));
      // the headers every record of a batch shares, as bytes once rather than a string per record
      const id = Buffer.from(runId);
      const by = Buffer.from(options.actor);
      for (const batch of batchesOf(todo, size)) {
        // a run stops at the first failure of either: a failed checkpoint is thrown here
        if (failed) await written;
        const at = Buffer.from(new Date().toISOString());
        await producer.send({
          topic: plan.topic,
          acks: -1,
          messages: batch.map(({ raw }) => ({
            key: raw.key,
            value: raw.value,
            headers: {
              ...raw.headers,
              [REPLAY_HEADER.id]: id,
              [REPLAY_HEADER.at]: at,
              [REPLAY_HEADER.by]: by,
              [REPLAY_HEADER.source]: `${raw.dlqTopic}:${raw.dlqOffset}`,
            },
          })),
        });
        sent += batch.length;
        const records = batch.map(({ record }) => ({
          dlqOffset: record.dlqOffset,
          messageId: record.messageId,
        }));
        written = written
          .then(() => checkpoint(pool, runId, plan.dlqTopic, records))
          .then(() => {
            replayed += batch.length;
            options.progress(replayed);
          });
        // its failure is thrown before the next batch is produced, not reported unhandled
        written.catch(() => (failed = true));
        unwritten.push(written);
        while (unwritten.length > CHECKPOINTS_BEHIND) await unwritten.shift();
        const due = started + (sent / options.rate) * 1000;
        if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      }
      await written;
    } finally {
      await written.catch(() => undefined);
      await producer.disconnect();
    }
    await finishRun(pool, runId);
    return { runId, replayed };
  });
}

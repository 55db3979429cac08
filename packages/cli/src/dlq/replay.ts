import { randomUUID } from 'node:crypto';
import { Codec, ContractError, createRegistry, topicKeyOf, topicNames } from '@shoal/contracts';
import type { Pool } from '@shoal/db';
import { Partitioners, type Producer } from 'kafkajs';
import { kafkaClient, withDatabase } from '../connections.js';
import {
  checkpoint,
  earlierDiscards,
  earlierReplays,
  ensureLedger,
  finishRun,
  ledgerExists,
  startRun,
  type EarlierDiscard,
  type EarlierReplay,
} from './ledger.js';
import {
  isUnreadable,
  matches,
  openTopic,
  parseDeadLetter,
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

export interface ReplayRequest {
  topic: string;
  dlqTopic: string;
  filters: Filters;
  limit?: number;
  force?: boolean;
}

/** The steps decided for one chunk of the dead-letter topic, and how many records it held. */
interface Decided {
  steps: Step[];
  read: number;
}

/**
 * What to do with each record of `chunks`, chunk by chunk: its earlier replay or discard looked up,
 * the filters, the target and (unless `force`) the schema checked, `limit` counted across chunks.
 */
async function* decide(
  request: ReplayRequest,
  chunks: AsyncIterable<RawDeadLetter[]>,
  pool: Pool,
  registryUrl: string,
): AsyncGenerator<Decided> {
  const invalid = request.force ? undefined : schemaChecker(request.topic, registryUrl);
  let toReplay = 0;
  // before any replay or discard there is nothing to look up, even once this run creates the
  // ledger (its own checkpoints are of offsets already read)
  const ledger = await ledgerExists(pool);
  for await (const raws of chunks) {
    const offsets = raws.map((r) => r.dlqOffset);
    const [earlier, discarded] = ledger
      ? await Promise.all([
          earlierReplays(pool, request.dlqTopic, offsets),
          earlierDiscards(pool, request.dlqTopic, offsets),
        ])
      : [new Map<number, EarlierReplay>(), new Map<number, EarlierDiscard>()];
    const steps: Step[] = [];
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
    if (invalid) await refuseInvalid(steps, invalid);
    yield { steps, read: raws.length };
  }
}

/**
 * Each replay step of `steps` whose value `invalid` finds a problem with becomes a refusal. Decoding
 * is CPU work on cached schemas: checked in slices, so a slice's registry lookups (the first of each
 * schema id) go out together.
 */
async function refuseInvalid(
  steps: Step[],
  invalid: (value: Buffer | null) => Promise<string | undefined>,
): Promise<void> {
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

/** `source`, with up to `depth` items asked for ahead while the caller works on the one it has. */
async function* prefetched<T>(source: AsyncGenerator<T>, depth: number): AsyncGenerator<T> {
  const asked: Promise<IteratorResult<T>>[] = [];
  try {
    for (;;) {
      while (asked.length < depth) asked.push(source.next());
      const item = await asked.shift()!;
      if (item.done) return;
      yield item.value;
    }
  } finally {
    // left early (the caller failed): the items asked for are dropped, the source closed
    await Promise.allSettled(asked);
    await source.return(undefined);
  }
}

/** The whole plan, for a dry run and the question asked first: every record decided. */
export async function planReplay(
  request: ReplayRequest,
  connections: { databaseUrl: string; brokers: string[]; registryUrl: string },
): Promise<ReplayPlan> {
  const { chunks } = await openTopic(connections.brokers, request.dlqTopic);
  const steps: Step[] = [];
  await withDatabase(connections.databaseUrl, async (pool) => {
    for await (const decided of decide(request, chunks, pool, connections.registryUrl))
      steps.push(...decided.steps);
  });
  return { topic: request.topic, dlqTopic: request.dlqTopic, steps };
}

/**
 * A batch is at most this many records and this many bytes (keys, values, headers): Kafka refuses a
 * partition's batch above its message.max.bytes (1 MiB by default), and every record of a batch may
 * go to one partition.
 */
const BATCH_RECORDS = 5_000;
const BATCH_BYTES = 900 * 1024;
/** How many chunks are decided ahead of the one being produced. */
const DECIDED_AHEAD = 3;
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

export interface ReplayOptions {
  actor: string;
  rate: number;
  filters: Filters;
  /** Records replayed so far, and how many the run replays at most (lowered as it reads). */
  progress: (done: number, total: number) => void;
  /** Steps whose outcome is final, in order: a replay once its batch is checkpointed. */
  settled?: (steps: Step[]) => void;
}

/** A run: its id once a batch was produced (none when there was nothing to replay). */
export interface ReplayRun {
  runId: string | undefined;
  replayed: number;
}

/** Replays the plan's replay steps (`shoal dlq replay` after its question). */
export async function applyReplay(
  plan: ReplayPlan,
  options: ReplayOptions,
  connections: { databaseUrl: string; brokers: string[] },
): Promise<ReplayRun> {
  const records = plan.steps.filter((s) => s.action === 'replay').length;
  async function* planned(): AsyncGenerator<Decided> {
    yield { steps: plan.steps, read: records };
  }
  return withDatabase(connections.databaseUrl, (pool) =>
    produce(planned(), { records }, plan, options, pool, connections.brokers),
  );
}

/**
 * A replay that reads and sends at once (`shoal dlq replay --yes`): `records` is what the
 * dead-letter topic holds (at most), `replay` decides each chunk read and produces batches as they
 * fill while the next chunks are read and decided.
 */
export async function openReplay(
  request: ReplayRequest,
  connections: { databaseUrl: string; brokers: string[]; registryUrl: string },
): Promise<{ records: number; replay: (options: ReplayOptions) => Promise<ReplayRun> }> {
  const { records, chunks } = await openTopic(connections.brokers, request.dlqTopic);
  return {
    records,
    replay: (options) =>
      withDatabase(connections.databaseUrl, (pool) =>
        produce(
          prefetched(decide(request, chunks, pool, connections.registryUrl), DECIDED_AHEAD),
          { records, limit: request.limit },
          request,
          options,
          pool,
          connections.brokers,
        ),
      ),
  };
}

/**
 * Produces the replay steps of `decided` in acknowledged batches of at most `rate` records (and
 * BATCH_RECORDS, BATCH_BYTES), each checkpointed; the run (its row, the producer) starts with the
 * first batch. `bounds` gives the progress its total: the records not read yet plus those to
 * replay among the read, at most `limit`.
 */
async function produce(
  decided: AsyncGenerator<Decided>,
  bounds: { records: number; limit?: number },
  target: { topic: string; dlqTopic: string },
  options: ReplayOptions,
  pool: Pool,
  brokers: string[],
): Promise<ReplayRun> {
  const runId = randomUUID();
  let producer: Producer | undefined;
  let started = 0;
  let replayed = 0;
  let sent = 0;
  let toReplay = 0;
  let read = 0;
  const total = () => Math.min(bounds.limit ?? Infinity, toReplay + bounds.records - read);
  // checkpoints are written one at a time and in order, each after its own batch's
  // acknowledgement, while the next batches are produced: the producer runs at most
  // CHECKPOINTS_BEHIND batches ahead of them, so a slow checkpoint does not stall it, and what is
  // recorded is always every batch up to one (a checkpoint is not written after a failed one)
  let written: Promise<void> = Promise.resolve();
  const unwritten: Promise<void>[] = [];
  let failed = false;
  const after = (then: () => Promise<void> | void) => {
    written = written.then(then);
    // its failure is thrown before the next batch is produced, not reported unhandled
    written.catch(() => (failed = true));
    return written;
  };
  // the steps decided since the last batch was produced, settled after its checkpoint
  let waiting: Step[] = [];
  const settle = (steps: Step[], count: number) => () => {
    replayed += count;
    options.settled?.(steps);
    options.progress(replayed, total());
  };
  const size = Math.max(1, Math.min(BATCH_RECORDS, Math.floor(options.rate)));
  // the headers every record of a batch shares, as bytes once rather than a string per record
  const id = Buffer.from(runId);
  const by = Buffer.from(options.actor);
  let batch: ReplayStep[] = [];
  let bytes = 0;

  async function send(): Promise<void> {
    // a run stops at the first failure of either: a failed checkpoint is thrown here
    if (failed) await written;
    if (!producer) {
      await ensureLedger(pool);
      await startRun(pool, {
        id: runId,
        dlqTopic: target.dlqTopic,
        filters: options.filters,
        actor: options.actor,
      });
      producer = kafkaClient(brokers).producer({
        idempotent: true,
        maxInFlightRequests: 1,
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      await producer.connect();
      started = Date.now();
    }
    const at = Buffer.from(new Date().toISOString());
    const sending = batch;
    const steps = waiting;
    batch = [];
    bytes = 0;
    waiting = [];
    await producer.send({
      topic: target.topic,
      acks: -1,
      // the replay headers are added to the record's own (read for this run alone) rather than to
      // a copy of them per record
      messages: sending.map(({ raw }) => {
        raw.headers[REPLAY_HEADER.id] = id;
        raw.headers[REPLAY_HEADER.at] = at;
        raw.headers[REPLAY_HEADER.by] = by;
        raw.headers[REPLAY_HEADER.source] = `${raw.dlqTopic}:${raw.dlqOffset}`;
        return { key: raw.key, value: raw.value, headers: raw.headers };
      }),
    });
    sent += sending.length;
    const records = sending.map(({ record }) => ({
      dlqOffset: record.dlqOffset,
      messageId: record.messageId,
    }));
    unwritten.push(
      after(async () => {
        await checkpoint(pool, runId, target.dlqTopic, records);
        settle(steps, sending.length)();
      }),
    );
    while (unwritten.length > CHECKPOINTS_BEHIND) await unwritten.shift();
    const due = started + (sent / options.rate) * 1000;
    if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
  }

  try {
    for await (const chunk of decided) {
      if (failed) await written;
      read += chunk.read;
      for (const step of chunk.steps) if (step.action === 'replay') toReplay++;
      for (const step of chunk.steps) {
        if (step.action === 'replay') {
          const stepSize = sizeOf(step);
          if (batch.length && (batch.length >= size || bytes + stepSize > BATCH_BYTES))
            await send();
          batch.push(step);
          bytes += stepSize;
        }
        waiting.push(step);
      }
      // nothing waits for a batch: what was decided is settled behind the checkpoints before it
      if (batch.length === 0) {
        after(settle(waiting, 0));
        waiting = [];
      }
    }
    if (batch.length) await send();
    after(settle(waiting, 0));
    await written;
  } finally {
    await written.catch(() => undefined);
    await producer?.disconnect();
  }
  if (producer) await finishRun(pool, runId);
  return { runId: producer ? runId : undefined, replayed };
}
